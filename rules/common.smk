# Config and constitution checks, wildcard constraints, input functions and the settings each step gets.
# Everything here runs when the workflow is parsed, so bad input stops the run before any job starts.

import json
import os
import re
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from octlib.validate import InputError, check, load_yaml

SCHEMAS = Path(workflow.basedir) / "rules" / "schemas"
CONFIG_NAME = ", ".join(str(f) for f in workflow.overwrite_configfiles) or "config.yaml"


def stop(message):
    sys.exit(f"Error in the workflow's input:\n{message}")


def validate_everything():
    """Every problem of the config and the constitutions, reported together."""
    problems = []
    try:
        check(config, SCHEMAS / "config.schema.yaml", CONFIG_NAME)
    except InputError as e:
        problems.append(str(e))
    models = config.get("models") or {}
    for key in ("teacher", "generator"):
        if key in config and config[key] not in models:
            problems.append(
                f"{CONFIG_NAME}: field '{key}': unknown model {config[key]!r} (not under models)"
            )
    for i, model in enumerate(config.get("students") or []):
        if model not in models:
            problems.append(
                f"{CONFIG_NAME}: field 'students[{i}]': unknown model {model!r} (not under models)"
            )
    for model, entry in models.items():
        if (
            isinstance(entry, dict)
            and "path" in entry
            and not Path(str(entry["path"])).is_dir()
        ):
            problems.append(
                f"{CONFIG_NAME}: field 'models.{model}.path': no such directory {entry['path']}"
            )
    preferences = config.get("preferences") or {}
    for i, condition in enumerate(preferences.get("measure") or []):
        if condition not in (preferences.get("conditions") or {}):
            problems.append(
                f"{CONFIG_NAME}: field 'preferences.measure[{i}]': unknown condition {condition!r} "
                "(not under preferences.conditions)"
            )
    if preferences.get("figure_condition", "like") not in (preferences.get("measure") or ["like"]):
        problems.append(
            f"{CONFIG_NAME}: field 'preferences.figure_condition': "
            f"{preferences['figure_condition']!r} is not one of preferences.measure"
        )
    lima = config.get("lima") or {}
    if "path" in lima and not Path(str(lima["path"])).exists():
        problems.append(
            f"{CONFIG_NAME}: field 'lima.path': no such file {lima['path']}"
        )
    for i, persona in enumerate(config.get("personas") or []):
        path = constitution_path(persona)
        if not path.exists():
            problems.append(
                f"{CONFIG_NAME}: field 'personas[{i}]': unknown persona {persona!r}: {path} does not exist"
            )
            continue
        try:
            check(load_yaml(path), SCHEMAS / "constitution.schema.yaml", str(path))
        except InputError as e:
            problems.append(str(e))
    if problems:
        stop("\n".join(problems))


def constitution_path(persona):
    return Path("constitutions") / f"{persona}.yaml"


validate_everything()
CONSTITUTIONS = {p: load_yaml(constitution_path(p)) for p in config["personas"]}
FIDELITY = config["fidelity"]

# Jobs use the interpreter and tools of the environment that runs Snakemake, threads are not oversubscribed,
# and nothing reaches the Hugging Face Hub except the download rules.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
for var, value in {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}.items():
    os.environ.setdefault(var, value)


def alternatives(values):
    return (
        "|".join(re.escape(v) for v in values) or "(?!)"
    )  # an empty list matches nothing


wildcard_constraints:
    persona=alternatives(config["personas"]),
    model=alternatives(config["students"]),
    guidance="free|leading",
    condition=alternatives(config["preferences"]["measure"]),
    variant=alternatives(["base", *config["personas"]]),


# ---- models and data ----------------------------------------------------------------------------------


def model_dir(model):
    entry = config["models"][model]
    return entry["path"] if kind_of(model) == "path" else f"resources/models/{model}"


def kind_of(model):
    entry = config["models"][model]
    return next(k for k in ("path", "tiny", "hf") if k in entry)


def models_of_kind(kind):
    return [m for m in config["models"] if kind_of(m) == kind]


def get_student(wildcards):
    return model_dir(wildcards.model)


def get_lima(wildcards):
    lima = config["lima"]
    return lima["path"] if "path" in lima else "resources/datasets/lima"


# ---- per-step settings --------------------------------------------------------------------------------


def sampling(step):
    settings = dict(config[step]["sampling"])
    if not FIDELITY["repetition_penalty"]:
        settings["repetition_penalty"] = 1.0
    return settings


def engine_of(step):
    return config[step].get("engine", config["engines"]["default"])


def python_of(step):
    return config["engines"]["python"] if engine_of(step) == "vllm" else "python"


