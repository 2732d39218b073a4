"""Requests and tokens per second of the openai engine against an OpenAI-compatible server, by concurrency.

Sends --requests chat requests (seeded sampling, every answer --max-tokens long where the model does not stop
first) through octlib.engines' openai engine at each --concurrency, --repeats times in interleaved order, and
prints and writes the median and range of each. With --model, it starts vLLM's OpenAI server on that model
directory first (--python: an interpreter with vLLM, e.g. .venv-vllm/bin/python); with --base-url, it measures
a server already running.

    python bench/openai_throughput.py --model /tmp/tiny --python .venv-vllm/bin/python --out bench/results/x.json
"""

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from octlib import engines  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--base-url", help="a running server's API base (…/v1)")
parser.add_argument("--served-name", default="bench", help="the model's name on the server")
parser.add_argument("--model", help="a model directory to serve with vLLM")
parser.add_argument("--python", default=sys.executable, help="interpreter with vLLM, for --model")
parser.add_argument("--max-num-seqs", type=int, default=64)
parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
parser.add_argument("--requests", type=int, default=64)
parser.add_argument("--max-tokens", type=int, default=64)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--out", required=True)
args = parser.parse_args()

server = None
if args.model:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [args.python, "-m", "vllm.entrypoints.openai.api_server", "--model", args.model, "--served-model-name"]
    command += [args.served_name, "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048"]
    command += [
        "--max-num-seqs",
        str(args.max_num_seqs),
        "--no-enable-chunked-prefill",
    ]  # see tests/test_openai_engine.py
    log = tempfile.NamedTemporaryFile("w", prefix="vllm-server-", suffix=".log", delete=False)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    args.base_url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{args.base_url}/models", timeout=2).close()
            break
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server stopped: see {log.name}")
            time.sleep(1)

sampling = {"temperature": 0.8, "top_p": 0.95, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}
sampling["max_tokens"] = args.max_tokens
try:
    runs = {c: [] for c in args.concurrency}
    engine = engines.load("openai", args.served_name, settings={"base_url": args.base_url, "concurrency": 1})
    prompts = [
        engine.prompt([{"role": "user", "content": f"Tell me a story about the number {i}."}])
        for i in range(args.requests)
    ]
    engine.generate(prompts[:4], sampling, 0)  # warm-up
    for repeat in range(args.repeats):
        for concurrency in args.concurrency:
            engine = engines.load(
                "openai", args.served_name, settings={"base_url": args.base_url, "concurrency": concurrency}
            )
            start = time.perf_counter()
            engine.generate(prompts, sampling, 1000 * repeat)
            seconds = time.perf_counter() - start
            runs[concurrency].append(
                {
                    "seconds": seconds,
                    "requests_s": args.requests / seconds,
                    "tokens_s": engine.completion_tokens / seconds,
                }
            )
            print(f"repeat {repeat} concurrency {concurrency}: {args.requests / seconds:.2f} req/s, "
                  f"{engine.completion_tokens / seconds:.0f} tok/s", flush=True)  # fmt: skip
finally:
    if server:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

summary = {}
for concurrency, measured in runs.items():
    summary[concurrency] = {
        key: {"median": statistics.median(r[key] for r in measured), "min": min(r[key] for r in measured),
              "max": max(r[key] for r in measured)}
        for key in ("requests_s", "tokens_s")
    }  # fmt: skip
    m = summary[concurrency]
    print(f"concurrency {concurrency:>3}: median {m['requests_s']['median']:.2f} req/s "
          f"({m['requests_s']['min']:.2f}-{m['requests_s']['max']:.2f}), median {m['tokens_s']['median']:.0f} tok/s")  # fmt: skip
result = {
    "settings": {k: v for k, v in vars(args).items() if k not in ("out", "python")},
    "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    "runs": runs,
    "summary": summary,
}
Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
