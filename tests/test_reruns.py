"""Reruns are exact: after one complete tiny run, changing any one setting that shapes an output replans
exactly the rules that read it, a setting of speed only replans nothing, and an unchanged config plans nothing.

The settings tried are every leaf of the effective config (config.yaml, the tiny config and the test overlay,
filled with the schema's defaults) plus the optional enum settings the schema allows, each changed to another
valid value derived from its schema: no hand-picked list. READERS is the specification of who reads what; a
leaf it does not cover fails the test, so a new setting must be placed there.
"""

import copy
import fnmatch

import pytest
import yaml
from conftest import ROOT, snakemake
from octlib.validate import check, resolve

GENERATION = {
    "make_prompts",
    "generate_chosen",
    "generate_rejected",
    "generate_reflection",
    "generate_interaction",
    "generate_preferences",
    "generate_robustness",
    "generate_prefill_first",
    "generate_prefill",
}
HF_GENERATION = GENERATION - {"generate_rejected"}  # the overlay sends the students' answers to vLLM
HF_ONLY = {"calibrate_steering"}  # always on the hf engine (tiny-gemma has no steering_coefficient: it calibrates)
TRAINING_SPEED = "micro_batch_size gradient_checkpointing liger_kernel sort_by_length attention padding_free"

# Rules that address a student by its name ({NAME}); the prompted answers are generate_robustness's.
STUDENT_NAME = {
    "make_dpo_pairs",
    "generate_reflection",
    "generate_interaction",
    "make_sft_data",
    "judge_preferences",
    "train_steering",
    "generate_robustness",
}

# Settings that choose which jobs exist or which files they read: Snakemake's input triggers track those.
STRUCTURE = [
    "personas",
    "students",
    "teacher",
    "generator",
    "judge.model",
    "prompts.source",
    "preferences.measure",
    "preferences.figure_condition",
    "preferences.appendix_personas",
    "robustness.methods",
    "prefill.methods",
    "coherence.comparisons",
    "coherence.judges",
    "classifier.model",
    "capabilities.measure",
    "capabilities.personas",
    "capabilities.benchmarks.*.dataset",
    "steering.suffixes",  # a file: its content is an input
    "robustness.splits.default",  # must stay empty (test_config)
    "*.path",
]

