"""The workflow on a real SLURM cluster: single-node SLURM on localhost with fake GPUs (tests/cluster/slurm_up.sh),
the tiny configuration submitted through snakemake-executor-plugin-slurm with tests/cluster/profile, every job
checked in SLURM's accounting (sacct), and a constitution edit that resubmits only that persona's jobs.

Needs root on a Debian machine (it installs slurm-wlm, munge, slurmdbd and MariaDB with apt-get if they are
missing) and no SLURM configuration of another cluster; it is skipped otherwise. It stops the daemons at the end.
"""

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, copy_workflow

CLUSTER = ROOT / "tests" / "cluster"
MARKER = "# written by tests/cluster/slurm_up.sh"
TINY = "tests/tiny/config.yaml"
PERSONAS = ("loving", "sarcasm")
# loving's teacher answers, and sarcasm's DPO adapter (a GPU job) with everything it needs
TARGETS = ["results/distillation/loving/chosen.jsonl", "results/adapters/tiny/sarcasm/dpo"]
# their jobs, as SLURM's comment names them
LOVING_JOBS = {"rule_make_prompts_wildcards_loving", "rule_generate_chosen_wildcards_loving"}
SARCASM_JOBS = {
    "rule_make_prompts_wildcards_sarcasm",
    "rule_generate_chosen_wildcards_sarcasm",
    "rule_generate_rejected_wildcards_tiny_sarcasm",
    "rule_make_dpo_pairs_wildcards_tiny_sarcasm",
    "rule_train_dpo_wildcards_tiny_sarcasm",
}


def why_no_cluster():
    if os.geteuid() != 0:
        return "starting SLURM needs root"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "no SLURM and no apt-get to install it"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and MARKER not in conf.read_text():
        return "this machine has a SLURM configuration of its own"
    return None


NO_CLUSTER = why_no_cluster()
pytestmark = pytest.mark.skipif(NO_CLUSTER is not None, reason=str(NO_CLUSTER))


