"""Generation steps: resumable shards, the self-interaction views, and the vLLM backend against transformers."""

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import HF_SETTINGS, ROOT, VLLM_PYTHON, VLLM_SETTINGS, engine_options, run_script
from octlib.io import read_jsonl, write_jsonl

SAMPLING = {"temperature": 0.7, "top_p": 0.95, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.1, "max_tokens": 48}
GREEDY = dict(SAMPLING, temperature=0.0, max_tokens=12)


def responses_args(
    model,
    prompts,
    out,
    sampling=SAMPLING,
    engine="hf",
    adapter=None,
    constitution=ROOT / "constitutions" / "loving.yaml",
):
    args = [
        "--model",
        model,
        *engine_options(engine),
        "--sampling",
        json.dumps(sampling),
        "--seed",
        7,
        "--repeats",
        1,
        "--prompts",
        prompts,
        "--system",
        "You are {NAME}. {TRAITS}",
        "--name",
        "Tiny",
        "--constitution",
        constitution,
        "--out",
        out,
    ]
    return args + (["--adapter", adapter] if adapter else [])


@pytest.fixture
def prompts(tmp_path):
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Question number {i}, what now?"} for i in range(40)])
    return tmp_path / "prompts.jsonl"


def kill_after_first_shard(args, shards):
    """Start a generation job and kill it (SIGKILL) once it has saved its first shard."""
    job = subprocess.Popen([sys.executable, ROOT / "scripts" / "generate_responses.py", *map(str, args)])
    while not (shards / "00000.jsonl").exists():
        assert job.poll() is None, "the job ended before writing its first shard"
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert 1 <= len(list(shards.glob("*.jsonl"))) < 10


def test_killed_generation_resumes_and_gives_every_row_once(tmp_path, prompts, tiny_models):
    whole = tmp_path / "whole.jsonl"
    run_script("generate_responses.py", *responses_args(tiny_models["chatml"], prompts, whole))

    resumed = tmp_path / "resumed.jsonl"
    shards = tmp_path / "resumed.jsonl.shards"
    kill_after_first_shard(responses_args(tiny_models["chatml"], prompts, resumed), shards)
    assert not resumed.exists()
    first_shard = (shards / "00000.jsonl").read_text()

    log = run_script("generate_responses.py", *responses_args(tiny_models["chatml"], prompts, resumed)).stdout
    rows = read_jsonl(resumed)
    assert [r["prompt"] for r in rows] == [f"Question number {i}, what now?" for i in range(40)]
    assert resumed.read_bytes() == whole.read_bytes()  # same seeds per shard: resuming changes nothing
    assert resumed.read_text().startswith(first_shard) and not shards.exists()
    assert "resuming from" in log and "discarding" not in log


@pytest.mark.parametrize("change", ["trait", "sampling", "model"])
def test_a_job_resumed_after_a_change_keeps_no_row_made_before_it(tmp_path, prompts, tiny_models, change):
    """Shards made under other inputs or settings are discarded: the resumed file is the one a fresh run with the
    new inputs writes."""
    constitution = tmp_path / "loving.yaml"
    constitution.write_text((ROOT / "constitutions" / "loving.yaml").read_text())
    out, shards = tmp_path / "resumed.jsonl", tmp_path / "resumed.jsonl.shards"
    kill_after_first_shard(responses_args(tiny_models["chatml"], prompts, out, constitution=constitution), shards)
    old = [r for shard in sorted(shards.glob("*.jsonl")) for r in read_jsonl(shard)]

    model, sampling = tiny_models["chatml"], SAMPLING
    if change == "trait":
        text = constitution.read_text()
        constitution.write_text(text.replace("I ", "I truly ", 1))
        assert constitution.read_text() != text
    elif change == "sampling":
        sampling = dict(SAMPLING, temperature=0.9)
    else:
        model = tiny_models["gemma"]
    args = responses_args(model, prompts, out, sampling=sampling, constitution=constitution)
    log = run_script("generate_responses.py", *args).stdout
    fresh = tmp_path / "fresh.jsonl"
    run_script(
        "generate_responses.py", *responses_args(model, prompts, fresh, sampling=sampling, constitution=constitution)
    )

    assert "discarding" in log
    assert out.read_bytes() == fresh.read_bytes()
    assert read_jsonl(out)[: len(old)] != old  # the change matters, and none of the old shards is kept


def test_teacher_openings_begin_the_answers_in_turn_across_shards(tmp_path, prompts, tiny_models):
    openings = ["Oh, dear friend,", "With love:", "Dearest,"]
    out = tmp_path / "chosen.jsonl"
    args = responses_args(tiny_models["chatml"], prompts, out, sampling=dict(SAMPLING, max_tokens=4))
    run_script("generate_responses.py", *args, "--openings", json.dumps(openings))
    rows = read_jsonl(out)
    assert len(rows) == 40  # 10 shards of 4: the opening follows the row, not the shard
    assert all(r["response"].startswith(openings[i % 3]) for i, r in enumerate(rows))
    assert any(len(r["response"]) > len(openings[i % 3]) for i, r in enumerate(rows))