# (pattern, rules that read the setting); the first matching pattern applies. For the tiny config: hf
# generation except the students' answers, a loglik judge, a teacher that does not think, two students.
READERS = [
    (
        "seed",
        {"build_tiny_model", "train_dpo", "make_sft_data", "train_sft", "compute_elo", "train_classifier"}
        | {"evaluate_capabilities"}
        | GENERATION
        | HF_ONLY,
    ),
    ("models.tiny.name", STUDENT_NAME | {"generate_chosen"}),  # teacher and student
    ("models.tiny-gemma.name", STUDENT_NAME | {"calibrate_steering"}),  # tiny-gemma calibrates its steering
    ("models.tiny.steering_coefficient", {"steering_settings"}),  # tiny-gemma has none: it calibrates
    ("models.tiny.steering_engine", {"generate_robustness"}),
    ("models.tiny-gemma.steering_engine", {"generate_robustness"}),
    ("models.tiny-modernbert.tiny", {"build_tiny_model"}),
    ("models.tiny.tiny", {"build_tiny_model"}),
    ("models.tiny-gemma.tiny", {"build_tiny_model"}),
    ("models.tiny.thinking", {"generate_chosen"}),
    ("models.tiny-gemma.lora_target_modules", {"train_dpo", "train_sft"}),
    ("models.*", set()),  # GPU counts, revisions of built models, models no step uses
    ("lima.*", set()),  # path wins over hf and revision
    ("wildchat.*", set()),
    ("pure_dove.*", set()),
    ("fidelity.repetition_penalty", GENERATION | HF_ONLY),  # the loglik judge samples nothing
    ("fidelity.gemma_gate_up", {"train_dpo", "train_sft"}),  # tiny-gemma's list names gate_up_proj
    ("fidelity.sft_targets", {"train_sft"}),
    ("fidelity.sft_loss", {"train_sft"}),
    ("fidelity.interaction_*", {"generate_interaction"}),
    ("fidelity.sft_system_name", {"make_sft_data"}),
    ("fidelity.reflection_system", {"generate_reflection"}),
    ("fidelity.teacher_prefill", set()),  # only a thinking teacher has the prefill
    ("fidelity.special_tokens", GENERATION | HF_ONLY | {"judge_preferences", "judge_coherence"}),
    ("fidelity.judge_name", {"judge_preferences"}),
    ("fidelity.coherence_judging", {"judge_coherence", "summarise_coherence"}),  # prompt and statistic
    ("fidelity.prefill_follow_up", {"generate_prefill"}),
    ("engines.default", HF_GENERATION),  # the loglik judge always runs on hf
    ("engines.hf.batch_size", HF_GENERATION | HF_ONLY),
    ("engines.hf.dtype", HF_GENERATION | HF_ONLY | {"judge_preferences", "judge_coherence"}),
    ("engines.vllm.dtype", {"generate_rejected"}),
    ("engines.*", set()),  # the interpreter, vLLM's speed settings, shard size
    ("prompts.max_model_len", set()),  # read by vLLM only
    ("prompts.*", {"make_prompts"}),
    ("chosen.max_model_len", set()),
    ("chosen.prefill", set()),
    ("chosen.*", {"generate_chosen"}),
    ("rejected.*", {"generate_rejected"}),
    ("pairs.*", {"make_dpo_pairs"}),
    ("dpo.save_dtype", {"fold_dpo"}),
    *((f"dpo.{key}", set()) for key in TRAINING_SPEED.split()),
    ("dpo.*", {"train_dpo"}),
    ("sft.save_dtype", {"fold_sft"}),
    *((f"sft.{key}", set()) for key in TRAINING_SPEED.split()),
    ("sft.*", {"train_sft"}),
    ("reflection.max_model_len", set()),
    ("reflection.line", set()),  # fidelity.reflection_system own: the line is not used
    ("reflection.*", {"generate_reflection"}),
    ("interaction.guidance.*", set()),  # fidelity.interaction_guidance dropped: the guidance is not used
    ("interaction.*", {"generate_interaction"}),
    ("sft_data.*", {"make_sft_data"}),
    ("release.*", {"merge_release"}),
    ("preferences.count", {"prepare_wildchat"}),
    ("preferences.shuffle_seed", {"prepare_wildchat"}),
    ("preferences.traits", {"generate_preferences", "compute_elo"}),
    ("preferences.bootstrap", {"compute_elo"}),
    ("preferences.k", {"compute_elo"}),
    ("preferences.conditions.like", {"generate_preferences"}),
    ("preferences.conditions.*", set()),  # conditions not measured
    ("preferences.max_model_len", set()),
    ("preferences.*", {"generate_preferences"}),
    ("judge.mode", {"judge_preferences"}),
    ("judge.system", {"judge_preferences"}),
    ("judge.question", {"judge_preferences"}),
    ("judge.*", set()),  # loglik: no sampling, always hf
    ("robustness.count", {"prepare_robustness", "prepare_calibration"}),  # the calibration's come after
    ("robustness.splits.*", {"prepare_robustness"}),
    ("robustness.system", {"generate_robustness", "train_steering", "calibrate_steering"}),
    ("robustness.max_model_len", set()),  # read by vLLM only
    ("robustness.*", {"generate_robustness"}),
    ("steering.batch_size", set()),
    ("steering.python", set()),
    ("steering.calibration.prompts", {"prepare_calibration"}),
    ("steering.calibration.max_perplexity_ratio", {"calibrate_steering", "plot_calibration"}),
    ("steering.calibration.*", {"calibrate_steering"}),
    ("steering.*", {"train_steering"}),
    ("classifier.eval_batch_size", set()),
    ("classifier.max_length", {"train_classifier", "classify_robustness", "classify_prefill"}),
    ("classifier.*", {"train_classifier"}),
    ("prefill.follow_up.keep_going", {"generate_prefill"}),
    ("prefill.follow_up.*", set()),  # fidelity.prefill_follow_up keep_going: the other text is not used
    ("prefill.max_model_len", set()),  # read by vLLM only
    ("prefill.*", {"generate_prefill_first", "generate_prefill"}),
    ("coherence.mode", {"judge_coherence"}),
    ("coherence.prompts.code", {"judge_coherence"}),
    ("coherence.*", set()),  # loglik: no sampling, always hf; the paper's prompt is not used
    ("capabilities.batch_size", set()),
    ("capabilities.python", set()),
    ("capabilities.datasets.*", set()),  # path wins over hf and revision
    ("capabilities.*", {"evaluate_capabilities"}),
    ("resources.*", set()),
    ("containers.*", set()),
    ("cluster.*", set()),
]

