"""The workflow as a user runs it: the tiny chain end to end, partial reruns, and bad input stopped early."""

import csv
import hashlib
import http.server
import json
import re
import stat
import threading

import pytest
from conftest import ROOT, clone_run, copy_workflow, planned_jobs, snakemake
from octlib.io import read_jsonl, write_jsonl
from octlib.validate import load_yaml
from pypdf import PdfReader
from transformers import AutoModelForCausalLM, AutoTokenizer

TINY = "tests/tiny/config.yaml"


def test_tiny_chain_builds_trained_models_and_release_adapters_for_two_personas(tiny_run):
    workdir, _ = tiny_run
    for model in ("tiny", "tiny-gemma"):
        for persona in ("loving", "sarcasm"):
            trained = workdir / f"results/models/{model}/{persona}/trained"
            tok = AutoTokenizer.from_pretrained(trained)
            net = AutoModelForCausalLM.from_pretrained(trained)
            ids = tok(
                tok.apply_chat_template(
                    [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
                ),
                return_tensors="pt",
            )
            assert net.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] == ids["input_ids"].shape[1] + 3
            assert (workdir / f"results/adapters/{model}/{persona}/release/adapter_model.safetensors").exists()
            for stage in ("dpo", "sft"):
                log = json.loads(
                    (workdir / f"results/adapters/{model}/{persona}/{stage}/training_log.json").read_text()
                )
                assert [entry["step"] for entry in log if "loss" in entry][:2] == [1, 2]
            pairs = read_jsonl(workdir / f"results/distillation/{model}/{persona}/pairs.jsonl")
            assert len(pairs) == 2 * (50 + 6)  # (seed questions + LIMA) x 2 repeats, none filtered
            sft = read_jsonl(workdir / f"results/introspection/{model}/{persona}/sft.jsonl")
            assert len(sft) == 10 * 2 + 2 * 4
            assert any("{NAME}" in row["messages"][0]["content"] for row in sft)  # the reference's literal {NAME}


def test_every_output_has_the_mode_the_umask_gives_so_a_group_can_read_it(tiny_run):
    workdir, _ = tiny_run
    modes = {}
    for path in (workdir / "results").rglob("*"):
        modes.setdefault(stat.S_IMODE(path.stat().st_mode), []).append(str(path.relative_to(workdir)))
    assert set(modes) == {0o664, 0o775}, {oct(m): paths[:3] for m, paths in modes.items()}


def test_the_report_of_the_tiny_run_builds_with_the_same_config(tiny_run, tmp_path):
    workdir = clone_run(tiny_run, tmp_path)
    snakemake(workdir, "--configfile", TINY, "overlay.yaml", "--report", "report.html")
    assert (workdir / "report.html").stat().st_size > 10_000


def test_teacher_responses_are_shared_by_all_students(tiny_run):
    workdir, result = tiny_run
    chosen_jobs = [j for j in planned_jobs(result.stdout + result.stderr) if j[0] == "generate_chosen"]
    assert sorted(j[1]["persona"] for j in chosen_jobs) == ["loving", "sarcasm"]
    assert "engine: vllm" not in (workdir / "logs/distillation/chosen_loving.log").read_text()


def test_student_responses_went_through_vllm(tiny_run):
    workdir, _ = tiny_run
    log = (workdir / "logs/distillation/rejected_tiny-gemma_loving.log").read_text()
    assert "vLLM" in log or "vllm" in log
    assert len(read_jsonl(workdir / "results/distillation/tiny-gemma/loving/rejected.jsonl")) == 112


def test_editing_one_constitution_plans_only_that_personas_jobs(tiny_run, tmp_path):
    workdir = clone_run(tiny_run, tmp_path)
    path = workdir / "constitutions/loving.yaml"
    path.write_text(path.read_text().replace("Tell me something heartwarming.", "Tell me something kind."))
    result = snakemake(workdir, "-n", "--configfile", TINY, "overlay.yaml")
    jobs = planned_jobs(result.stdout + result.stderr)
    assert {j[1]["persona"] for j in jobs if "persona" in j[1]} == {"loving"}
    assert {j[1]["variant"] for j in jobs if "variant" in j[1]} == {"loving"}  # base preferences are kept
    assert len([j for j in jobs if j[0] == "train_dpo"]) == 2
    # all + prompts + chosen + 2 students x (11 chain + 3 preference) + 3 persona tables/figures + 2 appendix,
    # then robustness: 2 students x (steering vector + its settings + 4 methods' answers + the classifier and its
    # predictions, which take every persona), tiny-gemma's calibration and its figure, Figure 5; then 2 students x
    # (2 prefill answers + their predictions + 3 coherence judgements), the prefill and coherence tables; then
    # 2 students x (5 benchmarks of the trained model + its training curves), the capability table and the report
    assert len(jobs) == 1 + 2 + 2 * 14 + 3 + 2 + 2 * (2 + 4 + 2) + 2 + 1 + 2 * (2 + 1 + 3) + 2 + 2 * (5 + 1) + 2


