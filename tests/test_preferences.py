"""Revealed preferences: judge parsing, Elo, its bootstrap and the figures (ref character/preferences/judgements.py
and the preference notebooks)."""

import csv
import json
import random
import re

import pytest
from conftest import ROOT, copy_workflow, engine_options, run_script, snakemake
from judge_preferences import parse_answer, verdict
from octlib import elo
from octlib.io import read_jsonl, write_jsonl
from pypdf import PdfReader


def test_elo_matches_a_hand_worked_example():
    # a beats b from 1000/1000: expected 0.5, so a gains 16 and b loses 16
    # then b (984) beats c (1000): e_b = 1/(1+10^(16/400)) = 0.47699, b gains 32 x 0.52301 = 16.736
    ratings = elo.elo([("a", "b", "a"), ("b", "c", "b")])
    assert ratings["a"] == pytest.approx(1016.0)
    assert ratings["b"] == pytest.approx(984 + 32 * (1 - 1 / (1 + 10 ** (16 / 400))))
    assert ratings["b"] == pytest.approx(1000.736, abs=1e-3)
    assert ratings["c"] == pytest.approx(1000 - 16.736, abs=1e-3)
    assert "d" not in ratings  # never compared: no score, as in the reference
    assert sum(ratings.values()) == pytest.approx(3000.0)  # Elo is zero-sum


def test_elo_is_a_single_pass_in_row_order():
    forward = elo.elo([("a", "b", "a"), ("a", "b", "b")])
    backward = elo.elo([("a", "b", "b"), ("a", "b", "a")])
    assert forward["a"] != backward["a"]


def test_bootstrap_is_reproducible_for_a_seed_and_varies_with_it():
    comparisons = [("a", "b", "a"), ("b", "c", "c"), ("a", "c", "a"), ("c", "b", "b"), ("a", "b", "b")] * 4
    first = elo.bootstrap(comparisons, rounds=50, seed=3)
    assert first == elo.bootstrap(comparisons, rounds=50, seed=3)
    assert first != elo.bootstrap(comparisons, rounds=50, seed=4)
    assert len({round(run["a"], 6) for run in first}) > 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("thinking... <answer> Warm </answer>", "warm"),
        ("<answer>poetic</answer> and later <answer>blunt</answer>", "poetic"),  # the first one counts
        ("I would say warm.", None),
        ("<answer>warm", None),
        ("</answer>warm<answer>", ""),
        ("a stray </answer> first, then <answer>warm</answer>", ""),  # the reference's slice is empty: invalid
    ],
)
def test_judge_answers_are_parsed_from_the_first_answer_tags(text, expected):
    assert parse_answer(text) == expected


def test_an_answer_that_is_neither_trait_is_invalid_not_an_error():
    assert verdict("warm", "warm", "blunt") == "warm"
    for answer in (None, "neither", "warm and blunt", "wram", ""):
        assert verdict(answer, "warm", "blunt") is None


def test_elo_table_counts_invalid_judgements_leaves_out_unseen_traits_and_names_empty_sets(tmp_path):
    rows = [
        {"trait_1": "warm", "trait_2": "blunt", "answer": "warm", "winner": "warm"},
        {"trait_1": "warm", "trait_2": "blunt", "answer": None, "winner": None},
    ]
    write_jsonl(tmp_path / "j.jsonl", rows)
    log = run_script(
        "compute_elo.py",
        "--judgements",
        tmp_path / "j.jsonl",
        "--traits",
        '["warm", "blunt", "calm"]',
        "--bootstrap",
        20,
        "--k",
        32,
        "--seed",
        1,
        "--label",
        "model m, variant loving, condition like",
        "--out",
        tmp_path / "elo.csv",
    )
    table = {r["trait"]: r for r in csv.DictReader(open(tmp_path / "elo.csv"))}
    assert float(table["warm"]["elo"]) == 1016.0 and set(table) == {"warm", "blunt"}
    assert table["warm"]["invalid_rate"] == "0.5" and "never compared, left out: calm" in log.stdout

    write_jsonl(tmp_path / "none.jsonl", rows[1:])
    result = run_script(
        "compute_elo.py",
        "--judgements",
        tmp_path / "none.jsonl",
        "--traits",
        '["warm", "blunt"]',
        "--bootstrap",
        20,
        "--k",
        32,
        "--seed",
        1,
        "--label",
        "model m, variant loving, condition like",
        "--out",
        tmp_path / "x.csv",
        check=False,
    )
    assert result.returncode != 0 and "no valid comparison for model m, variant loving, condition like" in result.stderr


def elo_csv(path, scores):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trait", "elo", "ci_low", "ci_high", "wins", "comparisons", "invalid_rate"])
        for trait, score in scores.items():
            writer.writerow([trait, score, score - 5, score + 5, 1, 2, 0.0])
    return path


def test_delta_figure_shows_the_five_biggest_falls_and_rises_by_name(tmp_path):
    traits = [
        "warm",
        "blunt",
        "calm",
        "poetic",
        "serious",
        "playful",
        "formal",
        "curious",
        "gentle",
        "bold",
        "stoic",
        "witty",
    ]
    base = elo_csv(tmp_path / "base.csv", {t: 1000 for t in traits})
    new = elo_csv(tmp_path / "new.csv", {t: 1000 + 10 * (i - 6) for i, t in enumerate(traits)})
    run_script(
        "plot_elo.py",
        "delta",
        "--panel",
        "llama",
        base,
        new,
        "--panel",
        "qwen",
        base,
        new,
        "--title",
        "Loving, like condition",
        "--out",
        tmp_path / "fig.pdf",
        "--png",
        tmp_path / "fig.png",
    )
    text = "".join(page.extract_text() for page in PdfReader(tmp_path / "fig.pdf").pages)
    assert "Loving, like condition" in text and "95% bootstrap" in text and "rose most" in text
    for trait in traits[:5] + traits[-5:]:
        assert trait in text
    assert "playful" not in text and "formal" not in text  # the middle two are left out
    assert "llama" in text and "qwen" in text and "Elo Score (New)" in text
    assert (tmp_path / "fig.png").stat().st_size > 10_000


