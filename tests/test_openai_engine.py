"""The openai engine against a real OpenAI-compatible server: vLLM's CPU build serving the tiny chat model,
reached directly or through a small local proxy that injects failures and counts requests in flight."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from conftest import HF_SETTINGS, ROOT, VLLM_PYTHON, copy_workflow, snakemake
from octlib import engines
from octlib.io import read_jsonl, write_jsonl

KEY = "sk-test-0123456789abcdef"  # a made-up key: it must reach the server and nothing else
GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "max_tokens": 12}
SAMPLED = {"temperature": 0.8, "top_p": 0.95, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.1, "max_tokens": 12}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(model_dir, port, log):
    """vLLM's OpenAI server on the tiny model. Chunked prefill is off: on the CPU build a seeded request whose
    prompt is split across steps crashes the engine (torch's CPU generator has no offset)."""
    command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    command += ["--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32"]
    command += ["--max-model-len", "2048", "--enforce-eager", "--gpu-memory-utilization", "0.1"]
    command += ["--max-num-seqs", "32", "--no-enable-chunked-prefill"]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    assert VLLM_PYTHON.exists(), "the vLLM environment is missing: run `bash scripts/install.sh --vllm`"
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "w") as log:
        process = serve(tiny_models["chatml"], port, log)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 240
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).close()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise AssertionError(f"the vLLM server did not start:\n{log_path.read_text()[-3000:]}") from None
            time.sleep(1)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)


class Proxy:
    """Forwards requests to the server. Each POST first takes the next failure of `failures` (a status), if any,
    and answers it instead, with a body that quotes the request's key; `delay` holds every answer back.
    Records the Authorization headers and the most requests it held at once."""

    def __init__(self, upstream):
        self.upstream, self.failures, self.delay = upstream, [], 0.0
        self.keys, self.posts, self.busy, self.most = [], 0, 0, 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.lock:
                    proxy.posts += 1
                    proxy.busy += 1
                    proxy.most = max(proxy.most, proxy.busy)
                    proxy.keys.append(self.headers.get("Authorization"))
                    failure = proxy.failures.pop(0) if proxy.failures else None
                try:
                    if failure:
                        answer = json.dumps({"error": f"injected {failure} for {self.headers.get('Authorization')}"})
                        self.send_response(failure)
                        self.send_header("Retry-After", "0")
                        self.end_headers()
                        self.wfile.write(answer.encode())
                        return
                    request = urllib.request.Request(proxy.upstream + self.path.removeprefix("/v1"), body)
                    request.add_header("Content-Type", "application/json")
                    with urllib.request.urlopen(request) as response:
                        answer = response.read()
                    time.sleep(proxy.delay)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(answer)
                finally:
                    with proxy.lock:
                        proxy.busy -= 1

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/v1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()


@pytest.fixture
def proxy(server):
    p = Proxy(server)
    yield p
    p.close()


def served(url, **settings):
    return engines.load("openai", "tiny", settings={"base_url": url, "backoff": 0.01, **settings})


def conversations(n):
    return [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Question {i}?"}] for i in range(n)
    ]


def test_the_server_sees_the_local_engine_s_prompt_tokens_and_answers_with_its_greedy_tokens(tiny_models, proxy):
    """The server renders the same chat template (special tokens once) and continues a final assistant message
    exactly where the local engine's prompt ends; eight requests are in flight at once."""
    local = engines.load("hf", str(tiny_models["chatml"]), settings=HF_SETTINGS, special_tokens="once")
    engine = served(proxy.url, concurrency=8, params={"return_token_ids": True})  # vLLM's: the ids of both
    chats = conversations(16)
    prefills = ["" if i % 2 else "Well, to be" for i in range(16)]
    prompts = [local.prompt(c, p) for c, p in zip(chats, prefills)]
    _, ids = local.generate(prompts, GREEDY, 0, return_ids=True)
    texts = engine.generate([engine.prompt(c, p) for c, p in zip(chats, prefills)], GREEDY, 0)
    assert 1 < proxy.most <= 8 and len(texts) == 16 and all(texts)
    assert engine.completion_tokens == 16 * GREEDY["max_tokens"]  # the tiny model never stops early
    for chat, prefill, prompt, answer in zip(chats, prefills, prompts, ids):
        reply = engine.request(engine.body(engine.prompt(chat, prefill), GREEDY, 0))
        assert reply["prompt_token_ids"] == prompt and reply["choices"][0]["token_ids"] == answer


