"""The training settings of speed only (the micro-batch, length sorting, padding-free micro-batches, which are filled
by tokens) leave what is trained as it is: every combination gives the per-step losses and the adapter of one
reference run, for DPO and for both SFT losses. This is what lets them rerun nothing (tests/test_reruns.py)."""

import itertools
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
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
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(scratch.rglob("*.safetensors"))  # every run's checkpoints removed (8B: 16 GB each)
    report = json.loads(next(tmp_path.glob("train_throughput_*_cpu.json")).read_text())
    assert report["load"].endswith(" s")
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == names and all(row["statuses"] == ["ok"] and row["tokens_per_s"] for row in rows.values())
    assert rows["sft TRL tuned"]["padding_free"] and not rows["sft TRL tuned"]["sort_by_length"]
    assert rows["dpo ours"]["vs TRL tuned"] > 0 and set(report["jobs"]) == {"dpo", "sft"}
    markdown = next(tmp_path.glob("train_throughput_*_cpu.md")).read_text()
    assert "| sft ours | 1 | 2 x 16 |" in markdown and "All 66 training runs of the paper" in markdown


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16"])
def test_lora_updates_added_in_the_matmul_give_pefts_outputs_and_gradients(tiny_models, bf16):
    """fuse_lora_updates: the logits and LoRA gradients of PEFT's forward, with the adapter and without. In bf16 (the
    base model in bf16, LoRA in float32, under autocast: training on a GPU), as close to float32's as PEFT's own."""
    from octlib.training import fuse_lora_updates, lora_config
    from peft import get_peft_model

    model = AutoModelForCausalLM.from_pretrained(tiny_models["chatml"], dtype=torch.float32)
    torch.manual_seed(0)  # lora_A's initialisation too
    model = get_peft_model(model, lora_config(settings("dpo", lora_rank=4)))
    for name, module in model.named_modules():
        if name.endswith(("q_proj.base_layer", "k_proj.base_layer", "v_proj.base_layer")):  # biases, as Qwen's
            module.bias = torch.nn.Parameter(torch.randn(module.out_features), requires_grad=False)
    base_weights = [p for name, p in model.named_parameters() if "lora_" not in name]
    for name, p in model.named_parameters():
        if "lora_B" in name:  # zero at the start, which would make every update zero
            p.data.normal_(0, 0.5)
    for p in base_weights:  # the same model in float32 and bf16
        p.data = p.data.to(torch.bfloat16).float()
    ids = torch.randint(0, model.config.vocab_size, (2, 12))

    def node_types(node):  # of every node of the backward graph
        seen, todo = set(), [node]
        while todo:
            node = todo.pop()
            if node is not None and node not in seen:
                seen.add(node)
                todo += [child for child, _ in node.next_functions]
        return [type(node).__name__ for node in seen]

    def run():
        model.zero_grad()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids).logits.float()
            with model.disable_adapter():
                base = model(input_ids=ids).logits.float()
        nodes = node_types(logits.grad_fn)
        logits.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return {"logits": logits.detach(), **grads}, base, nodes

    exact, _, _ = run()
    if bf16:
        for p in base_weights:
            p.data = p.data.to(torch.bfloat16)
    peft, base, _ = run()
    fuse_lora_updates(model)
    fused_modules = [m for m in model.modules() if "forward" in vars(m)]
    assert len(fused_modules) == sum(1 for n, _ in model.named_modules() if n.endswith("lora_A")) > 0
    fused, fused_base, nodes = run()
    assert nodes.count("FusedLoraBackward") == len(fused_modules)  # PEFT's forward taken nowhere but without adapter
    torch.testing.assert_close(fused_base, base, rtol=0, atol=0)
    assert not torch.allclose(fused["logits"], base, rtol=1e-2, atol=1e-2)  # the adapter changes the logits
    if not bf16:
        torch.testing.assert_close(fused, exact, rtol=1e-5, atol=1e-6)
        return
    # bf16: the rounding of a random model's logits and gradients compounds through its layers, in another order
    # here than in PEFT (test_fused_lora_layer_rounds_no_worse_than_pefts compares the two layer by layer)
    assert all(fused[name].dtype == value.dtype and fused[name].isfinite().all() for name, value in peft.items())
    for name, value in peft.items():
        assert (fused[name] - value).norm() <= (0.03 if name == "logits" else 0.25) * value.norm(), name


def test_fused_lora_layer_rounds_no_worse_than_pefts():
    """One bf16 LoRA layer (base weight and bias bf16, LoRA float32, alpha / r = 2) over 20 random draws: the output
    and the gradients of the input, lora_A and lora_B from FusedLora are no further from float64 than PEFT's sum
    under autocast."""
    from octlib.training import FusedLora

    def exact(x, weight, bias, lora_A, lora_B):
        return F.linear(x, weight.double(), bias.double()) + F.linear(F.linear(x, lora_A), lora_B) * 2.0

    def peft(x, weight, bias, lora_A, lora_B):
        with torch.autocast("cpu", torch.bfloat16):
            return F.linear(x, weight, bias) + F.linear(F.linear(x, lora_A), lora_B) * 2.0

    def fused(x, weight, bias, lora_A, lora_B):
        return FusedLora.apply(x, weight, bias, lora_A, lora_B, 2.0, torch.bfloat16)

    errors = {peft: torch.zeros(4), fused: torch.zeros(4)}  # of the output, grad x, grad lora_A, grad lora_B
    for seed in range(20):
        torch.manual_seed(seed)
        x, grad = torch.randn(64, 128).bfloat16(), torch.randn(64, 256).bfloat16()
        weight, bias = (torch.randn(256, 128) / 128**0.5).bfloat16(), torch.randn(256).bfloat16()
        lora_A, lora_B = torch.randn(8, 128) / 128**0.5, torch.randn(256, 8) * 0.05
        results = {}
        for f in (exact, peft, fused):
            inputs = [
                t.to(torch.float64 if f is exact else t.dtype).clone().requires_grad_() for t in (x, lora_A, lora_B)
            ]
            y = f(inputs[0], weight, bias, *inputs[1:])
            y.backward(grad.to(y.dtype))
            results[f] = [t.double() for t in (y.detach(), *(i.grad for i in inputs))]
        for f in (peft, fused):
            for k, (value, truth) in enumerate(zip(results[f], results[exact])):
                errors[f][k] += (value - truth).norm() / truth.norm()
    assert (errors[fused] <= 1.02 * errors[peft]).all(), errors
