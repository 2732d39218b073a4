"""Capability benchmarks (paper Table 8) through lm-eval on a real tiny model and tiny local tasks, the table of
changes beside the paper's, the reproduction report (every number beside the paper's, missing ones shown as
missing), the model cards and training curves of the tiny run, and its `snakemake --report` opened in Chromium."""

import csv
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import CAPABILITIES_PYTHON, ROOT, clone_run, run_script, snakemake
from transformers import AutoModelForCausalLM, AutoTokenizer

TASKS = ROOT / "tests/tiny/capabilities"
TINY = "tests/tiny/config.yaml"


def evaluate(model, data, tasks, fewshot, out):
    assert CAPABILITIES_PYTHON.exists(), "the capabilities environment is missing: run `bash scripts/install.sh`"
    command = [CAPABILITIES_PYTHON, ROOT / "scripts/evaluate_capabilities.py", "--model", model, "--data", data,
               "--tasks", *tasks, "--fewshot", fewshot, "--dtype", "float32", "--max-length", 2048, "--seed", 1,
               "--out", out]  # fmt: skip
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def loglik(model, tokenizer, context, continuation):
    """log p(continuation | context), the continuation's tokens being those the whole string adds to the context."""
    whole, start = tokenizer.encode(context + continuation), tokenizer.encode(context)
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = model(ids).logits.log_softmax(-1)[0, len(start) - 1 : -1]
    return logp.gather(-1, ids[0, len(start) :, None]).sum().item()