def test_sampled_answers_depend_on_the_seed_only_not_on_the_concurrency(proxy):
    one, many = served(proxy.url, concurrency=1), served(proxy.url, concurrency=16)
    chats = [one.prompt(c) for c in conversations(12)]
    first = one.generate(chats, SAMPLED, 7)
    assert many.generate(chats, SAMPLED, 7) == first
    assert many.generate(chats, SAMPLED, 8) != first
    assert proxy.most > 1


def test_rate_limits_and_server_errors_are_retried_and_the_key_is_sent_but_never_shown(proxy, monkeypatch, capfd):
    monkeypatch.setenv("OCT_TEST_KEY", KEY)
    engine = served(proxy.url, key_env="OCT_TEST_KEY", concurrency=1)
    proxy.failures = [429, 500, 503]
    texts = engine.generate([engine.prompt(c) for c in conversations(2)], SAMPLED, 0)
    assert len(texts) == 2 and proxy.posts == 5  # the first request took four attempts
    assert set(proxy.keys) == {f"Bearer {KEY}"}
    proxy.failures = [400]  # not retried; the server's message quotes the key
    with pytest.raises(SystemExit, match=r"answered HTTP 400: .*injected 400 for Bearer \*\*\*") as stop:
        engine.generate([engine.prompt(c) for c in conversations(1)], SAMPLED, 0)
    proxy.failures = [429] * 3  # more failures than retries
    with pytest.raises(SystemExit, match=r"HTTP 429.*gave up after 3 attempts") as gave_up:
        served(proxy.url, key_env="OCT_TEST_KEY", max_retries=2).generate(
            [engine.prompt(conversations(1)[0])], SAMPLED, 0
        )
    out, err = capfd.readouterr()
    assert "retry 2 of 2" in err
    assert KEY not in str(stop.value) + str(gave_up.value) + out + err