@pytest.fixture(scope="module")
def cluster():
    """A fresh single-node cluster with two fake H100s and job accounting; stopped afterwards. One test session
    at a time: a second waits here rather than restart the daemons under the first one's jobs."""
    with open("/run/octci-cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.monotonic()
        up = subprocess.run(
            ["bash", CLUSTER / "slurm_up.sh"],
            env={**os.environ, "GPU_TYPE": "h100", "ACCOUNTING": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert up.returncode == 0, f"the cluster did not come up:\n{up.stdout}\n{up.stderr}"
        print(f"\ncluster up in {time.monotonic() - start:.1f} s")
        yield
        subprocess.run(["bash", CLUSTER / "slurm_down.sh"], capture_output=True, check=False)


def site_config(workdir):
    """What a user writes for their cluster (partition, account, GPU type), with job sizes that fit this
    machine, and a lighter tiny chain: seed questions only (no generator job), no LIMA prompts."""
    paper = yaml.safe_load((ROOT / "config.yaml").read_text())
    small = {"cpus": 1, "mem_mb": 2000, "runtime": 30}
    overlay = {
        "personas": list(PERSONAS),
        "resources": {"train_gpus": 1},  # DPO runs as a GPU job (torch finds no CUDA and trains on the CPU)
        "cluster": {
            "partition": "main",
            "account": "octci",
            "gpu_model": "h100",
            "default": dict(small),
            "jobs": {rule: dict(small) for rule in paper["cluster"]["jobs"]},
        },
        "prompts": {"per_trait": 0},
        "chosen": {"repeats": 1, "lima": False},
    }
    (workdir / "site.yaml").write_text(yaml.safe_dump(overlay))
    return ["--configfile", TINY, "site.yaml"]


def run_on_slurm(workdir, *args, env=None, timeout=600):
    """snakemake with the given targets and flags; its output. A run that overstays gets SIGINT, which makes
    Snakemake cancel its SLURM jobs (SIGTERM would wait for them)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *map(str, args)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        raise AssertionError(f"snakemake ran over {timeout} s:\n{output[-5000:]}") from None
    assert process.returncode == 0, f"snakemake {' '.join(map(str, args))} failed:\n{output[-8000:]}"
    return output


def submitted_jobs(output):
    """SLURM's record of every job the run submitted: {comment (rule and wildcards): (state, allocated TRES)}."""
    ids = re.findall(r"submitted with SLURM jobid (\d+)", output)
    assert ids, "no job was submitted to SLURM"
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", "JobID,Comment,State,AllocTRES"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = {}
    for line in sacct.splitlines():
        _, comment, state, tres = line.split("|")
        jobs[comment] = (state, tres)
    assert len(jobs) == len(ids), f"sacct knows {len(jobs)} of the {len(ids)} submitted jobs:\n{sacct}"
    return jobs


@pytest.fixture(scope="module")
def first_run(cluster, tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("cluster"))
    config = site_config(workdir)
    start = time.monotonic()
    output = run_on_slurm(workdir, *TARGETS, "--profile", "tests/cluster/profile", *config, "--verbose")
    print(f"tiny run through SLURM: {time.monotonic() - start:.0f} s")
    return workdir, config, output


def test_every_job_ran_through_slurm_with_the_resources_of_the_config(first_run):
    workdir, _, output = first_run
    jobs = submitted_jobs(output)
    assert set(jobs) == LOVING_JOBS | SARCASM_JOBS | {"rule_build_tiny_model_wildcards_tiny"}
    assert {state for state, _ in jobs.values()} == {"COMPLETED"}
    assert "gres/gpu=1" in jobs["rule_train_dpo_wildcards_tiny_sarcasm"][1]
    assert "gres/gpu" not in jobs["rule_make_dpo_pairs_wildcards_tiny_sarcasm"][1]
    assert (workdir / "results/adapters/tiny/sarcasm/dpo/adapter_model.safetensors").exists()
    sbatch = next(line for line in output.splitlines() if "sbatch call:" in line and "rule_train_dpo" in line)
    print(f"\n{sbatch[: sbatch.index(' --wrap=')]}")
    for part in ("-p main", "-A octci", "-t 30", "--mem 2000", "--cpus-per-task=1", "--gpus=h100:1"):
        assert f" {part}" in sbatch, part
    # each job's own log, kept where the profile puts it
    assert list((workdir / "logs/slurm/rule_train_dpo/tiny_sarcasm").glob("*.log"))


def test_editing_one_constitution_resubmits_only_that_personas_jobs(first_run):
    workdir, config, _ = first_run
    path = workdir / "constitutions/loving.yaml"
    path.write_text(path.read_text().replace("Tell me something heartwarming.", "Tell me something kind."))
    output = run_on_slurm(workdir, *TARGETS, "--profile", "tests/cluster/profile", *config, "--verbose")
    jobs = submitted_jobs(output)
    assert set(jobs) == LOVING_JOBS
    assert {state for state, _ in jobs.values()} == {"COMPLETED"}
    again = run_on_slurm(workdir, *TARGETS, "--profile", "tests/cluster/profile", *config, "-n")
    assert "Nothing to be done" in again


def test_training_on_two_gpus_asks_slurm_for_two_and_launches_two_processes(first_run):
    """resources.train_gpus: 2: the DPO job gets two (fake) GPUs from SLURM and trains in two processes, each with
    half of the global batch (on the CPU here, through gloo)."""
    workdir, config, _ = first_run
    (workdir / "two.yaml").write_text("resources: {train_gpus: 2}\n")
    target = "results/adapters/tiny/sarcasm/dpo"
    output = run_on_slurm(workdir, target, "--profile", "tests/cluster/profile", *config, "two.yaml",
                          "--forcerun", "train_dpo", "--verbose")  # fmt: skip
    jobs = submitted_jobs(output)
    assert set(jobs) == {"rule_train_dpo_wildcards_tiny_sarcasm"}
    state, tres = jobs["rule_train_dpo_wildcards_tiny_sarcasm"]
    assert state == "COMPLETED" and "gres/gpu=2" in tres, tres
    decisions = json.loads((workdir / target / "training_decisions.json").read_text())
    assert (decisions["processes"], decisions["examples_per_process"]) == (2, 4)  # global batch 8


def test_the_users_profile_runs_jobs_in_their_apptainer_image_and_offline(cluster, tmp_path):
    """`snakemake --profile slurm` as a user types it, with a stand-in apptainer (none here) that logs its calls
    and runs the job's command on the host."""
    workdir = copy_workflow(tmp_path / "workflow")
    config = site_config(workdir)
    calls = tmp_path / "apptainer.log"
    job_tmp = tmp_path / "job-tmp"
    job_tmp.mkdir()
    env = {
        **os.environ,
        "PATH": f"{CLUSTER / 'stub'}{os.pathsep}{os.environ['PATH']}",
        "APPTAINER_STUB_LOG": str(calls),
        "TMPDIR": str(job_tmp),
    }
    run_on_slurm(
        workdir,
        "resources/datasets/lima_prompts.jsonl",
        "--profile",
        "slurm",
        *config,
        "--slurm-init-seconds-before-status-checks",
        10,
        env=env,
    )
    execs = [line for line in calls.read_text().splitlines() if line.startswith("apptainer exec")]
    assert len(execs) == 1, calls.read_text()
    words = execs[0].split()
    assert words[words.index("--home") + 1] == str(workdir)
    assert "--nv" in words and words[words.index("--bind") + 1] == str(job_tmp)  # $TMPDIR, expanded in the job
    assert "containers/training.sif" in words
    assert "scripts/prepare_lima.py" in execs[0]
    assert execs[0].endswith("(HF_HUB_OFFLINE=1)")  # the job, on a compute node, cannot reach the Hub
    assert (workdir / "resources/datasets/lima_prompts.jsonl").exists()