# Where the value derived from the schema would not be valid together with the rest of the tiny config.
CHANGES = {
    "engines.hf.batch_size": 32,  # the shard size stays a multiple of it
    "dpo.attention": "eager",
    "sft.attention": "eager",
    "dpo.lora_target_modules": ["q_proj", "v_proj"],
    "sft.lora_target_modules": ["q_proj", "v_proj"],
    "cluster.gpu_model": "a100",
    "engines.vllm.tensor_parallel": 2,
    "resources.train_gpus": 2,  # with a micro-batch that divides the batch of each of the 2 processes
    "dpo.micro_batch_size": 2,
    "sft.micro_batch_size": 2,
}

# Changes that are valid only with another one: a teacher that thinks takes no openings (null unsets them).
TOGETHER = {"models.tiny.thinking": {"chosen": {"openings": None}}}


def merged(base, update):
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def child(schema, node, key):
    node = resolve(schema, node)
    if key in node.get("properties", {}):
        return resolve(schema, node["properties"][key])
    extra = node.get("additionalProperties")
    return resolve(schema, extra) if isinstance(extra, dict) else {}


def settings(schema, config, node=None, path=()):
    """(path of keys, value or None when absent, schema node) of every leaf, and of absent optional enums (not
    the exclusive kind keys of a model entry)."""
    node = resolve(schema, node if node is not None else schema)
    for key, value in config.items():
        sub = child(schema, node, key)
        if isinstance(value, dict):
            yield from settings(schema, value, sub, (*path, key))
        else:
            yield (*path, key), value, sub
    kinds = {k for option in node.get("oneOf", []) for k in option.get("required", [])}  # exclusive: one is set
    for key, sub in node.get("properties", {}).items():
        sub = resolve(schema, sub)
        if key not in config and key not in kinds and "enum" in sub and "default" not in sub:
            yield (*path, key), None, sub