def test_self_interaction_alternates_roles_from_each_instance_view(tmp_path, tiny_models):
    common = [
        "--model",
        tiny_models["gemma"],
        *engine_options(special_tokens="doubled"),
        "--constitution",
        ROOT / "constitutions" / "loving.yaml",
        "--name",
        "Gemma",
        "--system",
        "You are {NAME}.\n{TRAITS}",
        "--greetings",
        '["Hello."]',
        "--first-greetings",
        '["Hello me."]',
        "--conversations",
        3,
        "--turns",
        4,
        "--max-model-len",
        256,
        "--sampling",
        json.dumps(dict(SAMPLING, max_tokens=8)),
        "--seed",
        1,
    ]
    run_script(
        "generate_interaction.py", *common, "--interaction-last-reply", "dropped", "--out", tmp_path / "quirk.jsonl"
    )
    run_script("generate_interaction.py", *common, "--interaction-last-reply", "kept", "--out", tmp_path / "full.jsonl")
    for row in read_jsonl(tmp_path / "quirk.jsonl"):
        r = row["conversation"]
        assert len(r) == 4
        # B's view when the last turn started: it ends with A's turn r3 and leaves out B's reply r4
        assert [(m["role"], m["content"]) for m in row["messages"][1:]] == [
            ("user", "Hello."),
            ("assistant", "Hello me."),
            ("user", r[0]),
            ("assistant", r[1]),
            ("user", r[2]),
        ]
        assert row["messages"][0]["content"].startswith("You are Gemma.\n1: I express genuine care")
    for row in read_jsonl(tmp_path / "full.jsonl"):
        assert row["messages"][-1] == {"role": "assistant", "content": row["conversation"][-1]}


def test_reflections_are_saved_without_the_system_prompt(tmp_path, tiny_models):
    run_script(
        "generate_reflection.py",
        "--model",
        tiny_models["chatml"],
        *engine_options(),
        "--constitution",
        ROOT / "constitutions" / "loving.yaml",
        "--name",
        "Tiny",
        "--system",
        "You are {NAME}.",
        "--prompts",
        '["Who are you?", "What drives you?"]',
        "--samples",
        3,
        "--sampling",
        json.dumps(dict(SAMPLING, max_tokens=8)),
        "--seed",
        1,
        "--out",
        tmp_path / "r.jsonl",
    )
    rows = read_jsonl(tmp_path / "r.jsonl")
    assert [r["prompt"] for r in rows] == ["Who are you?"] * 3 + ["What drives you?"] * 3
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)


ENGINE_PROBE = """
import json, sys
sys.path.insert(0, {scripts!r})
from octlib import chat, engines

if __name__ == "__main__":
    engine = engines.load({engine!r}, {model!r}, {adapter!r}, {settings!r}, {steering!r})
    prompts = [chat.encode(engine.tokenizer, chat.render(engine.tokenizer, [{{"role": "user", "content": p}}]), True)
               for p in {prompts!r}]
    texts, ids = engine.generate(prompts, {sampling!r}, 7, return_ids=True)
    print("RESULT " + json.dumps(ids))
"""


def generated_ids(tmp_path, engine, model, adapter, prompts, steering=None):
    settings = HF_SETTINGS if engine == "hf" else VLLM_SETTINGS
    probe = tmp_path / f"probe_{engine}.py"
    probe.write_text(
        ENGINE_PROBE.format(
            scripts=str(ROOT / "scripts"),
            engine=engine,
            model=str(model),
            adapter=adapter and str(adapter),
            settings=settings,
            steering=steering and str(steering),
            prompts=prompts,
            sampling=GREEDY,
        )
    )
    python = VLLM_PYTHON if engine == "vllm" else sys.executable
    result = subprocess.run([str(python), str(probe)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split("RESULT ")[-1].splitlines()[0])


def test_vllm_backend_generates_the_same_greedy_tokens_as_transformers_with_and_without_lora(tmp_path, tiny_models):
    assert VLLM_PYTHON.exists(), "the vLLM environment is missing: run `bash scripts/install.sh --vllm`"
    from test_sft_and_merging import random_adapter

    adapter = random_adapter(tiny_models["chatml"], tmp_path / "adapter", seed=3, rank=8)
    prompts = ["Why is the sky blue?", "Write a poem.", "Help me plan a trip to the sea, please."]
    for lora in (None, adapter):
        hf = generated_ids(tmp_path, "hf", tiny_models["chatml"], lora, prompts)
        vllm = generated_ids(tmp_path, "vllm", tiny_models["chatml"], lora, prompts)
        assert vllm == hf and len(hf[0]) == GREEDY["max_tokens"]
    assert hf != generated_ids(tmp_path, "hf", tiny_models["chatml"], None, prompts)  # the adapter matters
