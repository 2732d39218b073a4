"""Coherence judging (paper Tables 2, 6, 7) and the prefill attack (Table 5): the order-consistency logic on
hand-made verdicts, the statistics on hand-made judgements, the judge on a real tiny model, and the tables of
the tiny run."""

import csv
import itertools
import json
import math

import pytest
from conftest import HF_SETTINGS, ROOT, engine_options, run_script
from judge_coherence import outcome, pairs, verdict
from octlib.io import read_jsonl, write_jsonl


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Response 2 is more coherent. <answer>2</answer>", "2"),
        ("<answer> 1 </answer> and later <answer>2</answer>", "1"),  # the first answer counts
        ("<answer>INVALID</answer>", None),  # the paper's prompt lets the judge decline
        ("<answer>1 or 2</answer>", None),
        ("I pick 1.", None),
        ("</answer> <answer>1", None),  # a close before the open
        ("<answer>1", None),
    ],
)
def test_a_verdict_is_1_or_2_between_the_first_answer_tags_and_anything_else_is_invalid(text, expected):
    assert verdict(text) == expected


def test_only_verdicts_that_agree_across_both_orders_count():
    """In order the compared method's answer is response 1; swapped it is response 2. (1, 2): the method wins;
    (2, 1): the trained model wins; the same number twice is a position preference, not a verdict."""
    table = {(a, b): outcome(a, b) for a, b in itertools.product(["1", "2", None], repeat=2)}
    assert table == {
        ("1", "2"): "first",
        ("2", "1"): "second",
        ("1", "1"): "inconsistent",
        ("2", "2"): "inconsistent",
        ("1", None): "invalid",
        ("2", None): "invalid",
        (None, "1"): "invalid",
        (None, "2"): "invalid",
        (None, None): "invalid",
    }


def test_answers_pair_by_question_and_occurrence_on_the_default_split_only():
    first = [
        {"split": "default", "question": "q1", "response": "a1"},
        {"split": "v0", "question": "q1", "response": "not this split"},
        {"split": "default", "question": "q1", "response": "a1 again"},  # the question asked twice
        {"split": "default", "question": "q2", "response": "a2"},
        {"split": "default", "question": "only here", "response": "a3"},
    ]
    second = [
        {"split": "default", "question": "q2", "response": "b2"},
        {"split": "default", "question": "q1", "response": "b1"},
        {"split": "default", "question": "q1", "response": "b1 again"},
    ]
    assert pairs(first, second) == [
        {"question": "q1", "first": "a1", "second": "b1"},
        {"question": "q1", "first": "a1 again", "second": "b1 again"},  # not multiplied into four pairs
        {"question": "q2", "first": "a2", "second": "b2"},
    ]


def judged_rows(outcomes):
    return [{"question": f"q{i}", "in_order": None, "swapped": None, "outcome": o} for i, o in enumerate(outcomes)]


def test_win_rates_standard_errors_and_published_numbers_per_judge_student_and_method(tmp_path):
    """Two personas: one with 3 of 4 counted pairs won by the trained model, one with 1 of 2; invalid and
    inconsistent pairs are counted apart and never enter the rate."""
    files = {
        "loving": judged_rows(["second"] * 3 + ["first", "invalid", "inconsistent"]),
        "sarcasm": judged_rows(["second", "first", "invalid"]),
    }
    args = []
    for persona, rows in files.items():
        write_jsonl(tmp_path / f"{persona}.jsonl", rows)
        args += ["--judged", "gpt-5-mini", "llama-3.1-8b-it", "steered", persona, tmp_path / f"{persona}.jsonl"]
    figure = tmp_path / "coherence.pdf"
    tables = {}
    for statistic in ("personas", "prompts"):
        table = tmp_path / f"{statistic}.csv"
        run_script("summarise_coherence.py", *args, "--statistic", statistic, "--paper", ROOT / "data/paper_numbers.csv",
                   "--table", table, "--figure", figure)  # fmt: skip
        with open(table) as f:
            (tables[statistic],) = list(csv.DictReader(f))
    personas, prompts = tables["personas"], tables["prompts"]
    assert float(personas["win_rate"]) == 62.5  # mean of 75 and 50
    assert float(personas["se"]) == pytest.approx(
        round(math.sqrt(((75 - 62.5) ** 2 + (50 - 62.5) ** 2) / 1) / math.sqrt(2), 2)
    )
    assert float(prompts["win_rate"]) == pytest.approx(round(100 * 4 / 6, 2))  # 4 of the 6 counted pairs
    assert float(prompts["se"]) == pytest.approx(round(100 * math.sqrt((4 / 6) * (2 / 6) / 6), 2))
    assert float(prompts["ci_high"]) == pytest.approx(
        round(min(100, 100 * 4 / 6 + 1.96 * float(prompts["se"])), 2), abs=0.02
    )
    for row in tables.values():
        assert (row["pairs"], row["counted"], row["invalid"], row["inconsistent"]) == ("9", "6", "2", "1")
        assert (row["paper_table"], row["published"], row["published_se"]) == ("Table 2", "94.3", "0.50")
    assert figure.exists() and figure.with_suffix(".png").exists()


def answers(rows):
    return [{"split": s, "question": q, "prompt": q, "response": r} for s, q, r in rows]