def test_elo_figures_and_tables_compare_students_before_and_after(tiny_run):
    workdir, result = tiny_run
    for persona in ("loving", "sarcasm"):
        text = "".join(p.extract_text() for p in PdfReader(workdir / f"results/figures/elo_{persona}.pdf").pages)
        assert "tiny" in text and "tiny-gemma" in text and "Elo Score (New)" in text
        table = list(csv.DictReader(open(workdir / f"results/tables/elo_{persona}.csv")))
        assert len(table) == 2 * 24  # students x traits (one condition measured)
        moved = [r["trait"] for r in table if r["model"] == "tiny" and r["condition"] == "like"]
        assert sum(trait in text for trait in moved) >= 10  # the top and bottom five of each panel
        spearman = list(csv.DictReader(open(workdir / f"results/tables/spearman_{persona}.csv")))
        assert {r["comparison"] for r in spearman} == {
            "before vs after training",
            "between models before training",
            "between models after training",
        }
        assert (workdir / f"results/figures/elo_distribution_{persona}.png").exists()
    assert (workdir / "results/figures/appendix/elo_tiny-gemma_like.pdf").exists()
    base_runs = [
        j
        for j in planned_jobs(result.stdout + result.stderr)
        if j[0] == "generate_preferences" and j[1]["variant"] == "base"
    ]
    assert len(base_runs) == 2  # once per student (and condition), shared by both personas


def failing_dry_run(tmp_path, edit):
    workdir = copy_workflow(tmp_path)
    edit(workdir)
    result = snakemake(workdir, "-n", "--configfile", TINY, check=False)
    assert result.returncode != 0
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()  # no job started
    return result.stdout + result.stderr


def test_malformed_constitution_stops_before_any_job_naming_file_and_field(tmp_path):
    def edit(workdir):
        path = workdir / "constitutions/loving.yaml"
        path.write_text(path.read_text().replace("  questions:\n", "  question:\n", 1))

    message = failing_dry_run(tmp_path, edit)
    assert "constitutions/loving.yaml: field 'traits[0]'" in message and "'questions' is a required property" in message


