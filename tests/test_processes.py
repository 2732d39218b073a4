"""Training over several processes (torchrun, as the training rules launch it): the per-process batch arithmetic,
and two CPU processes giving the losses and the adapter of one, for DPO and SFT on the tiny run's data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from octlib import training
from safetensors.torch import load_file

TORCHRUN = Path(sys.executable).parent / "torchrun"
SETTINGS = {"micro_batch_size": "auto", "sort_by_length": True, "padding_free": "auto", "attention": "sdpa", "bf16": True,
            "max_length": 64}  # fmt: skip


@pytest.mark.parametrize(
    ("processes", "batch", "expected"),
    [(1, 32, (32, 2, 16)), (2, 32, (16, 2, 8)), (8, 32, (4, 2, 2)), (3, 24, (8, 2, 4)), (8, 8, (1, 1, 1))],
)
def test_each_process_takes_its_share_of_the_global_batch(monkeypatch, processes, batch, expected):
    """(examples per process, micro-batch, accumulation steps); the micro-batch "auto" is 2 on the CPU, or less."""
    monkeypatch.setenv("WORLD_SIZE", str(processes))
    decisions = training.decide({**SETTINGS, "global_batch_size": batch, "gradient_checkpointing": False,
                                 "liger_kernel": False})  # fmt: skip
    assert (
        decisions["examples_per_process"],
        decisions["micro_batch_size"],
        decisions["gradient_accumulation_steps"],
    ) == expected
    assert decisions["processes"] == processes
    assert decisions["examples_per_process"] * processes == batch  # the global batch is kept


@pytest.mark.parametrize(("processes", "batch"), [(3, 32), (8, 12)])
def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused(monkeypatch, processes, batch):
    monkeypatch.setenv("WORLD_SIZE", str(processes))
    with pytest.raises(SystemExit, match=f"global_batch_size {batch} does not divide among {processes} processes"):
        training.decide(
            {**SETTINGS, "global_batch_size": batch, "gradient_checkpointing": False, "liger_kernel": False}
        )


def train(processes, stage, workdir, out):
    """One training job of the tiny run again, on `processes` CPU processes, for 4 optimizer steps."""
    adapter = workdir / f"results/adapters/tiny/loving/{stage}"
    settings = json.loads((adapter / "training_settings.json").read_text())
    # padding_free: the packed path (a block-diagonal mask on the CPU)
    settings.update(max_steps=4, micro_batch_size="auto", sort_by_length=True, padding_free=True)
    if stage == "dpo":
        data = ["scripts/train_dpo.py", "--model", workdir / "resources/models/tiny",
                "--pairs", workdir / "results/distillation/tiny/loving/pairs.jsonl"]  # fmt: skip
    else:
        data = ["scripts/train_sft.py", "--model", workdir / "results/models/tiny/loving/distilled",
                "--data", workdir / "results/introspection/tiny/loving/sft.jsonl",
                "--sft-targets", "last_message", "--sft-loss", "micro_batch_means"]  # fmt: skip
    command = [TORCHRUN, "--standalone", "--nnodes", 1, "--nproc_per_node", processes, *data,
               "--settings", json.dumps(settings), "--out", out]  # fmt: skip
    result = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    decisions = json.loads((out / "training_decisions.json").read_text())
    log = json.loads((out / "training_log.json").read_text())
    return decisions, [e["loss"] for e in log if "loss" in e], load_file(out / "adapter_model.safetensors")


@pytest.mark.parametrize("stage", ["dpo", "sft"])
def test_two_processes_give_the_losses_and_adapter_of_one(tiny_run, tmp_path, stage):
    workdir, _ = tiny_run
    one = train(1, stage, workdir, tmp_path / "one")
    two = train(2, stage, workdir, tmp_path / "two")
    assert (one[0]["processes"], two[0]["processes"]) == (1, 2)
    assert one[0]["examples_per_process"] == 2 * two[0]["examples_per_process"]  # the same global batch
    assert len(one[1]) == len(two[1]) == 4
    differences = [abs(a - b) for a, b in zip(one[1], two[1])]
    print(f"\n{stage}: largest loss difference between 1 and 2 processes {max(differences):.2e}")
    assert max(differences) < 1e-5
    assert one[2].keys() == two[2].keys()
    weights = max((one[2][k] - two[2][k]).abs().max().item() for k in one[2])
    print(f"{stage}: largest adapter weight difference {weights:.2e}")
    assert weights < 1e-5 and any(torch.any(v != 0) for v in one[2].values())
