"""Cluster execution, what can be checked without a cluster: every rule runs in the Apptainer image of one
environment of envs/, each definition in containers/ installs exactly that environment's pins and is well
formed, and each job asks SLURM for what config.yaml's cluster section says, more on each retry."""

import functools
import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, snakemake

CONTAINERS = ROOT / "containers"
ENVS = ROOT / "envs"
# Environments that no job runs in: the Snakemake driver on the login node, vLLM's CPU build for the tests, the
# torch pin that the training environment is installed against, and the models that come as Python packages (the
# workflow reads their files from the host's .venv, inside the working directory that jobs see).
HOST_ONLY = {"workflow", "inference-cpu", "torch", "models"}
SECTIONS = {"setup", "files", "post", "environment", "test", "labels", "help", "runscript", "startscript"}
DEFINITIONS = sorted(CONTAINERS.glob("*.def"))

# The rules of the workflow as Snakemake loaded them: image, whether it runs anything, whether it is local.
PROBE = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[Path(p) for p in sys.argv[1:]]),
        snakefile=Path("Snakefile"),
        workdir=Path("."),
    )._workflow
    rules = {
        r.name: {
            "image": r.container_img,
            "runs": not r.norun,
            "local": r.name in workflow._localrules,
            "shell": r.shellcmd or "",
        }
        for r in workflow.rules
    }
    print("RULES " + json.dumps({"rules": rules, "containers": workflow.config["containers"]}))
"""


@functools.cache
def load_rules(*configfiles):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, configfiles)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("RULES ")), None)
    assert line, f"the workflow did not load:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    data = json.loads(line[len("RULES ") :])
    return data["rules"], data["containers"]


def parse_definition(path):
    """(header, sections) of an Apptainer definition file: 'Key: value' lines before the first %section, then
    each section's lines (comments and blank lines dropped, indentation kept for the scriptlets)."""
    header, sections, current = {}, {}, None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if current is None and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if m := re.match(r"^%(\w+)\s*$", line):
            assert m.group(1) not in sections, f"{path.name}:{number}: %{m.group(1)} appears twice"
            current = m.group(1)
            sections[current] = []
        elif current is None:
            m = re.match(r"^(\w+):\s*(\S.*)$", line)
            assert m, f"{path.name}:{number}: not a 'Key: value' header line: {line!r}"
            header[m.group(1)] = m.group(2).strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            sections[current].append(line)
    return header, sections


def pins(path):
    """The name==version lines of an env file, names normalised."""
    found = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned"
            found.add(f"{re.sub(r'[-_.]+', '-', name.lower())}=={version}")
    return found


def pip_installs(post):
    """The arguments of every `pip install` in a %post scriptlet."""
    commands = []
    for line in post:
        words = shlex.split(line, comments=True)
        if "pip" in [w.rsplit("/", 1)[-1] for w in words[:2]] and "install" in words:
            commands.append(words[words.index("install") + 1 :])
    return commands


def test_every_environment_that_jobs_use_has_a_definition():
    envs = {p.stem for p in ENVS.glob("*.txt")}
    assert {p.stem for p in DEFINITIONS} == envs - HOST_ONLY


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda p: p.name)
def test_definition_is_well_formed(definition):
    header, sections = parse_definition(definition)
    assert header.get("Bootstrap") == "docker"
    image, _, tag = header["From"].partition(":")
    assert image and tag and tag != "latest", "the base image needs a fixed tag"
    assert set(sections) <= SECTIONS, f"unknown sections {set(sections) - SECTIONS}"
    assert {"files", "post", "environment", "test"} <= set(sections)
    for line in sections["files"]:
        source, destination = line.split()
        assert (ROOT / source).is_file(), f"%files source {source} is not in the repository"
        assert destination.startswith("/"), destination
    for name in ("post", "environment", "test", "setup", "runscript", "startscript"):
        if name in sections:
            syntax = subprocess.run(
                ["bash", "-n"], input="\n".join(sections[name]), capture_output=True, text=True, check=False
            )
            assert syntax.returncode == 0, f"%{name} is not valid shell: {syntax.stderr}"
    assert sections["post"][0].strip() == "set -eu", "%post must stop at the first failing command"
    for line in sections["labels"]:
        assert len(line.split(None, 1)) == 2, f"label without a value: {line!r}"
    assert any("/opt/env/bin" in line and "PATH" in line for line in sections["environment"])


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda p: p.name)
def test_definition_installs_exactly_the_pins_of_its_environment(definition):
    _, sections = parse_definition(definition)
    copied = dict(line.split() for line in sections["files"])  # source -> destination
    env_file = {destination: ROOT / source for source, destination in copied.items()}
    installs = pip_installs(sections["post"])
    assert installs, "no pip install in %post"
    installed = set()
    for args in installs:
        i = 0
        while i < len(args):
            if args[i] in ("-r", "-c"):
                assert args[i + 1] in env_file, f"{args[i]} {args[i + 1]}: not a file copied from envs/"
                if args[i] == "-r":
                    installed |= pins(env_file[args[i + 1]])
                i += 2
            else:
                assert args[i] == "--no-cache-dir", f"pip install {args[i]!r}: only env files may be installed"
                i += 1
    assert installed == pins(ENVS / f"{definition.stem}.txt")
    assert any(re.search(r"\bpip check\b", line) for line in sections["post"])


