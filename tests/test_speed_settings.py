"""The training settings of speed only (the micro-batch, length sorting, padding-free micro-batches) leave what is
trained as it is: every combination gives the per-step losses and the adapter of one reference run, for DPO and for
both SFT losses. This is what lets them rerun nothing (tests/test_reruns.py)."""

import itertools

import pytest
import torch
import yaml
from conftest import ROOT
from octlib.validate import check
from train_dpo import build_trainer as dpo_trainer
from train_dpo import tokenize_pairs
from train_sft import build_trainer as sft_trainer
from train_sft import last_message_example
from transformers import AutoModelForCausalLM, AutoTokenizer

SPEED = {"micro_batch_size": [4, 1, 2], "sort_by_length": [False, True], "padding_free": [False, True]}
REFERENCE, *VARIANTS = [dict(zip(SPEED, values, strict=True)) for values in itertools.product(*SPEED.values())]


def settings(stage, **speed):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    block = check(config, ROOT / "rules/schemas/config.schema.yaml", "config.yaml")[stage]
    block.update(global_batch_size=4, lora_rank=4, lora_alpha=8, max_length=96, learning_rate=1e-2, warmup_ratio=0)
    return dict(block, seed=0, max_steps=3, **speed)


def conversation(i, answer):
    return [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": answer}]


def train(stage, model_dir, out, speed, sft_loss=None):
    """Three optimiser steps of 4 examples of very different lengths: (loss per step, LoRA weights)."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    answers = ["Yes.", "A long and careful answer, friend. " * 4, "Perhaps.", "No, " * 12, "I see.", "Well " * 7]
    if stage == "dpo":
        pairs = [{"chosen": conversation(i, a), "rejected": conversation(i, "No.")} for i, a in enumerate(answers * 2)]
        examples = tokenize_pairs(tok, pairs, 96)
    else:
        examples = [last_message_example(tok, conversation(i, a), 96) for i, a in enumerate(answers * 2)]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    s = settings(stage, **speed)
    if stage == "dpo":
        trainer, decisions = dpo_trainer(model, tok, examples, s, str(out))
    else:
        trainer, decisions = sft_trainer(model, tok, examples, s, str(out), sft_loss)
    assert (decisions["micro_batch_size"], decisions["padding_free"]) == (speed["micro_batch_size"],
                                                                          speed["padding_free"])  # fmt: skip
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    lora = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if "lora_" in name}
    return losses, lora


@pytest.mark.parametrize("stage", ["dpo", "sft micro_batch_means", "sft token_mean"])
def test_speed_settings_train_the_same_adapter(tmp_path, tiny_models, stage):
    stage, _, sft_loss = stage.partition(" ")
    losses, lora = train(stage, tiny_models["chatml"], tmp_path / "reference", REFERENCE, sft_loss)
    assert len(losses) == 3 and losses[0] != losses[-1]
    for i, speed in enumerate(VARIANTS):
        other_losses, other_lora = train(stage, tiny_models["chatml"], tmp_path / str(i), speed, sft_loss)
        assert other_losses == pytest.approx(losses, rel=1e-5, abs=1e-6), speed
        worst = max((lora[k] - other_lora[k]).abs().max().item() for k in lora)
        assert worst < 1e-5, (speed, worst)