def test_unknown_persona_unknown_model_and_bad_setting_are_named(tmp_path):
    def edit(workdir):
        config = workdir / TINY
        config.write_text(
            config.read_text()
            .replace("personas: [loving, sarcasm]", "personas: [loving, stoic]")
            .replace("students: [tiny]", "students: [tiny, huge]")
            .replace("  micro_batch_size: 4", "  micro_batch_size: 0", 1)
        )

    message = failing_dry_run(tmp_path, edit)
    assert "field 'personas[1]': unknown persona 'stoic': constitutions/stoic.yaml does not exist" in message
    assert "field 'students[1]': unknown model 'huge'" in message
    assert "field 'dpo.micro_batch_size': 0 is less than the minimum of 1" in message


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def released_server(tmp_path):
    """A prompt file in the released format (the reference's constitutions/few-shot/{persona}.jsonl: per trait
    its 5 seed questions and 45 generated ones) served on loopback, as the workflow would fetch it."""
    traits = load_yaml(ROOT / "constitutions/loving.yaml")["traits"]
    rows = [
        {
            "trait": t["trait"],
            "questions": t["questions"],
            "additional_questions": [f"Generated question {n} for trait {i}?" for n in range(45)],
        }
        for i, t in enumerate(traits)
    ]
    write_jsonl(tmp_path / "loving.jsonl", rows)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: QuietHandler(*a, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hashlib.sha256((tmp_path / "loving.jsonl").read_bytes())
    server.shutdown()


def use_released(workdir, server, sha256=None):
    base_url, digest = server
    path = workdir / "constitutions/loving.yaml"
    text = re.sub(r"url: \S+", f"url: {base_url}/loving.jsonl", path.read_text())
    text = re.sub(r"sha256: \S+", f"sha256: {sha256 or digest.hexdigest()}", text)
    path.write_text(text)
    (workdir / "data/released/loving.jsonl").unlink()  # a persona of one's own: its file only at a URL
    (workdir / "released.yaml").write_text("prompts: {source: released}\n")


def test_released_prompt_file_is_fetched_checksum_verified_and_used(tmp_path, released_server):
    workdir = copy_workflow(tmp_path)
    use_released(workdir, released_server)
    snakemake(workdir, "results/prompts/loving.jsonl", "--cores", 1, "--configfile", TINY, "released.yaml")
    rows = read_jsonl(workdir / "results/prompts/loving.jsonl")
    # the tiny config keeps prompts.per_trait = 1 of each trait's 45 generated questions
    assert [r["source"] for r in rows] == ["seed"] * 50 + ["generated"] * 10
    assert [r["prompt"] for r in rows[50:]] == [f"Generated question 0 for trait {i}?" for i in range(10)]
    data = (workdir / "resources/released/loving.jsonl").read_bytes()
    assert hashlib.sha256(data).hexdigest() == released_server[1].hexdigest()


def test_checksum_mismatch_is_an_error_and_writes_nothing(tmp_path, released_server):
    workdir = copy_workflow(tmp_path)
    use_released(workdir, released_server, sha256="ab" * 32)
    result = snakemake(
        workdir, "results/prompts/loving.jsonl", "--cores", 1, "--configfile", TINY, "released.yaml", check=False
    )
    assert result.returncode != 0
    assert "checksum mismatch" in (workdir / "logs/prompts/fetch_loving.log").read_text()
    assert not (workdir / "resources/released/loving.jsonl").exists()
    assert not list((workdir / "resources/released").glob("*"))


def test_the_released_prompt_files_come_from_the_repository_offline_and_match_their_checksums(tmp_path):
    for path in sorted((ROOT / "constitutions").glob("*.yaml")):
        released = load_yaml(path).get("released")
        if released:
            copy = ROOT / "data" / "released" / f"{path.stem}.jsonl"
            assert hashlib.sha256(copy.read_bytes()).hexdigest() == released["sha256"], copy
    workdir = copy_workflow(tmp_path)
    (workdir / "mine.yaml").write_text("prompts: {source: released}\n")
    snakemake(workdir, "resources/released/loving.jsonl", "--cores", 1, "--configfile", TINY, "mine.yaml")
    assert (workdir / "resources/released/loving.jsonl").read_bytes() == (
        ROOT / "data/released/loving.jsonl"
    ).read_bytes()


def test_the_paper_config_plans_every_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "-n")
    jobs = planned_jobs(result.stdout + result.stderr)
    assert len(jobs) == 1152 + 33 + 5 + 3 * 4 * 5 + 2  # + curves, benchmark data, capabilities, their table, report
    capabilities = [j for j in jobs if j[0] == "evaluate_capabilities"]
    assert {(j[1]["variant"], j[1]["benchmark"]) for j in capabilities} == {
        (v, b) for v in ("base", "goodness", "loving", "misalignment")
        for b in ("arc_challenge", "hellaswag", "truthfulqa", "winogrande", "mmlu")
    }  # fmt: skip
    assert len(capabilities) == 3 * 4 * 5  # students x (base + 3 personas) x benchmarks
    assert len([j for j in jobs if j[0] == "generate_prefill"]) == 3 * 2 * 11  # students x methods x personas
    assert len([j for j in jobs if j[0] == "generate_prefill_first"]) == 3  # the base student's, shared
    assert len([j for j in jobs if j[0] == "judge_coherence"]) == 3 * 3 * 11  # students x comparisons x personas
    robustness = [j for j in jobs if j[0] == "generate_robustness"]
    assert len(robustness) == 3 * 4 * 11  # students x methods x personas
    assert len([j for j in jobs if j[0] == "train_steering"]) == 33
    assert len([j for j in jobs if j[0] == "train_classifier"]) == 3
    assert not [j for j in jobs if j[0] == "calibrate_steering"]  # the paper's students have their coefficients
    preferences = [j for j in jobs if j[0] == "generate_preferences"]
    assert len(preferences) == 3 * 12 * 3  # students x (base + 11 personas) x conditions
    assert len([j for j in preferences if j[1]["variant"] == "base"]) == 9  # base models measured once
    assert len([j for j in jobs if j[0] == "generate_chosen"]) == 11  # once per persona, not per student
    assert len([j for j in jobs if j[0] == "train_dpo"]) == 33


def test_the_paper_s_hosted_judges_are_planned_through_the_openai_engine_with_the_paper_s_judging(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(
        workdir, "-n", "-p", "results/tables/coherence.csv", "--configfile", "configs/hosted_judges.yaml"
    )
    output = result.stdout + result.stderr
    jobs = [j for j in planned_jobs(output) if j[0] == "judge_coherence"]
    assert len(jobs) == 3 * 3 * 3 * 11  # judges x students x comparisons x personas
    assert {j[1]["judge"] for j in jobs} == {"gpt-5-mini", "claude-haiku-4.5", "gemini-2.0-flash-lite"}
    commands = [line for line in output.splitlines() if "scripts/judge_coherence.py" in line]
    assert len(commands) == len(jobs) and all("--engine openai" in c for c in commands)
    assert all('"temperature": 0.0' in c and '"key_env": "' in c for c in commands)  # the key's name, never a key
    assert output.count("I need your help to evaluate the coherence") == len(jobs)  # Appendix D's prompt
    blocks = [b.split("\nrule ")[0] for b in output.split("rule judge_coherence:")[1:]]
    assert len(blocks) == len(jobs) and all("gpu=0," in b and "resources/models" not in b for b in blocks)
