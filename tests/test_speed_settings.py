"""The training settings of speed only (the micro-batch, length sorting, padding-free micro-batches, which are filled
by tokens) leave what is trained as it is: every combination gives the per-step losses and the adapter of one
reference run, for DPO and for both SFT losses. This is what lets them rerun nothing (tests/test_reruns.py)."""

import itertools
import json
import subprocess
import sys

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
    """Three optimiser steps of 4 examples of very different lengths: (loss per step, LoRA weights, micro-batches
    per step)."""
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
    return losses, lora, decisions["gradient_accumulation_steps"]


@pytest.mark.parametrize("stage", ["dpo", "sft micro_batch_means", "sft token_mean"])
def test_speed_settings_train_the_same_adapter(tmp_path, tiny_models, stage):
    stage, _, sft_loss = stage.partition(" ")
    losses, lora, _ = train(stage, tiny_models["chatml"], tmp_path / "reference", REFERENCE, sft_loss)
    assert len(losses) == 3 and losses[0] != losses[-1]
    filled = []  # padding-free micro-batches filled by tokens: fewer of them than the micro-batch size gives
    for i, speed in enumerate(VARIANTS):
        other_losses, other_lora, accumulation = train(stage, tiny_models["chatml"], tmp_path / str(i), speed,
                                                       sft_loss)  # fmt: skip
        if speed["padding_free"]:
            filled.append(accumulation < 4 // speed["micro_batch_size"])
        assert other_losses == pytest.approx(losses, rel=1e-5, abs=1e-6), speed
        worst = max((lora[k] - other_lora[k]).abs().max().item() for k in lora)
        assert worst < 1e-5, (speed, worst)
    assert any(filled)


def test_the_throughput_benchmark_runs_on_the_cpu_and_reports_every_configuration(tmp_path):
    """bench/train_throughput.py --tiny: ours and TRL tuned, for both stages, with the load run and the report."""
    names = ["dpo TRL tuned", "dpo ours", "sft TRL tuned", "sft ours"]
    command = [sys.executable, ROOT / "bench/train_throughput.py", "--tiny", "--out", tmp_path, "--warmup", "1",
               "--measured", "1", "--only", *names]  # fmt: skip
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("train_throughput_*_cpu.json")).read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == names and all(row["statuses"] == ["ok"] and row["tokens_per_s"] for row in rows.values())
    assert rows["sft TRL tuned"]["padding_free"] and not rows["sft TRL tuned"]["sort_by_length"]
    assert rows["dpo ours"]["vs TRL tuned"] > 0 and set(report["jobs"]) == {"dpo", "sft"}
    markdown = next(tmp_path.glob("train_throughput_*_cpu.md")).read_text()
    assert "| sft ours | 1 | 2 x 16 |" in markdown and "All 66 training runs of the paper" in markdown


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
def test_lora_updates_added_in_the_matmul_give_pefts_outputs_and_gradients(tiny_models, autocast):
    """fuse_lora_updates: the same logits and LoRA gradients as PEFT's forward, with the adapter and without."""
    from octlib.training import fuse_lora_updates, lora_config
    from peft import get_peft_model

    model = AutoModelForCausalLM.from_pretrained(tiny_models["chatml"], dtype=torch.float32)
    model = get_peft_model(model, lora_config(settings("dpo", lora_rank=4)))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # zero at the start, which would make every update zero
            p.data.normal_(0, 0.5)
    ids = torch.randint(0, model.config.vocab_size, (2, 12))

    graph = set()

    def walk(node):  # the backward graph's node types
        while node is not None and node not in graph:
            graph.add(node)
            for child, _ in node.next_functions[1:]:
                walk(child)
            node = node.next_functions[0][0] if node.next_functions else None

    def run():
        model.zero_grad()
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            logits = model(input_ids=ids).logits.float()
            with model.disable_adapter():
                base = model(input_ids=ids).logits.float()
        graph.clear()
        walk(logits.grad_fn)
        logits.square().mean().backward()
        return logits, base, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    peft_logits, base, peft_grads = run()
    fuse_lora_updates(model)
    fused = [m for m in model.modules() if "forward" in vars(m)]
    assert len(fused) == sum(1 for n, _ in model.named_modules() if n.endswith("lora_A")) > 0
    logits, fused_base, grads = run()
    # an update added in place into a view of the output would copy the output's gradient (CopySlices)
    assert "CopySlices" not in {type(node).__name__ for node in graph}
    tol = {"rtol": 2e-2, "atol": 2e-2} if autocast else {"rtol": 1e-5, "atol": 1e-6}
    assert not torch.allclose(logits, base, **tol)  # the adapter changes the logits
    torch.testing.assert_close(fused_base, base, rtol=0, atol=0)
    torch.testing.assert_close(logits, peft_logits, **tol)
    for name, grad in peft_grads.items():
        torch.testing.assert_close(grads[name], grad, **tol, msg=name)