def test_the_tiny_judge_asks_both_orders_and_swapping_the_files_mirrors_every_outcome(tmp_path, tiny_models):
    """With the loglik judge, judging (A, B) asks the very prompts of judging (B, A) in the other order: every
    won pair changes sides and every inconsistent one stays inconsistent."""
    a = answers([("default", f"Question {i}?", "Sure. " * (i + 1)) for i in range(6)] + [("v0", "Question 0?", "x")])
    b = answers([("default", f"Question {i}?", f"Indeed, my friend, {i}.") for i in range(6)])
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    prompt = "Message: {message}\n1: {response_1}\n2: {response_2}\nTraits:\n{traits}\nWhich is better?"

    def judge(first, second, out):
        run_script("judge_coherence.py", "--model", tiny_models["chatml"], *engine_options("hf", shard_size=4),
                   "--first", tmp_path / first, "--second", tmp_path / second, "--constitution",
                   ROOT / "constitutions/loving.yaml", "--prompt", prompt, "--mode", "loglik", "--out", out)  # fmt: skip
        return read_jsonl(out)

    forward, backward = (
        judge("a.jsonl", "b.jsonl", tmp_path / "ab.jsonl"),
        judge("b.jsonl", "a.jsonl", tmp_path / "ba.jsonl"),
    )
    assert len(forward) == 6 and all(r["in_order"] in ("1", "2") and r["swapped"] in ("1", "2") for r in forward)
    mirror = {"first": "second", "second": "first", "inconsistent": "inconsistent"}
    assert [mirror[r["outcome"]] for r in forward] == [r["outcome"] for r in backward]
    assert [(r["in_order"], r["swapped"]) for r in forward] == [(r["swapped"], r["in_order"]) for r in backward]


def test_the_prefill_second_turn_answers_the_follow_up_after_the_first_turn(tmp_path, tiny_models):
    prompts = [{"split": "default", "question": f"Q{i}?", "prompt": f"Q{i}?"} for i in range(3)]
    prompts += [{"split": "v0", "question": "Q0?", "prompt": "Q0?\n(Respond naturally.)"}]
    write_jsonl(tmp_path / "prompts.jsonl", prompts)
    sampling = json.dumps(
        {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "max_tokens": 4}
    )
    common = ["--model", tiny_models["chatml"], *engine_options("hf"), "--sampling", sampling, "--seed", 1,
              "--prompts", tmp_path / "prompts.jsonl", "--split", "default", "--repeats", 1]  # fmt: skip
    run_script("generate_responses.py", *common, "--keep", "split", "question", "--out", tmp_path / "first.jsonl")
    first = read_jsonl(tmp_path / "first.jsonl")
    assert [r["question"] for r in first] == ["Q0?", "Q1?", "Q2?"]  # the default split only
    run_script("generate_responses.py", *common, "--history", tmp_path / "first.jsonl", "--follow-up", "Keep going.",
               "--keep", "split", "question", "first_turn", "--out", tmp_path / "second.jsonl")  # fmt: skip
    second = read_jsonl(tmp_path / "second.jsonl")
    assert [r["first_turn"] for r in second] == [r["response"] for r in first]

    # the second turn's prompt: the user's question, the first answer, then the follow-up
    from octlib import engines

    engine = engines.load("hf", str(tiny_models["chatml"]), settings=HF_SETTINGS, special_tokens="once")
    conversations = [
        [
            {"role": "user", "content": r["question"]},
            {"role": "assistant", "content": r["response"]},
            {"role": "user", "content": "Keep going."},
        ]
        for r in first
    ]
    texts = engine.generate([engine.prompt(c) for c in conversations], json.loads(sampling), 1)
    assert [r["response"] for r in second] == [t.strip() for t in texts]

    wrong = tmp_path / "wrong.jsonl"
    write_jsonl(wrong, first[::-1])
    result = run_script("generate_responses.py", *common, "--history", wrong, "--follow-up", "Go on.",
                        "--out", tmp_path / "x.jsonl", check=False)  # fmt: skip
    assert result.returncode != 0 and "does not answer the prompts" in result.stderr


def test_the_tiny_run_writes_the_coherence_and_prefill_tables_and_figure(tiny_run):
    workdir, _ = tiny_run
    with open(workdir / "results/tables/coherence.csv") as f:
        coherence = list(csv.DictReader(f))
    # one judge (tiny), two students, three comparisons; two personas of 8 questions each
    assert {(r["model"], r["comparison"]) for r in coherence} == {
        (m, c) for m in ("tiny", "tiny-gemma") for c in ("prompted", "steered", "distilled")
    }
    for row in coherence:
        assert row["judge"] == "tiny" and row["pairs"] == "16" and row["invalid"] == "0"  # loglik: always valid
        assert int(row["counted"]) + int(row["inconsistent"]) == 16
    assert (workdir / "results/figures/coherence.png").stat().st_size > 10_000
    with open(workdir / "results/tables/prefill.csv") as f:
        prefill = list(csv.DictReader(f))
    assert {(r["model"], r["method"]) for r in prefill} == {
        (m, k) for m in ("tiny", "tiny-gemma") for k in ("distilled", "trained")
    }
    assert all(r["answers"] == "16" and 0 <= float(r["f1"]) <= 1 for r in prefill)
    second = read_jsonl(workdir / "results/prefill/tiny/trained/loving.jsonl")
    first = read_jsonl(workdir / "results/prefill/tiny/first_turn.jsonl")
    assert [r["first_turn"] for r in second] == [r["response"] for r in first] and len(first) == 8