def test_every_rule_runs_in_the_image_of_one_environment():
    rules, containers = load_rules()
    assert containers == {p.stem: f"containers/{p.stem}.sif" for p in DEFINITIONS}
    images = {name: rule["image"] for name, rule in rules.items() if rule["runs"]}
    assert not [name for name, image in images.items() if image is None], "rules without a container"
    assert set(images.values()) <= set(containers.values())
    # the paper config generates with vLLM; training and figures have their own images
    assert images["generate_chosen"] == images["generate_reflection"] == containers["inference"]
    assert images["train_dpo"] == images["fold_sft"] == images["download_model"] == containers["training"]
    assert images["plot_elo"] == containers["plotting"]


def test_a_generation_step_on_the_transformers_engine_runs_in_the_training_image(tmp_path):
    rules, containers = load_rules(ROOT / "tests/tiny/config.yaml")  # engines.default: hf
    assert rules["generate_chosen"]["image"] == containers["training"]
    assert rules["generate_rejected"]["image"] == containers["training"]


def test_snakemake_lint_finds_no_rule_without_a_container():
    result = snakemake(ROOT, "--lint", check=False)
    output = result.stdout + result.stderr
    assert "Lints for" in output or "Congratulations" in output, output[-2000:]  # the linter ran
    assert "Specify a conda environment or container" not in output


def test_every_rule_submitted_to_slurm_is_sized_in_the_config():
    rules, _ = load_rules()
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    submitted = {name for name, rule in rules.items() if rule["runs"] and not rule["local"]}
    assert set(config["cluster"]["jobs"]) == submitted


def test_downloads_run_on_the_login_node():
    rules, _ = load_rules()
    online = {name for name, rule in rules.items() if "HF_HUB_OFFLINE=0" in rule["shell"]}
    assert online == {"download_model", "download_dataset", "download_benchmark"}
    local = {name for name, rule in rules.items() if rule["local"]}
    assert local == online | {"fetch_released_prompts"}  # compute nodes often have no internet
    # that the jobs themselves run with the offline flags: tests/test_cluster.py, in a SLURM job


def job_resources(dry_run_output):
    """rule -> resources of the first job of each rule in a dry run."""
    found, rule = {}, None
    for line in dry_run_output.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif (m := re.match(r"^\s+resources: (.*)", line)) and rule and rule not in found:
            found[rule] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
    return found


def test_jobs_ask_for_the_config_sizes_and_for_more_time_and_memory_on_each_retry(tmp_path):
    overlay = tmp_path / "site.yaml"
    overlay.write_text("cluster: {partition: gpu, account: lab, gpu_model: h100}\n")
    target = "results/adapters/llama-3.1-8b-it/loving/release"  # the paper config: one persona, one student
    first = job_resources(snakemake(ROOT, target, "-n", "--configfile", overlay).stdout)
    third = job_resources(snakemake(ROOT, target, "-n", "--attempt", 3, "--configfile", overlay).stdout)

    teacher = first["generate_chosen"]  # GLM-4.5-Air, tensor parallel over 4 GPUs
    assert (teacher["gpu"], teacher["gpu_model"], teacher["cpus_per_task"]) == ("4", "h100", "32")
    assert (teacher["mem_mb"], teacher["runtime"]) == ("256000", "720")
    assert (teacher["slurm_partition"], teacher["slurm_account"]) == ("gpu", "lab")
    assert (third["generate_chosen"]["mem_mb"], third["generate_chosen"]["runtime"]) == ("576000", "1620")
    assert first["train_dpo"]["gpu"] == "1" and first["train_dpo"]["gpu_model"] == "h100"
    assert first["generate_rejected"]["gpu"] == "1"
    fold = first["fold_dpo"]  # a CPU job: no GPU, so no GPU type either (the plugin would ask for one)
    assert fold["gpu"] == "0" and not fold.get("gpu_model") and fold["slurm_partition"] == "gpu"
    assert "slurm_partition" not in first["download_model"]  # local: runs on the login node


def test_the_test_profile_differs_from_the_users_only_where_it_must():
    users = yaml.safe_load((ROOT / "slurm/config.yaml").read_text())
    tests = yaml.safe_load((ROOT / "tests/cluster/profile/config.yaml").read_text())
    differing = {key for key in users.keys() | tests.keys() if users.get(key) != tests.get(key)}
    # no Apptainer on the test machine; the first status check comes sooner for jobs that take seconds
    assert differing == {"software-deployment-method", "apptainer-args", "slurm-init-seconds-before-status-checks"}
    assert users["executor"] == "slurm" and users["software-deployment-method"] == ["apptainer"]
    assert "--nv" in users["apptainer-args"].split()