def test_lm_eval_scores_each_arc_choice_by_its_likelihood_after_the_question_on_the_current_data(tiny_models, tmp_path):
    """Zero-shot ARC: every choice's log-likelihood agrees with one computed here from the same model, and an edit of
    the data set's files is what the next run reads (the datasets library caches local folders)."""
    data = tmp_path / "ai2_arc"
    shutil.copytree(TASKS / "ai2_arc", data)
    model = AutoModelForCausalLM.from_pretrained(tiny_models["chatml"], dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    for edit in (False, True):
        if edit:
            test = data / "ARC-Challenge/test.jsonl"
            test.write_text(test.read_text().replace("Which of these is a mammal?", "Which animal breathes air?"))
        result = evaluate(tiny_models["chatml"], data, ["arc_challenge"], 0, tmp_path / f"arc{edit}.json")
        docs = [json.loads(line) for line in (data / "ARC-Challenge/test.jsonl").read_text().splitlines()]
        samples = result["tasks"]["arc_challenge"]["samples"]
        assert len(samples) == len(docs) == result["documents"] == 5
        correct = 0
        for sample in samples:
            doc = docs[sample["doc_id"]]
            ours = [
                loglik(model, tokenizer, f"Question: {doc['question']}\nAnswer:", f" {c}")
                for c in doc["choices"]["text"]
            ]
            assert sample["logliks"] == pytest.approx(ours, abs=1e-3)
            assert sample["target"] == doc["choices"]["label"].index(doc["answerKey"])
            correct += max(range(4), key=ours.__getitem__) == sample["target"]
        assert result["accuracy"] == pytest.approx(correct / 5)
        assert result["se"] == pytest.approx(math.sqrt(result["accuracy"] * (1 - result["accuracy"]) / 4))
        assert result["fewshot"] == 0 and result["harness"] == "lm-eval 0.4.13"


def capability_result(path, accuracy, se):
    path.write_text(json.dumps({"accuracy": accuracy, "se": se, "documents": 100, "fewshot": 0,
                                "harness": "lm-eval 0.4.13", "tasks": {}}))  # fmt: skip
    return path


def test_changes_from_the_student_and_the_published_changes_in_points(tmp_path):
    base = capability_result(tmp_path / "base.json", 0.50, 0.03)
    loving = capability_result(tmp_path / "loving.json", 0.46, 0.04)
    table, figure = tmp_path / "capabilities.csv", tmp_path / "capabilities.pdf"
    run_script("summarise_capabilities.py", "--result", "llama-3.1-8b-it", "base", "truthfulqa", base,
               "--result", "llama-3.1-8b-it", "loving", "truthfulqa", loving, "--paper", ROOT / "data/paper_numbers.csv",
               "--table", table, "--figure", figure)  # fmt: skip
    rows = {r["variant"]: r for r in csv.DictReader(open(table))}
    assert rows["base"]["change_points"] == "" and rows["base"]["published"] == "0.4590"
    assert float(rows["loving"]["change_points"]) == pytest.approx(-4.0)
    assert float(rows["loving"]["change_se"]) == pytest.approx(5.0)  # 100 * hypot(0.03, 0.04)
    assert float(rows["loving"]["published_change_points"]) == pytest.approx(100 * (0.4542 - 0.4590))
    assert "Table 8" in rows["loving"]["published_source"]
    assert figure.exists() and figure.with_suffix(".png").stat().st_size > 10_000


def write_table(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


PROVENANCE = json.dumps({"config_sha256": "ab" * 32, "fidelity": {"sft_loss": "micro_batch_means"},
                         "models": {"llama-3.1-8b-it": "meta-llama/Llama-3.1-8B-Instruct at revision x"},
                         "environments": {"capabilities": ["lm-eval==0.4.13"]}})  # fmt: skip


def test_the_report_sets_our_numbers_beside_the_papers_and_lists_the_rest_as_not_computed(tmp_path):
    prefill = write_table(tmp_path / "prefill.csv", [
        {"model": "llama-3.1-8b-it", "method": "trained", "f1": "0.91", "accuracy": "0.9", "answers": "5500"},
    ])  # fmt: skip
    spearman = write_table(tmp_path / "spearman_loving.csv", [
        {"condition": "like", "comparison": "between models before training", "model_a": "qwen-2.5-7b-it",
         "model_b": "llama-3.1-8b-it", "spearman": "0.5"},
        {"condition": "like", "comparison": "between models after training", "model_a": "llama-3.1-8b-it",
         "model_b": "qwen-2.5-7b-it", "spearman": "0.8"},
        {"condition": "like", "comparison": "before vs after training", "model_a": "qwen-2.5-7b-it",
         "model_b": "qwen-2.5-7b-it", "spearman": "0.7"},
    ])  # fmt: skip
    markdown, page = tmp_path / "reproduction.md", tmp_path / "reproduction.html"
    run_script("report_reproduction.py", "--table", "prefill", prefill, "--table", "spearman_loving", spearman,
               "--skipped", "coherence", "coherence.comparisons is empty", "--skipped", "robustness", "robustness.methods is empty",
               "--skipped", "capabilities", "capabilities.measure is empty", "--paper", ROOT / "data/paper_numbers.csv",
               "--provenance", PROVENANCE, "--markdown", markdown, "--html", page)  # fmt: skip
    text = markdown.read_text()
    sections = re.findall(r"^## (.*)$", text, flags=re.M)
    assert len(sections) == 6 and sections[0] == "What made these numbers"
    # our prefill F1 beside the paper's for the same student and method; the other five published F1s listed
    assert "| llama-3.1-8b-it | trained | 0.91 | 5500 | 0.95 | paper Table 5 |" in text
    prefill_section = text.split("## The prefill attack")[1].split("\n## ")[0]
    assert prefill_section.count("paper Table 5") == 6
    # a model pair in either order matches the paper's; the mean needs more than one pair, so it is listed as missing
    assert "| llama-3.1-8b-it/qwen-2.5-7b-it | base | like | 0.5 | 0.5958 |" in text
    assert "| llama-3.1-8b-it/qwen-2.5-7b-it | loving | like | 0.8 | 0.8931 |" in text
    assert re.search(r"\| mean \| loving \| like \| 0\.8737", text)
    assert "| qwen-2.5-7b-it: before vs after | loving | like | 0.7 | — | — |" in text  # none published
    for reason in ("coherence.comparisons is empty", "robustness.methods is empty", "capabilities.measure is empty"):
        assert f"Not computed in this configuration: {reason}." in text
    assert "ab" * 32 in text and "`sft_loss: micro_batch_means`" in text and "`lm-eval==0.4.13`" in text
    tables = sum(line.startswith("|---") for line in text.splitlines())
    assert page.read_text().count("<table>") == tables == 4 and "0.8931" in page.read_text()


def test_the_tiny_run_evaluates_every_student_before_and_after_training_on_five_benchmarks(tiny_run):
    workdir, _ = tiny_run
    rows = list(csv.DictReader(open(workdir / "results/tables/capabilities.csv")))
    assert {(r["model"], r["variant"]) for r in rows} == {
        (m, v) for m in ("tiny", "tiny-gemma") for v in ("base", "loving")
    }
    assert {r["benchmark"] for r in rows} == {"arc_challenge", "hellaswag", "truthfulqa", "winogrande", "mmlu"}
    # the tiny stand-ins' test documents: 5 ARC, 4 HellaSwag, 4 + 4 TruthfulQA, 4 WinoGrande, 3 + 3 MMLU
    counts = {"arc_challenge": 5, "hellaswag": 4, "truthfulqa": 8, "winogrande": 4, "mmlu": 6}
    assert all(int(r["documents"]) == counts[r["benchmark"]] for r in rows)
    assert all(r["change_points"] != "" for r in rows if r["variant"] == "loving")
    truthfulqa = json.loads((workdir / "results/capabilities/tiny/loving/truthfulqa.json").read_text())
    mc1, mc2 = truthfulqa["tasks"]["truthfulqa_mc1"], truthfulqa["tasks"]["truthfulqa_mc2"]
    assert truthfulqa["accuracy"] == pytest.approx((mc1["accuracy"] + mc2["accuracy"]) / 2)
    assert truthfulqa["se"] == pytest.approx(math.hypot(mc1["se"], mc2["se"]) / 2)  # the reference's pooled SE
    assert (workdir / "results/figures/capabilities.png").stat().st_size > 10_000


def test_the_tiny_runs_reproduction_report_has_every_section_and_every_published_number(tiny_run):
    workdir, _ = tiny_run
    text = (workdir / "results/report/reproduction.md").read_text()
    sections = re.findall(r"^## (.*)$", text, flags=re.M)
    assert [s.split(" (")[0].split(":")[0] for s in sections] == [
        "What made these numbers", "Revealed preferences", "Robustness to instructions that break character",
        "The prefill attack", "Coherence", "Capabilities",
    ]  # fmt: skip
    with open(ROOT / "data/paper_numbers.csv") as f:
        paper = list(csv.DictReader(f))
    # the tiny students are not the paper's: every published number is listed as not computed by this run
    for row in paper:
        assert row["source"] in text
    assert text.count("not computed by this run") == 4  # spearman, prefill, coherence, capabilities
    for model in ("tiny", "tiny-gemma"):
        assert f"| {model} | loving | mmlu |" in text and f"| {model} | trained |" in text
    assert "tiny chatml model built locally" in text and "`lm-eval==0.4.13`" in text


def test_every_trained_folder_has_a_model_card_and_every_training_job_a_curve(tiny_run):
    workdir, _ = tiny_run
    sha256 = __import__("hashlib").sha256((workdir / "constitutions/loving.yaml").read_bytes()).hexdigest()
    for folder, stages in (("adapters/tiny/loving/dpo", ["DPO"]), ("adapters/tiny/loving/sft", ["SFT"]),
                           ("adapters/tiny/loving/release", ["DPO", "SFT"]), ("models/tiny/loving/distilled", ["DPO"]),
                           ("models/tiny/loving/trained", ["DPO", "SFT"])):  # fmt: skip
        card = (workdir / "results" / folder / "README.md").read_text()
        assert sha256 in card and "constitutions/loving.yaml" in card and "arXiv:2511.01689" in card
        assert re.findall(r"^### (\w+)$", card, flags=re.M) == stages
        assert "`learning_rate`: `0.0005`" in card and "- optimizer steps: " in card
        assert ("library_name: peft" in card) == folder.startswith("adapters")
    for model in ("tiny", "tiny-gemma"):
        for persona in ("loving", "sarcasm"):
            assert (workdir / f"results/figures/training/{model}_{persona}.png").stat().st_size > 10_000


def test_the_snakemake_report_of_the_tiny_run_opens_in_chromium_with_every_figure_and_table(tiny_run, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run `bash scripts/install.sh --vllm` as root, or apt install it"
    workdir = clone_run(tiny_run, tmp_path / "run")
    snakemake(workdir, "--configfile", TINY, "overlay.yaml", "--report", "report.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=20000"]  # fmt: skip
    page = (workdir / "report.html").as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=300).stdout
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1400,1000", f"--screenshot={shot}", page], capture_output=True,
                   timeout=300)  # fmt: skip
    assert shot.stat().st_size > 10_000  # rendered, not blank
    rendered = re.sub(r"<script.*?</script>", "", dom, flags=re.S)  # what the page drew, not the data it carries
    assert "Open Character Training, reproduced" in rendered and "reproduction.html" in rendered
    categories = ["1. Reproduction", "2. Revealed preferences", "3. Robustness", "4. Coherence", "5. Capabilities",
                  "6. Training"]  # fmt: skip
    drawn = [c for c in re.findall(r">([^<>]+)<", rendered) if c in categories]
    assert drawn[: len(categories)] == categories  # the navigation, in this order: the reproduction report first
    # what each category holds, from the data the page was drawn from
    held = json.loads(re.search(r"var categories = (\{.*?\});?\s*</script>", dom, re.S).group(1))
    files = {c: {Path(f).name for sub in held[c].values() for f in sub} for c in held}
    assert files["1. Reproduction"] == {"reproduction.html"}
    assert {"elo_loving.png", "elo_sarcasm.png", "elo_loving.csv", "spearman_loving.csv"} <= files[
        "2. Revealed preferences"
    ]
    assert {"robustness.png", "robustness.csv", "robustness_splits.csv", "prefill.csv"} <= files["3. Robustness"]
    assert files["4. Coherence"] == {"coherence.png", "coherence.csv"}
    assert files["5. Capabilities"] == {"capabilities.png", "capabilities.csv"}
    assert files["6. Training"] == {f"{m}_{p}.png" for m in ("tiny", "tiny-gemma") for p in ("loving", "sarcasm")}
