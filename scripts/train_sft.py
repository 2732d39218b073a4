"""Introspection SFT with LoRA on the distilled model (paper §3.2; ref finetuning/introspection/*.sh).

As in the reference trainer, by default only the last message of each transcript is a target, cut from the
templated text by character count (for interaction transcripts, which end in a user turn, this is the other
instance's turn, missing its first few characters), and transcripts whose prompt reaches max_length - 2
tokens are dropped. --sft-targets assistant_turns trains on every assistant turn instead.
"""

import argparse
import json

import torch
from datasets import Dataset
from octlib import training
from octlib.io import read_jsonl
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer
from trl.trainer.utils import add_fused_lm_head


def last_message_example(tokenizer, messages, max_len):
    built = training.openrlhf_sequence(tokenizer, messages, max_len)
    if built is None:
        return None
    ids, prompt_len = built
    return {"input_ids": ids, "labels": [-100] * prompt_len + ids[prompt_len:]}


def assistant_turns_example(tokenizer, messages, max_len):
    def length(text):
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    text = tokenizer.apply_chat_template(messages, tokenize=False).rstrip("\n")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_len]
    labels = [-100] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            start = length(tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True))
            end = length(tokenizer.apply_chat_template(messages[: i + 1], tokenize=False).rstrip("\n"))
            labels[start:end] = ids[start:end]
    if all(label == -100 for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


class CharacterSFTTrainer(training.Speedups, SFTTrainer):
    """SFTTrainer whose loss weighs every target token by its example's weight in the step (training.Steps): the
    token mean of each group of the reference's micro-batch size of a step's shuffle, averaged over the step
    (OpenRLHF's), or, with a group of the whole step, one token mean over the step (TRL's). The loss is thus the
    same whatever micro-batches run, padded or padding-free (one row of the micro-batch's transcripts, TRL's
    collator), and no metric is read from the GPU each micro-batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # TRL's fused LM head also computes entropy and top-1 hits for its metrics: log-probs are all this loss needs
        add_fused_lm_head(self.model.get_base_model())

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs.pop("loss_weight")
        if "cu_seq_lens_q" in inputs:  # padding-free: each transcript's weight on each of its tokens
            # the row's length given, so that the GPU need not tell the CPU how long the result is (a sync)
            lengths, tokens = inputs["cu_seq_lens_q"].diff().to(weights.device), inputs["input_ids"].size(1)
            weights = weights.repeat_interleave(lengths, output_size=tokens)[None, 1:]
        else:
            weights = weights[:, None]
        with torch.autocast(self.args.device.type, torch.bfloat16, enabled=self.args.bf16):
            outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        loss = self.weighted(-outputs.log_probs, weights)  # zero where a token is no target
        return (loss, outputs) if return_outputs else loss


def build_trainer(model, tokenizer, examples, s, out, sft_loss="token_mean"):
    """The trainer, and the decisions it runs with (training.decide and training.plan_steps). sft_loss:
    micro_batch_means (OpenRLHF's, over groups of s["reference_micro_batch_size"]) or token_mean."""
    decisions = training.decide(s, model)
    training.pack_with_varlen(model, decisions)
    group = s["reference_micro_batch_size"] if sft_loss == "micro_batch_means" else None
    targets = [sum(label != -100 for label in e["labels"][1:]) for e in examples]
    steps, examples = training.plan_steps(examples, s, decisions, group=group, targets=targets)
    arguments = training.trainer_arguments(s, out, decisions)
    if decisions["padding_free"]:  # the examples are cut to max_length already; TRL refuses one without packing
        arguments.update(padding_free=True, max_length=None)
    config = SFTConfig(**arguments, dataset_kwargs={"skip_prepare_dataset": True})
    trainer = CharacterSFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=training.lora_config(s),
        steps=steps,
    )
    return trainer, decisions


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the distilled model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--settings", type=json.loads, required=True, help="JSON: the sft block of the config")
    parser.add_argument("--speed", type=json.loads, default={}, help="JSON: its settings of speed only")
    parser.add_argument("--card", type=json.loads, help="JSON: the model card's facts (octlib.cards); none, no card")
    parser.add_argument("--sft-targets", choices=["last_message", "assistant_turns"], required=True)
    parser.add_argument("--sft-loss", choices=["micro_batch_means", "token_mean"], required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    s = {**args.settings, **args.speed}

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    build = assistant_turns_example if args.sft_targets == "assistant_turns" else last_message_example
    rows = read_jsonl(args.data)
    examples = [e for e in (build(tokenizer, r["messages"], s["max_length"]) for r in rows) if e is not None]
    print(f"{len(examples)} of {len(rows)} transcripts to train on", flush=True)

    partial = args.out + ".partial"
    trainer, decisions = build_trainer(
        training.load_model(args.model, s), tokenizer, examples, s, partial, args.sft_loss
    )
    print(f"training decisions: {json.dumps(decisions)}", flush=True)
    trainer.train()
    training.save_adapter(trainer, partial, args.out, decisions, s, args.card, "SFT")


if __name__ == "__main__":
    main()
