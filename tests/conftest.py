import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
STEERING_PYTHON = ROOT / ".venv-steering" / "bin" / "python"
CAPABILITIES_PYTHON = ROOT / ".venv-capabilities" / "bin" / "python"
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache for vLLM's CPU build


# Engine settings as the workflow passes them (every key of the config's engines.hf / engines.vllm block)
HF_SETTINGS = {"batch_size": 4, "dtype": "float32"}
VLLM_SETTINGS = {
    "dtype": "float32",
    "max_model_len": 2048,
    "tensor_parallel": 1,
    "enable_prefix_caching": True,
    "gpu_memory_utilization": 0.1,
    "max_num_seqs": 32,
    "max_lora_rank": 64,
    "enforce_eager": True,
}


def engine_options(engine="hf", special_tokens="once", shard_size=4):
    """The engine options of a generation script, as the workflow passes them."""
    settings = HF_SETTINGS if engine == "hf" else VLLM_SETTINGS
    return [
        "--engine",
        engine,
        "--engine-settings",
        json.dumps(settings),
        "--shard-size",
        shard_size,
        "--special-tokens",
        special_tokens,
    ]


def run_script(name, *args, check=True, python=sys.executable):
    """Run one step's CLI as the workflow does; return the finished process."""
    result = subprocess.run([python, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{name} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """The two tiny chat models the workflow builds: chatml (system role) and gemma (no system role)."""
    out = tmp_path_factory.mktemp("models")
    for flavour in ("chatml", "gemma"):
        run_script("build_tiny_model.py", "--flavour", flavour, "--out", out / flavour)
    return {flavour: out / flavour for flavour in ("chatml", "gemma")}


def copy_workflow(dest):
    """A copy of the tracked workflow files, so a test run writes its results outside the repository."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    return dest


# Snakemake's SLURM plugin runs `scontrol show config` when it is imported; where SLURM is installed but its
# controller is down (this machine outside the cluster tests), scontrol waits ~9 s before it fails. The local
# runs of the tests get an scontrol that fails at once, as on a machine without SLURM; the cluster tests
# (test_cluster.py) run Snakemake with the real one.
NO_SLURM = Path(tempfile.mkdtemp(prefix="no-slurm-"))
(NO_SLURM / "scontrol").write_text("#!/bin/sh\nexit 1\n")
(NO_SLURM / "scontrol").chmod(0o755)


def snakemake(workdir, *args, check=True, umask=-1):
    env = {**os.environ, "PATH": f"{NO_SLURM}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *map(str, args)],
        cwd=workdir,
        capture_output=True,
        text=True,
        umask=umask,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(map(str, args))} failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
        )
    return result


def planned_jobs(dry_run_output):
    """(rule, wildcards) of every job a dry run plans."""
    jobs, rule = [], None
    for line in dry_run_output.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
            jobs.append((rule, {}))
        elif (m := re.match(r"^\s+wildcards: (.*)", line)) and rule:
            jobs[-1] = (rule, dict(kv.split("=", 1) for kv in m.group(1).split(", ")))
    return jobs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny chain for two personas and two students (one without a system role), with the student
    responses generated through vLLM's CPU build, teacher openings for one persona, under the umask of a group
    sharing its results (0002)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    assert VLLM_PYTHON.exists(), "the vLLM environment is missing: run `bash scripts/install.sh --vllm`"
    assert STEERING_PYTHON.exists(), "the steering environment is missing: run `bash scripts/install.sh`"
    assert CAPABILITIES_PYTHON.exists(), "the capabilities environment is missing: run `bash scripts/install.sh`"
    overlay = {
        "students": ["tiny", "tiny-gemma"],
        "engines": {
            "python": str(VLLM_PYTHON),
            "vllm": {"dtype": "float32", "gpu_memory_utilization": 0.1, "enforce_eager": True, "max_num_seqs": 64},
        },
        "rejected": {"engine": "vllm", "max_model_len": 2048},
        "chosen": {"openings": {"sarcasm": ["Oh, sure."]}},
        "steering": {"python": str(STEERING_PYTHON)},  # the copy has no .venv-steering of its own
        "capabilities": {"python": str(CAPABILITIES_PYTHON)},
    }
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    # one thread a job: the tiny jobs spend their time importing, so two side by side (11 min, 15.5 with two threads)
    result = snakemake(
        workdir, "--cores", 2, "--max-threads", 1, "--configfile", "tests/tiny/config.yaml", "overlay.yaml", umask=0o002
    )
    return workdir, result


def clone_run(tiny_run, dest):
    """A copy of the tiny run's working directory (results, metadata, times kept), for a test that edits it."""
    workdir, _ = tiny_run
    shutil.copytree(workdir, dest, symlinks=True, dirs_exist_ok=True)
    return dest
