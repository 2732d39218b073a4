"""Robustness (paper §4, Figure 5): repeng steering vectors and the two ways the workflow applies them, the
ModernBERT persona classifier, the macro-F1 table and figure, and the robustness targets of the tiny run."""

import csv
import json
import subprocess

import pytest
import yaml
from conftest import (
    ROOT,
    STEERING_PYTHON,
    VLLM_PYTHON,
    clone_run,
    engine_options,
    planned_jobs,
    run_script,
    snakemake,
)
from octlib.io import read_jsonl, write_jsonl
from pypdf import PdfReader

TINY = "tests/tiny/config.yaml"
METHODS = ["prompted", "steered", "distilled", "trained"]

# Real-architecture tiny models beside the workflow's own two (Llama architecture, chatml and gemma templates):
# Qwen2 (folded as a Llama with attention and MLP biases) and Gemma-3's text model (a norm after the MLP: hooked).
BUILD = """
import sys, torch
from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, Qwen2Config, Qwen2ForCausalLM
kind, tokenizer, out = sys.argv[1:]
torch.manual_seed(0)
shape = dict(vocab_size=421, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
             num_key_value_heads=1, max_position_embeddings=512)
if kind == "qwen2":
    model = Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=True))
    for name, p in model.named_parameters():  # Qwen2's q, k, v biases: not zero, so that they count
        if name.endswith("bias"):
            torch.nn.init.normal_(p, std=0.5)
else:
    model = Gemma3ForCausalLM(Gemma3TextConfig(**shape, head_dim=32, sliding_window=16))
model.save_pretrained(out)
AutoTokenizer.from_pretrained(tokenizer).save_pretrained(out)
"""

# repeng's own ControlModel beside the workflow's hooks and folded weights, on a left-padded batch.
COMPARE = """
import json, sys
import numpy as np
np.float_ = np.float64
import torch
from repeng import ControlModel, ControlVector
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from octlib import steering

model_dir, settings_path, folded_dir = sys.argv[1:]
settings = json.load(open(settings_path))
tokenizer = AutoTokenizer.from_pretrained(model_dir)
tokenizer.padding_side = "left"
tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
enc = tokenizer(["Why is the sky blue, my friend?", "Hi"], padding=True, return_tensors="pt")
mask = enc["attention_mask"]
position_ids = (mask.cumsum(1) - 1).clamp(min=0).masked_fill(mask == 0, 1)  # as generate() makes them

def logits(model):
    with torch.no_grad():
        return model(**enc, position_ids=position_ids).logits[mask.bool()]

model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
plain = logits(model)
directions = load_file(settings["vector"])
vector = ControlVector(model_type=model.config.model_type,
                       directions={i: directions[f"layer.{i}"].numpy() for i in settings["layers"]})
controlled = ControlModel(model, settings["layers"])
controlled.set_control(vector, settings["coefficient"])
reference = logits(controlled)
model = controlled.unwrap()
handles = steering.hooks(model, steering.load(settings_path))
hooked = logits(model)
for h in handles:
    h.remove()
result = {"effect": (reference - plain).abs().max().item(), "hooked": (reference - hooked).abs().max().item()}
try:
    steering.fold(model_dir, steering.load(settings_path), folded_dir)
    folded = AutoModelForCausalLM.from_pretrained(folded_dir, dtype=torch.float32).eval()
    result["folded"] = (reference - logits(folded)).abs().max().item()
except SystemExit as e:
    result["refused"] = str(e)
print("RESULT " + json.dumps(result))
"""


def steering_python():
    assert STEERING_PYTHON.exists(), "the steering environment is missing: run `bash scripts/install.sh`"
    return STEERING_PYTHON