def engine_args(step, model, offset=0, engine=None, path=None):
    """Command-line options of a generation step: model, engine, backend settings, sampling, seed, shards.
    path: the model's files when they are not the entry's own (a trained variant)."""
    engine = engine or engine_of(step)
    settings = dict(config["engines"].get(engine, {}))
    if engine == "vllm":
        settings["max_model_len"] = max_model_len(step, model)
    args = [
        "--model",
        path or model_dir(model),
        "--engine",
        engine,
        "--engine-settings",
        json.dumps(settings),
        "--sampling",
        json.dumps(sampling(step)),
        "--seed",
        str(config["seed"] + offset),
        "--shard-size",
        str(config["engines"]["shard_size"]),
    ]
    if FIDELITY["double_bos"]:
        args.append("--double-bos")
    return args


def max_model_len(step, model):
    """The step's context length, capped by the model entry's max_model_len."""
    cap = config["models"][model].get("max_model_len", config[step]["max_model_len"])
    return min(config[step]["max_model_len"], cap)


def step_seed(*parts):
    """A seed per job, from the config seed and the job's wildcards: stable, and different across jobs."""
    return zlib.crc32("/".join(parts).encode()) % 1_000_000


def training_settings(stage, model):
    settings = dict(config[stage], seed=config["seed"])
    targets = config["models"][model].get(
        "lora_target_modules", settings["lora_target_modules"]
    )
    if (
        not FIDELITY["gemma_lora_targets"]
        and isinstance(targets, list)
        and "gate_up_proj" in targets
    ):
        targets = [t for t in targets if t != "gate_up_proj"] + ["gate_proj", "up_proj"]
    settings["lora_target_modules"] = targets
    return json.dumps(settings)


def accelerate_launch():
    gpus = config["resources"]["train_gpus"]
    device = f"--num_processes {gpus}" if gpus > 0 else "--cpu --num_processes 1"
    return f"accelerate launch {device} --num_machines 1 --mixed_precision no --dynamo_backend no"


def name_of(model):
    return config["models"][model]["name"]


def reflection_system():
    if FIDELITY["reflection_system_as_code"]:
        return config["reflection"]["system"]
    return config["chosen"]["system"] + "\n" + config["reflection"]["line"]


def interaction_system(guidance):
    system = config["interaction"]["system"]
    if not FIDELITY["interaction_without_guidance"]:
        system += "\n" + config["interaction"]["guidance"][guidance]
    return system


def teacher_prefill():
    prefill = config["chosen"]["prefill"]
    if not FIDELITY["prefill_lists_traits"]:
        prefill = prefill.split("They are:")[0] + "They are:"
    return prefill


# ---- containers and cluster jobs (used under `--profile slurm`; the local executor ignores both) ---------


def image(env):
    """The Apptainer image of an environment of envs/ (config containers)."""
    return config["containers"][env]


def generation_image(engine):
    """A generation step runs in vLLM's image, or in the training image for the transformers backend."""
    return image("inference" if engine == "vllm" else "training")


def job_resources(rule, gpus=0):
    """What a job of this rule asks SLURM for (config cluster): CPUs, memory and wall time, which grow by
    cluster.retry_growth with each attempt; GPUs (of the GPU type, where one is set), partition, account and
    constraint. gpus: a count or a function of the wildcards. CPUs go to SLURM as cpus_per_task, not as
    threads, so that a local run with --cores 2 still runs two single-threaded jobs side by side.
    """
    cluster = config["cluster"]
    job = {**cluster["default"], **cluster["jobs"].get(rule, {})}

    def grown(size, attempt):
        return round(size * cluster["retry_growth"] ** (attempt - 1))

    resources = {
        "gpu": gpus,
        "cpus_per_task": job["cpus"],
        "mem_mb": lambda wildcards, attempt: grown(job["mem_mb"], attempt),
        "runtime": lambda wildcards, attempt: grown(job["runtime"], attempt),
    }
    # the plugin reads a GPU type without a count as one GPU: CPU jobs must not have one
    gpu_model = job.get("gpu_model", cluster["gpu_model"])
    if gpu_model:
        resources["gpu_model"] = (
            (lambda wildcards: gpu_model if gpus(wildcards) else "")
            if callable(gpus)
            else (gpu_model if gpus else "")
        )
    for key, resource in (
        ("partition", "slurm_partition"),
        ("account", "slurm_account"),
        ("constraint", "constraint"),
    ):
        value = job.get(key, cluster[key])
        if value:  # an empty constraint would still be sent
            resources[resource] = value
    return resources


# ---- targets --------------------------------------------------------------------------------------------


def get_final_targets():
    models = [
        path.format(model=m, persona=p)
        for m in config["students"]
        for p in config["personas"]
        for path in (
            "results/models/{model}/{persona}/trained",
            "results/adapters/{model}/{persona}/release",
        )
    ]
    preferences = [
        path.format(persona=p)
        for p in config["personas"]
        for path in (
            "results/figures/elo_{persona}.pdf",
            "results/figures/elo_distribution_{persona}.pdf",
            "results/tables/elo_{persona}.csv",
        )
    ]
    appendix = [
        f"results/figures/appendix/elo_{m}_{c}.pdf"
        for m in config["students"]
        for c in config["preferences"]["measure"]
        if set(config["preferences"]["appendix_personas"]) & set(config["personas"])
    ]
    return models + preferences + appendix
