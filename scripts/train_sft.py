"""Introspection SFT with LoRA on the distilled model (paper §3.2; reference.md §1.10).

As in the reference trainer, by default only the last message of each transcript is a target, cut from the
templated text by character count (for interaction transcripts, which end in a user turn, this is the other
instance's turn, missing its first few characters), and transcripts whose prompt reaches max_length - 2
tokens are dropped. --sft-targets assistant_turns trains on every assistant turn instead.
"""

import argparse
import json

from datasets import Dataset
from octlib import training
from octlib.io import read_jsonl
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer


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
    pass


def build_trainer(model, tokenizer, examples, s, out):
    """The trainer, and the decisions it runs with (training.decide)."""
    decisions = training.decide(s, model)
    config = SFTConfig(**training.trainer_arguments(s, out, decisions), dataset_kwargs={"skip_prepare_dataset": True})
    trainer = CharacterSFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=training.lora_config(s),
        sort_by_length=decisions["sort_by_length"],
    )
    return trainer, decisions


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the distilled model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--settings", type=json.loads, required=True, help="JSON: the sft block of the config")
    parser.add_argument("--speed", type=json.loads, default={}, help="JSON: its settings of speed only")
    parser.add_argument("--sft-targets", choices=["last_message", "assistant_turns"], required=True)
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
    trainer, decisions = build_trainer(training.load_model(args.model, s), tokenizer, examples, s, partial)
    print(f"training decisions: {json.dumps(decisions)}", flush=True)
    trainer.train()
    training.save_adapter(trainer, partial, args.out, decisions)


if __name__ == "__main__":
    main()
