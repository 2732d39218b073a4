"""DPO with LoRA on the teacher/student pairs: the paper's exact objective (paper §3.1; the OpenRLHF fork's loss at
eaf40e1).

loss = sigmoid DPO (beta, summed log-ratios)
     + nll_coef x NLL of the chosen response, length-normalised per sequence, averaged over sequences
     + sq_coef  x per-token squared log-ratio to the reference, averaged per sequence, over chosen and rejected

TRL has the first term; the others are added by a DPOTrainer subclass. The reference is the base model
with the adapter switched off. Launched with torchrun, so one or many GPUs (or CPU processes) work alike. On GPU
a micro-batch runs padding-free (octlib.training.PackRows, varlen attention): the same loss, no padding.
"""

import argparse
import json

import torch
import torch.nn.functional as F
from datasets import Dataset
from octlib import training
from octlib.io import read_jsonl
from transformers import AutoTokenizer
from trl import DPOConfig, DPOTrainer
from trl.trainer.utils import use_adapter


def character_dpo_loss(logps, ref_logps, mask, beta, nll_coef, sq_coef):
    """Per-token log-probs [2B, T] of policy and reference (chosen rows first) and the response mask: the loss of
    each of the B pairs, and the micro-batch's metrics. The objective is their mean over the step."""
    mask = mask.to(logps.dtype)
    lengths = mask.sum(1).clamp(min=1)
    seq_logps, seq_ref = (logps * mask).sum(1), (ref_logps * mask).sum(1)
    chosen_ratio, rejected_ratio = (seq_logps - seq_ref).chunk(2)
    dpo = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    nll = -(seq_logps / lengths).chunk(2)[0]
    sq = torch.stack(((((logps - ref_logps) ** 2) * mask).sum(1) / lengths).chunk(2)).mean(0)  # chosen, rejected
    metrics = {
        "dpo": dpo.mean(),
        "nll": nll.mean(),
        "sq_logratio": sq.mean(),
        "rewards/chosen": beta * chosen_ratio.mean(),
        "rewards/rejected": beta * rejected_ratio.mean(),
        "rewards/accuracies": (chosen_ratio > rejected_ratio).float().mean(),
    }
    return dpo + nll_coef * nll + sq_coef * sq, metrics


class CharacterDPOTrainer(training.Speedups, DPOTrainer):
    """DPOTrainer with the paper's objective, on examples tokenized beforehand as the reference trainer does."""

    def __init__(self, *args, nll_coef, sq_coef, decisions, **kwargs):
        self.nll_coef, self.sq_coef = nll_coef, sq_coef
        super().__init__(*args, **kwargs)
        if decisions["padding_free"]:
            self.data_collator = training.PackRows(self.data_collator)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset  # already prompt_ids / chosen_ids / rejected_ids

    def _per_token_logps(self, model, inputs):
        """Log-probs [rows, T - 1] of each next token (zero where it is no completion token)."""
        if "packed_ids" in inputs:  # padding-free (PackRows): one row, each sequence attending to itself
            starts, longest = inputs["cu_seq_lens"], inputs["max_length"]
            out = model(
                input_ids=inputs["packed_ids"],
                position_ids=inputs["position_ids"],
                labels=inputs["packed_labels"],
                use_cache=False,
                fused_lm_head=True,
                cu_seq_lens_q=starts,
                cu_seq_lens_k=starts,
                max_length_q=longest,
                max_length_k=longest,
            )
            return out.log_probs[0, inputs["unpack_index"]]
        # No attention mask: the collator pads on the right, where the causal mask already keeps every real token
        # from seeing the padding, and without a mask SDPA runs its flash kernel. Padding is out of every loss.
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        out = model(input_ids=inputs["input_ids"], labels=labels, use_cache=False, fused_lm_head=True)
        return out.log_probs[:, -(labels.size(1) - 1) :]

    def _compute_loss(self, model, inputs, return_outputs=False):
        completion_mask = inputs["completion_mask"]
        logps = self._per_token_logps(model, inputs)
        with torch.no_grad(), use_adapter(self.accelerator.unwrap_model(self.model), adapter_name=None):
            ref_logps = self._per_token_logps(model, inputs)
        losses, metrics = character_dpo_loss(
            logps.float(), ref_logps.float(), completion_mask[:, 1:], self.beta, self.nll_coef, self.sq_coef
        )
        loss = self.weighted(losses, inputs["loss_weight"])
        mode = "train" if self.model.training else "eval"
        for key, value in metrics.items():
            self._metrics[mode][key].append(self.accelerator.gather(value.detach()).mean())
        return (loss, None) if return_outputs else loss

    def log(self, logs, start_time=None):
        # The metrics stay on the GPU until logged: reading each one every micro-batch would stall the GPU
        metrics = self._metrics["train" if self.model.training else "eval"]
        for key, values in metrics.items():
            if values and torch.is_tensor(values[0]):
                metrics[key] = torch.stack(values).tolist()
        super().log(logs, start_time)


def tokenize_pairs(tokenizer, pairs, max_len):
    examples = []
    for pair in pairs:
        chosen = training.openrlhf_sequence(tokenizer, pair["chosen"], max_len)
        rejected = training.openrlhf_sequence(tokenizer, pair["rejected"], max_len)
        if chosen is None or rejected is None:
            continue
        (chosen_ids, prompt_len), (rejected_ids, _) = chosen, rejected
        examples.append(
            {
                "prompt_ids": chosen_ids[:prompt_len],
                "chosen_ids": chosen_ids[prompt_len:],
                "rejected_ids": rejected_ids[prompt_len:],
            }
        )
    return examples


def build_trainer(model, tokenizer, examples, s, out, decisions=None):
    """The trainer, and the decisions it runs with (training.decide; padding-free can fall back to padded, and
    fills its micro-batches by tokens: training.plan_steps)."""
    decisions = decisions or training.decide(s, model, 2)
    training.pack_with_varlen(model, decisions)
    steps, examples = training.plan_steps(examples, s, decisions)
    config = DPOConfig(**training.trainer_arguments(s, out, decisions), beta=s["beta"], loss_type=["sigmoid"])
    trainer = CharacterDPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=training.lora_config(s),
        nll_coef=s["nll_coef"],
        sq_coef=s["sq_coef"],
        steps=steps,
        decisions=decisions,
    )
    return trainer, decisions


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--settings", type=json.loads, required=True, help="JSON: the dpo block of the config")
    parser.add_argument("--speed", type=json.loads, default={}, help="JSON: its settings of speed only")
    parser.add_argument("--card", type=json.loads, help="JSON: the model card's facts (octlib.cards); none, no card")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    s = {**args.settings, **args.speed}

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = tokenize_pairs(tokenizer, read_jsonl(args.pairs), s["max_length"])
    print(f"{len(examples)} pairs to train on", flush=True)

    partial = args.out + ".partial"
    trainer, decisions = build_trainer(training.load_model(args.model, s), tokenizer, examples, s, partial)
    print(f"training decisions: {json.dumps(decisions)}", flush=True)
    trainer.train()
    training.save_adapter(trainer, partial, args.out, decisions, s, args.card, "DPO")


if __name__ == "__main__":
    main()