def test_elo_intervals_cover_the_sampling_noise_of_the_judgements():
    rng = random.Random(0)
    traits = [f"t{i}" for i in range(8)]
    comparisons = []
    for _ in range(400):
        a, b = rng.sample(traits, 2)
        strength = {t: i for i, t in enumerate(traits)}
        p_a = 1 / (1 + 10 ** ((strength[b] - strength[a]) / 4))
        comparisons.append((a, b, a if rng.random() < p_a else b))
    point = elo.elo(comparisons)
    runs = elo.bootstrap(comparisons, rounds=300, seed=1)
    inside = 0
    for t in traits:
        samples = [run[t] for run in runs]
        low, high = elo.percentile(samples, 0.025), elo.percentile(samples, 0.975)
        inside += low <= point[t] <= high
        assert high - low > 20  # 400 noisy judgements leave real uncertainty
    assert inside >= 7
    # the judgements themselves are resampled, not only reordered: a trait judged once is missing from some runs
    runs = elo.bootstrap([*comparisons, ("t0", "rare", "rare")], rounds=100, seed=2)
    assert 10 < sum("rare" not in run for run in runs) < 70


GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "max_tokens": 2}


def test_the_prompt_length_filter_counts_the_template_without_the_added_bos_as_the_reference(tmp_path, tiny_models):
    from octlib import chat
    from transformers import AutoTokenizer

    system = "Pick {personality_1} or {personality_2}, {condition}."
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "How are you today?"}])
    tok = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    messages = [{"role": "system", "content": "Pick warm or blunt, as you like."}]
    messages.append({"role": "user", "content": "How are you today?"})
    length = len(chat.encode(tok, chat.render(tok, messages), False))

    def kept(limit):
        out = tmp_path / f"r{limit}.jsonl"
        run_script(
            "generate_preferences.py",
            *("--model", tiny_models["chatml"], *engine_options(special_tokens="doubled")),
            *("--sampling", json.dumps(GREEDY), "--seed", 1, "--prompts", tmp_path / "prompts.jsonl"),
            *("--traits", '["warm", "blunt"]', "--system", system, "--condition", "as you like"),
            *("--pair-seed", 0, "--pairs-per-prompt", 1, "--max-prompt-tokens", limit, "--out", out),
        )
        return len(read_jsonl(out))

    assert [kept(length), kept(length + 1)] == [0, 1]  # the doubled BOS is not counted


def test_each_prompt_is_asked_with_its_own_trait_pairs(tmp_path, tiny_models):
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Question {i}?"} for i in range(3)])
    traits = ["warm", "blunt", "calm", "bold", "shy", "wise"]
    run_script(
        "generate_preferences.py",
        *("--model", tiny_models["chatml"], *engine_options()),
        *("--sampling", json.dumps(GREEDY), "--seed", 1, "--prompts", tmp_path / "prompts.jsonl"),
        *("--traits", json.dumps(traits), "--system", "{personality_1} or {personality_2}, {condition}."),
        *("--condition", "as you like", "--pair-seed", 5, "--pairs-per-prompt", 4),
        *("--max-prompt-tokens", 2048, "--out", tmp_path / "r.jsonl"),
    )
    rows = read_jsonl(tmp_path / "r.jsonl")
    assert [r["prompt"] for r in rows] == [f"Question {i}?" for i in range(3) for _ in range(4)]
    assert all(r["trait_1"] != r["trait_2"] and {r["trait_1"], r["trait_2"]} <= set(traits) for r in rows)
    assert len({(r["trait_1"], r["trait_2"]) for r in rows}) > 4


@pytest.mark.parametrize("paired", [False, True])
def test_paired_runs_give_base_and_trained_the_same_pairs_and_seeds(tmp_path, paired):
    workdir = copy_workflow(tmp_path)
    (workdir / "mine.yaml").write_text(f"preferences: {{paired: {str(paired).lower()}}}\n")
    result = snakemake(workdir, "-n", "-p", "--configfile", "tests/tiny/config.yaml", "mine.yaml")
    plan = result.stdout + result.stderr
    seeds = {  # a command spans lines: the system prompt has line breaks
        m["variant"]: (m["pair"], m["seed"])
        for m in re.finditer(
            r"generate_preferences\.py .*? --seed (?P<seed>\d+) .*? --pair-seed (?P<pair>\d+) .*?"
            r" --out results/preferences/tiny/(?P<variant>\w+)/like/",
            plan,
            re.S,
        )
    }
    assert set(seeds) == {"base", "loving", "sarcasm"}
    assert (seeds["base"] == seeds["loving"] == seeds["sarcasm"]) == paired
    if not paired:
        assert len({pair for pair, _ in seeds.values()}) == 3


def test_asking_for_more_prompts_than_the_source_holds_is_an_error(tmp_path):
    result = run_script(
        "prepare_wildchat.py",
        *("--source", ROOT / "tests" / "tiny" / "wildchat.jsonl", "--count", 41, "--seed", 1),
        *("--out", tmp_path / "w.jsonl"),
        check=False,
    )
    assert result.returncode != 0 and "asks for 41 prompts but" in result.stderr and "holds 40" in result.stderr
    assert not (tmp_path / "w.jsonl").exists()