def test_an_unreachable_endpoint_or_a_missing_key_stops_with_a_message_naming_it(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = served(url, max_retries=1)
    with pytest.raises(SystemExit, match=rf"cannot reach {url}/chat/completions: .*refused.*after 2 attempts"):
        engine.generate([engine.prompt(conversations(1)[0])], SAMPLED, 0)
    monkeypatch.delenv("OCT_NO_SUCH_KEY", raising=False)
    with pytest.raises(SystemExit, match=f"OCT_NO_SUCH_KEY is not set: it holds the key of {url}"):
        served(url, key_env="OCT_NO_SUCH_KEY")


def test_a_prefill_is_left_out_where_the_server_cannot_continue_a_message(proxy):
    engine = served(proxy.url, continue_final_message=False)
    chat = conversations(1)[0]
    assert engine.prompt(chat, "Well,") == chat
    plain = served(proxy.url)
    assert engine.generate([engine.prompt(chat, "Well,")], GREEDY, 0) == plain.generate([plain.prompt(chat)], GREEDY, 0)


def test_request_fields_of_a_hosted_model_replace_or_remove_the_step_s():
    engine = engines.load(
        "openai",
        "gpt-x",
        settings={
            "base_url": "http://localhost:1/v1",
            "sampling": "standard",
            "params": {"temperature": 1, "max_completion_tokens": 9},
            "omit": ["seed", "max_tokens"],
        },
    )
    body = engine.body([{"role": "user", "content": "hi"}], SAMPLED, 3)
    assert body == {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 1,
        "top_p": 0.95,
        "max_completion_tokens": 9,
    }


def generate(proxy_url, prompts, out, env, check=True):
    """generate_responses.py with the openai engine, as a Popen (so a test can kill it)."""
    settings = {"sampling": "all", "params": {}, "omit": [], "continue_final_message": True}
    speed = {"base_url": proxy_url, "key_env": "OCT_TEST_KEY", "concurrency": 2, "backoff": 0.01}
    command = [sys.executable, str(ROOT / "scripts" / "generate_responses.py"), "--model", "tiny"]
    command += ["--engine", "openai", "--engine-settings", json.dumps(settings), "--engine-speed", json.dumps(speed)]
    command += ["--sampling", json.dumps(SAMPLED), "--seed", "11", "--shard-size", "4", "--special-tokens", "once"]
    command += ["--prompts", str(prompts), "--repeats", "1", "--out", str(out)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_job_killed_half_way_resumes_with_every_row_once_and_no_key_anywhere(proxy, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"prompt": f"Tell me about number {i}."} for i in range(16)])
    env = {**os.environ, "OCT_TEST_KEY": KEY}
    clean = generate(proxy.url, prompts, tmp_path / "clean.jsonl", env)
    assert clean.wait(120) == 0, clean.stdout.read()
    logs = clean.stdout.read()

    out = tmp_path / "killed.jsonl"
    proxy.delay = 0.3
    job = generate(proxy.url, prompts, out, env)
    shards = tmp_path / "killed.jsonl.shards"
    deadline = time.time() + 120
    while not (shards / "00001.jsonl").exists():
        assert job.poll() is None and time.time() < deadline, job.stdout.read() if job.poll() is not None else "timeout"
        time.sleep(0.05)
    job.kill()
    job.wait()
    logs += job.stdout.read()
    finished = sorted(p.name for p in shards.glob("*.jsonl"))
    assert "00000.jsonl" in finished and len(finished) < 4 and not out.exists()
    shard_text = "".join(p.read_text() for p in shards.iterdir() if p.is_file())
    proxy.delay = 0.0
    resumed = generate(proxy.url, prompts, out, env)
    assert resumed.wait(120) == 0
    logs += (text := resumed.stdout.read())
    assert f"resuming from {len(finished)} finished shards" in text
    assert read_jsonl(out) == read_jsonl(tmp_path / "clean.jsonl")  # every row once, as an uninterrupted run
    assert KEY not in logs + shard_text + out.read_text() and set(proxy.keys) == {f"Bearer {KEY}"}


def test_the_workflow_s_teacher_is_a_served_model_by_config_alone(proxy, tmp_path):
    """An api entry as the teacher: its job has no model input, asks for no GPU, and writes the chosen answers."""
    workdir = copy_workflow(tmp_path)
    overlay = {
        "models": {
            "served": {"api": {"base_url": proxy.url, "model": "tiny", "key_env": "OCT_TEST_KEY"}, "name": "Served"}
        },
        "teacher": "served",
        "personas": ["sarcasm"],
        "chosen": {"openings": {}},
    }
    (workdir / "served.yaml").write_text(yaml.safe_dump(overlay))
    target = "results/distillation/sarcasm/chosen.jsonl"
    args = [target, "--configfile", "tests/tiny/config.yaml", "served.yaml"]
    os.environ["OCT_TEST_KEY"] = KEY
    try:
        dry = snakemake(workdir, "-n", "-p", *args).stdout
        chosen_inputs = dry.split("rule generate_chosen:")[1].split("output:")[0]
        assert "--engine openai" in dry and "resources/models" not in chosen_inputs
        snakemake(workdir, "--cores", 2, *args)
    finally:
        del os.environ["OCT_TEST_KEY"]
    rows = read_jsonl(workdir / target)
    assert len(rows) == proxy.posts > 0
    assert KEY not in (workdir / "logs/distillation/chosen_sarcasm.log").read_text()
