import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache for vLLM's CPU build


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


def snakemake(workdir, *args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *map(str, args)], cwd=workdir, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(map(str, args))} failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
        )
    return result