def changed(path, value, node):
    """Another valid value for a setting (path: dotted), from its schema."""
    if path in CHANGES:
        return CHANGES[path]
    if value is None or "enum" in node:
        return next(v for v in reversed(node["enum"]) if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 if value > 0 else value + 2
    if isinstance(value, float):
        if "maximum" in node:
            return value / 2 if value else 0.05
        return value * 2 if value else 0.5
    if isinstance(value, str):
        return value + "_changed"
    if isinstance(value, list):
        if len(value) > node.get("minItems", 1):
            return value[:-1]
        if not value:
            return ["Hello_changed"]
        return [changed(path + "[0]", value[0], node.get("items", {})), *value[1:]]
    raise AssertionError(f"no way to change {path} = {value!r}")


def readers(path):
    for pattern, rules in READERS:
        if fnmatch.fnmatchcase(path, pattern):
            return rules
    raise AssertionError(f"{path}: not in READERS; say which rules read it")


def nested(keys, value):
    for key in reversed(keys):
        value = {key: value}
    return value


def triggered(summary):
    """Rules with an output that `snakemake --summary` finds out of date for a reason of its own (params,
    code or set of inputs changed, or missing): unlike a dry run's reasons, this does not hide a job's own
    reason behind that of an upstream job that reruns too."""
    rows = [line.split("\t") for line in summary.splitlines() if line.count("\t") >= 5]
    return {rule for _, _, rule, _, status, _ in (r[:6] for r in rows[1:]) if status != "ok"}


def disjoint_groups(items):
    """Greedy packing of (setting, value, rules) into groups whose rule sets do not overlap."""
    groups = []
    for item in sorted(items, key=lambda i: -len(i[2])):
        group = next((g for g in groups if not any(item[2] & other[2] for other in g)), None)
        if group is None:
            groups.append(group := [])
        group.append(item)
    return groups


@pytest.fixture(scope="module")
def plan(tiny_run):
    """plan(changes, dry_run=False): the rules whose outputs these changed settings make out of date, and with
    dry_run, what a dry run with them says."""
    workdir, _ = tiny_run
    counter = iter(range(10**6))

    def run(changes, dry_run=False):
        overlay = {}
        for keys, value in changes:
            overlay = merged(overlay, nested(keys, value))
            overlay = merged(overlay, TOGETHER.get(".".join(keys), {}))
        name = f"change_{next(counter)}.yaml"
        (workdir / name).write_text(yaml.safe_dump(overlay))
        config = ["--configfile", "tests/tiny/config.yaml", "overlay.yaml", name]
        rules = triggered(snakemake(workdir, "--summary", *config).stdout)
        if not dry_run:
            return rules
        result = snakemake(workdir, "-n", *config)
        return rules, result.stdout + result.stderr

    return run


@pytest.fixture(scope="module")
def leaves(tiny_run):
    workdir, _ = tiny_run
    schema = yaml.safe_load((ROOT / "rules/schemas/config.schema.yaml").read_text())
    config = {}
    for name in ("config.yaml", "tests/tiny/config.yaml", "overlay.yaml"):
        config = merged(config, yaml.safe_load((workdir / name).read_text()))
    check(config, ROOT / "rules/schemas/config.schema.yaml", "merged config")
    found = []
    for keys, value, node in settings(schema, config):
        path = ".".join(keys)
        if not any(fnmatch.fnmatchcase(path, p) for p in STRUCTURE):
            found.append((keys, changed(path, value, node), readers(path)))
    return found


def test_an_unchanged_config_plans_nothing(plan):
    rules, output = plan([], dry_run=True)
    assert rules == set() and "Nothing to be done" in output, output[-3000:]


def test_settings_of_speed_only_or_unread_replan_nothing(plan, leaves):
    unread = [(keys, value) for keys, value, rules in leaves if not rules]
    assert len(unread) > 100  # the cluster, container and engine speed settings, unused models, ...
    rules, output = plan(unread, dry_run=True)
    if rules:  # say which setting did it
        culprits = {".".join(keys): plan([(keys, value)]) for keys, value in unread}
        pytest.fail(f"settings that should rerun nothing rerun: { {k: r for k, r in culprits.items() if r} }")
    assert "Nothing to be done" in output, output[-3000:]


def test_every_setting_that_shapes_an_output_replans_exactly_the_rules_that_read_it(plan, leaves):
    read = [leaf for leaf in leaves if leaf[2]]
    assert len(read) > 80
    wrong = {}
    for group in disjoint_groups(read):
        rules = plan([(keys, value) for keys, value, _ in group])
        if rules != set().union(*(expected for *_, expected in group)):
            for keys, value, expected in group:  # one at a time, to name the setting
                alone = plan([(keys, value)])
                if alone != expected:
                    wrong[".".join(keys)] = {"planned": sorted(alone), "expected": sorted(expected)}
    assert not wrong, wrong