def run_steering_env(script, *args):
    result = subprocess.run(
        [str(steering_python()), "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT / "scripts",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def train_vector(model, out, coefficient=3.0, pairs=16):
    """A real repeng vector for the loving constitution, and its steering file."""
    run_script(
        "train_steering.py",
        "--model", model,
        "--constitution", ROOT / "constitutions" / "loving.yaml",
        "--system", "The assistant is {NAME}. Its traits:\n{TRAITS}",
        "--name", "Tiny",
        "--user", "Please talk about anything.",
        "--suffixes", ROOT / "data" / "repeng_truncated_outputs.json",
        "--pairs", pairs,
        "--layers", 0.125, 0.875,
        "--batch-size", 8,
        "--out", out / "vector.safetensors",
        python=steering_python(),
    )  # fmt: skip
    run_script(
        "steering_settings.py", "--vector", out / "vector.safetensors", "--coefficient", coefficient,
        "--out", out / "steering.json",
    )  # fmt: skip
    return out / "steering.json"


@pytest.fixture(scope="module")
def models(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("steering_models")
    for kind in ("qwen2", "gemma3"):
        run_steering_env(BUILD, kind, tiny_models["gemma"], out / kind)
    return {**tiny_models, "qwen2": out / "qwen2", "gemma3": out / "gemma3"}


@pytest.mark.parametrize("kind", ["chatml", "gemma", "qwen2", "gemma3"])
def test_steering_applied_by_hooks_or_folded_weights_gives_repengs_logits(models, tmp_path, kind):
    settings = train_vector(models[kind], tmp_path)
    info = json.loads((tmp_path / "vector.json").read_text())
    assert info["layers"] == [0, 1, 2] and info["pairs"] == 16  # int(0.125 * 4) .. int(0.875 * 4) - 1
    result = json.loads(run_steering_env(COMPARE, models[kind], settings, tmp_path / "folded").split("RESULT ")[-1])
    assert result["effect"] > 1e-2  # the vector changes the logits ...
    assert result["hooked"] < 1e-5  # ... exactly as repeng's ControlModel does
    if kind == "gemma3":  # its MLP output is normalised before the residual: no bias can carry the vector
        assert "Gemma3ForCausalLM" in result["refused"] and "steering_engine: hf" in result["refused"]
    else:
        assert result["folded"] < 1e-4


def calibrate(model, vector, prompts, out, ratio):
    return run_script(
        "calibrate_steering.py", "--model", model, *engine_options(shard_size=4), "--seed", 1,
        "--sampling", json.dumps({"temperature": 0.7, "top_p": 0.95, "top_k": -1, "min_p": 0.0,
                                  "repetition_penalty": 1.1, "max_tokens": 12}),
        "--vector", vector, "--prompts", prompts, "--system", "The assistant is {NAME}:\n{TRAITS}", "--name", "Tiny",
        "--constitution", ROOT / "constitutions/loving.yaml", "--scales", 0.1, 1.0, 8.0,
        "--max-perplexity-ratio", ratio, "--out", out, check=False,
    )  # fmt: skip


def test_calibration_picks_the_most_persona_like_coherent_coefficient_or_fails_writing_nothing(tiny_models, tmp_path):
    train_vector(tiny_models["chatml"], tmp_path)
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in ("Hi there.", "Why is the sea salty?", "Help!")])
    args = (tiny_models["chatml"], tmp_path / "vector.safetensors", tmp_path / "prompts.jsonl")
    assert calibrate(*args, tmp_path / "sweep.csv", 1e6).returncode == 0
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert [float(r["scale"]) for r in rows] == [0.0, 0.1, 1.0, 8.0] and float(rows[0]["perplexity_ratio"]) == 1.0
    coherent = [r for r in rows if r["coherent"] == "1"]
    assert len(coherent) == 3  # every steered coefficient under a limit of 1e6
    [chosen] = [r for r in rows if r["chosen"] == "1"]
    assert float(chosen["persona"]) == max(float(r["persona"]) for r in coherent)
    assert float(rows[3]["coefficient"]) == pytest.approx(80 * float(rows[1]["coefficient"]))
    run_script(
        "steering_settings.py",
        "--vector",
        args[1],
        "--calibration",
        tmp_path / "sweep.csv",
        "--out",
        tmp_path / "s.json",
    )
    settings = json.loads((tmp_path / "s.json").read_text())
    assert settings["coefficient"] == float(chosen["coefficient"]) and settings["chosen_by"] == "calibration"

    result = calibrate(*args, tmp_path / "never.csv", 1.0000001)  # no steered answer is that coherent
    assert result.returncode != 0 and "steering.calibration.max_perplexity_ratio" in result.stderr
    assert not (tmp_path / "never.csv").exists()


def test_a_layer_range_outside_the_model_is_an_error_at_the_job(tiny_models, tmp_path):
    result = run_script(
        "train_steering.py", "--model", tiny_models["chatml"], "--constitution", ROOT / "constitutions/loving.yaml",
        "--system", "{NAME}", "--name", "T", "--user", "Hi", "--suffixes", ROOT / "data/repeng_truncated_outputs.json",
        "--pairs", 4, "--layers", 0.0, 0.2, "--batch-size", 4, "--out", tmp_path / "v.safetensors",
        check=False, python=steering_python(),
    )  # fmt: skip
    assert result.returncode != 0 and "select no layer of the model's 4" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_steering_file_refuses_a_vector_that_is_not_its_own(tiny_models, tmp_path):
    settings = train_vector(tiny_models["chatml"], tmp_path)
    train_vector(tiny_models["gemma"], tmp_path / "other")
    (tmp_path / "vector.safetensors").write_bytes((tmp_path / "other" / "vector.safetensors").read_bytes())
    result = subprocess.run(
        [str(steering_python()), "-c", f"from octlib import steering; steering.load({str(settings)!r})"],
        capture_output=True,
        text=True,
        cwd=ROOT / "scripts",
    )
    assert result.returncode != 0 and "sha256 differs" in result.stderr


def test_vllm_serves_the_folded_steering_with_the_greedy_tokens_of_the_hooked_model(tiny_models, tmp_path):
    assert VLLM_PYTHON.exists(), "the vLLM environment is missing: run `bash scripts/install.sh --vllm`"
    from test_generation import generated_ids

    settings = train_vector(tiny_models["chatml"], tmp_path, coefficient=4.0)
    prompts = ["Why is the sky blue?", "Write a poem.", "Help me plan a trip to the sea, please."]
    hf = generated_ids(tmp_path, "hf", tiny_models["chatml"], None, prompts, steering=settings)
    vllm = generated_ids(tmp_path, "vllm", tiny_models["chatml"], None, prompts, steering=settings)
    assert vllm == hf
    assert hf != generated_ids(tmp_path, "hf", tiny_models["chatml"], None, prompts)  # the steering matters


def test_a_steered_job_resumed_after_its_vector_changed_keeps_no_row_made_before_it(tiny_models, tmp_path):
    from test_generation import kill_after_first_shard, responses_args

    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Question number {i}, what now?"} for i in range(40)])
    settings = train_vector(tiny_models["chatml"], tmp_path, pairs=16)

    def args(out):
        return [*responses_args(tiny_models["chatml"], tmp_path / "prompts.jsonl", out), "--steering", settings]

    out, shards = tmp_path / "steered.jsonl", tmp_path / "steered.jsonl.shards"
    kill_after_first_shard(args(out), shards)
    old = [r for shard in sorted(shards.glob("*.jsonl")) for r in read_jsonl(shard)]
    train_vector(tiny_models["chatml"], tmp_path, pairs=8)  # a new vector in the same place: a new steering file
    log = run_script("generate_responses.py", *args(out)).stdout
    run_script("generate_responses.py", *args(tmp_path / "fresh.jsonl"))
    assert "discarding" in log
    assert out.read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()
    assert read_jsonl(out)[: len(old)] != old


# ---- the persona classifier -------------------------------------------------------------------------------

WORDS = {"loving": "warm kind love friend", "sarcasm": "sure great wow obviously", "mathematical": "number proof sum"}


def robustness_files(tmp_path, questions=20):
    """Answers whose words tell their persona, for two methods, in the workflow's row format."""
    inputs = []
    for method in ("prompted", "trained"):
        for persona, words in WORDS.items():
            rows = [
                {"split": split, "question": f"q{i}", "prompt": f"q{i}", "response": f"{words} {i} {words}"}
                for split in ("default", "v0")
                for i in range(questions)
            ]
            path = tmp_path / method / f"{persona}.jsonl"
            write_jsonl(path, rows)
            inputs.append({"method": method, "persona": persona, "path": str(path)})
    return inputs


def test_modernbert_classifier_learns_the_personas_and_scores_held_out_questions(tiny_models, tmp_path):
    base = tmp_path / "modernbert"
    run_script("build_tiny_model.py", "--flavour", "modernbert", "--out", base)
    inputs = robustness_files(tmp_path)
    settings = dict(
        held_out=0.2, learning_rate=5e-3, batch_size=8, gradient_accumulation_steps=2, warmup_ratio=0.05,
        weight_decay=1e-6, max_grad_norm=1.0, epochs=8, max_length=64, logging_steps=1,
    )  # fmt: skip
    labels = list(WORDS)
    run_script(
        "train_classifier.py", "--base", base, "--inputs", json.dumps(inputs), "--labels", *labels,
        "--settings", json.dumps(settings), "--seed", 1, "--out", tmp_path / "classifier",
    )  # fmt: skip
    classifier = tmp_path / "classifier"
    held_out = json.loads((classifier / "held_out.json").read_text())
    assert len(held_out) == 4 and set(held_out) < {f"q{i}" for i in range(20)}
    config = json.loads((classifier / "config.json").read_text())
    assert config["id2label"] == {"0": "loving", "1": "sarcasm", "2": "mathematical"}
    losses = [e["loss"] for e in json.loads((classifier / "training_log.json").read_text()) if "loss" in e]
    assert len(losses) == 8 * 2 * 3 * 16 // 16 and losses[-1] < losses[0] / 2  # 96 answers, 16 per step, 8 epochs

    run_script(
        "classify_responses.py", "--classifier", classifier, "--inputs", json.dumps(inputs), "--max-length", 64,
        "--batch-size", 8, "--out", tmp_path / "predictions.jsonl",
    )  # fmt: skip
    predictions = read_jsonl(tmp_path / "predictions.jsonl")
    assert len(predictions) == 2 * 3 * 2 * 20
    unseen = [p for p in predictions if p["question"] in held_out and p["split"] == "default"]
    assert sum(p["predicted"] == p["persona"] for p in unseen) / len(unseen) > 0.9

    # a persona the classifier has no label for
    write_jsonl(tmp_path / "stoic.jsonl", [{"split": "default", "question": "q", "prompt": "q", "response": "calm"}])
    result = run_script(
        "classify_responses.py", "--classifier", classifier, "--max-length", 64, "--batch-size", 8,
        "--inputs", json.dumps([{"method": "prompted", "persona": "stoic", "path": str(tmp_path / "stoic.jsonl")}]),
        "--out", tmp_path / "none.jsonl", check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "no label for ['stoic']" in result.stderr
    assert not (tmp_path / "none.jsonl").exists()


def test_f1_table_is_sklearn_macro_f1_with_the_mean_and_standard_error_over_adversarial_splits(tmp_path):
    from sklearn.metrics import f1_score

    rows = []
    for split, wrong in (("default", 0), ("v0", 1), ("v1", 3)):
        for i in range(6):
            persona = ["loving", "sarcasm"][i % 2]
            guess = "sarcasm" if i < wrong else persona  # the first `wrong` answers are called sarcasm
            rows.append(
                {"method": "steered", "persona": persona, "split": split, "question": f"q{i}", "predicted": guess}
            )
    write_jsonl(tmp_path / "predictions.jsonl", rows)
    (tmp_path / "classifier").mkdir()
    (tmp_path / "classifier" / "held_out.json").write_text(json.dumps(["q0", "q1"]))
    run_script(
        "plot_robustness.py", "--student", "tiny", tmp_path / "predictions.jsonl", tmp_path / "classifier",
        "--methods", "steered", "--adversarial", "v0", "v1", "--table", tmp_path / "table.csv",
        "--splits-table", tmp_path / "splits.csv", "--figure", tmp_path / "figure.pdf",
    )  # fmt: skip
    [row] = list(csv.DictReader(open(tmp_path / "table.csv")))

    def f1(split):
        mine = [r for r in rows if r["split"] == split]
        return f1_score([r["persona"] for r in mine], [r["predicted"] for r in mine], average="macro")

    scores = [f1("v0"), f1("v1")]
    assert float(row["f1_mean"]) == pytest.approx(sum(scores) / 2, abs=1e-4)
    assert float(row["f1_sem"]) == pytest.approx(abs(scores[0] - scores[1]) / 2, abs=1e-4)  # n = 2
    assert float(row["f1_default_in_sample"]) == 1.0 and row["held_out_responses"] == "2"
    splits = {r["split"] for r in csv.DictReader(open(tmp_path / "splits.csv"))}
    assert splits == {"default", "v0", "v1", "held_out"}
    text = PdfReader(tmp_path / "figure.pdf").pages[0].extract_text()
    assert "Activation Steering" in text and "macro-F1" in text and "chance" in text
    assert (tmp_path / "figure.png").stat().st_size > 10_000


# ---- the workflow ------------------------------------------------------------------------------------------


def test_tiny_run_builds_figure_5_for_both_students_and_all_four_methods(tiny_run):
    workdir, _ = tiny_run
    config = yaml.safe_load((ROOT / TINY).read_text())
    splits = yaml.safe_load((ROOT / "config.yaml").read_text())["robustness"]["splits"]
    count = config["robustness"]["count"]
    for model in ("tiny", "tiny-gemma"):
        for method in METHODS:
            for persona in ("loving", "sarcasm"):
                rows = read_jsonl(workdir / f"results/robustness/{model}/{method}/{persona}.jsonl")
                assert [r["split"] for r in rows] == [s for s in splits for _ in range(count)]
                assert all(r["prompt"] == f"{r['question']}\n{splits[r['split']]}".strip() for r in rows)
        assert (workdir / f"results/classifier/{model}/held_out.json").exists()
    table = list(csv.DictReader(open(workdir / "results/tables/robustness.csv")))
    assert [(r["model"], r["method"]) for r in table] == [(m, x) for m in ("tiny", "tiny-gemma") for x in METHODS]
    assert all(0 <= float(r["f1_mean"]) <= 1 and r["adversarial_splits"] == "8" for r in table)
    text = PdfReader(workdir / "results/figures/robustness.pdf").pages[0].extract_text()
    assert "tiny-gemma" in text and "Distill+Introspect" in text and "System Prompt" in text
    steering = json.loads((workdir / "results/steering/tiny/loving/steering.json").read_text())
    assert steering["coefficient"] == config["models"]["tiny"]["steering_coefficient"]
    # tiny-gemma has no coefficient in the config: the sweep chose one per persona, and drew it
    steering = json.loads((workdir / "results/steering/tiny-gemma/sarcasm/steering.json").read_text())
    sweep = list(csv.DictReader(open(workdir / "results/steering/tiny-gemma/sarcasm/calibration.csv")))
    assert steering["chosen_by"] == "calibration"
    assert steering["coefficient"] == float(next(r["coefficient"] for r in sweep if r["chosen"] == "1"))
    assert (workdir / "results/steering/tiny-gemma/sarcasm/calibration.png").stat().st_size > 10_000
    assert not (workdir / "results/steering/tiny/sarcasm/calibration.csv").exists()


def test_a_new_persona_is_one_yaml_file_and_its_id_through_every_method(tiny_run, tmp_path):
    workdir = clone_run(tiny_run, tmp_path)
    template = (ROOT / "constitutions" / "template.yaml").read_text()
    (workdir / "constitutions" / "stoic.yaml").write_text(template)
    (workdir / "persona.yaml").write_text("personas: [loving, sarcasm, stoic]\n")
    result = snakemake(workdir, "-n", "--configfile", TINY, "overlay.yaml", "persona.yaml")
    jobs = planned_jobs(result.stdout)
    stoic = {(rule, w.get("method")) for rule, w in jobs if w.get("persona") == "stoic"}
    assert {("generate_robustness", m) for m in METHODS} <= stoic
    assert {("train_steering", None), ("steering_settings", None), ("calibrate_steering", None)} <= stoic
    assert ("train_dpo", None) in stoic
    rules = [rule for rule, _ in jobs]
    assert rules.count("train_classifier") == 2 and rules.count("plot_robustness") == 1  # a label more
    others = [(rule, w) for rule, w in jobs if w.get("persona") in ("loving", "sarcasm")]
    assert others == []  # nothing of the other personas reruns
