"""One generation interface, three backends: Hugging Face transformers (CPU, tests), vLLM (GPU cluster) and an
OpenAI-compatible server (`vllm serve` of a large teacher or judge, a hosted API).

A script builds each request as chat messages with engine.prompt(messages, prefill) and hands the results to
engine.generate, which returns the texts; prompt building, parsing, sharding and resuming are the script's and
shared. The local engines render the messages with the model's chat template (chat.py) and generate from the
token ids; the server engine sends the messages. Sampling keys follow vLLM's names: temperature, top_p, top_k
(-1 = off), min_p, repetition_penalty, max_tokens.
"""

import atexit
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from octlib import chat


def load(engine, model, adapter=None, settings=None, steering=None, special_tokens="doubled"):
    """steering: a steering file (octlib.steering), added at run time by hf and folded into the weights for vllm.
    special_tokens: how the local engines tokenize a rendered prompt (chat.encode)."""
    settings = settings or {}
    if engine == "openai":
        if adapter or steering:
            raise SystemExit("the openai engine sends requests to a served model: it cannot add an adapter or a vector")
        return OpenAIEngine(model, **settings)
    if engine == "hf":
        return HFEngine(model, adapter, steering=steering, special_tokens=special_tokens, **settings)
    if engine == "vllm":
        if steering:
            from octlib import steering as steer

            folded = tempfile.mkdtemp(prefix="steered-", dir=os.environ.get("TMPDIR"))
            atexit.register(shutil.rmtree, folded, True)
            steer.fold(model, steer.load(steering), folded)
            model = folded
        return VLLMEngine(model, adapter, special_tokens=special_tokens, **settings)
    raise SystemExit(f"unknown engine {engine!r}: use 'hf', 'vllm' or 'openai'")


class LocalPrompts:
    """prompt() of the engines that hold the model's tokenizer: rendered messages (a final assistant message is
    continued), then the prefill, as token ids."""

    def prompt(self, messages, prefill=""):
        doubled = self.special_tokens == "doubled"
        return chat.encode(self.tokenizer, chat.render_open(self.tokenizer, messages) + prefill, doubled)


class HFEngine(LocalPrompts):
    def __init__(self, model, adapter, *, batch_size, dtype, steering=None, special_tokens="doubled"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device == "cuda" else "float32"
        torch_dtype = getattr(torch, dtype)
        net = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(device)
        if adapter:
            from peft import PeftModel

            net = PeftModel.from_pretrained(net, adapter)
        if steering:
            from octlib import steering as steer

            steer.hooks(net, steer.load(steering))
        self.model = net.eval()
        self.device = device
        self.batch_size = batch_size
        self.special_tokens = special_tokens

    def generate(self, prompts, sampling, seed, return_ids=False):
        """prompts: lists of token ids. Each batch is seeded with seed + its first index, so a shard's output
        does not depend on what ran before it. With return_ids, also the generated token ids."""
        from transformers import GenerationConfig, set_seed

        top_k = sampling["top_k"]
        config = GenerationConfig(
            do_sample=sampling["temperature"] > 0,
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            top_k=None if top_k in (-1, 0) else top_k,
            min_p=sampling["min_p"] or None,
            repetition_penalty=sampling["repetition_penalty"],
            max_new_tokens=sampling["max_tokens"],
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.model.generation_config.eos_token_id,
        )
        texts, ids = [], []
        for start in range(0, len(prompts), self.batch_size):
            batch = [{"input_ids": ids} for ids in prompts[start : start + self.batch_size]]
            enc = self.tokenizer.pad(batch, return_tensors="pt").to(self.device)
            set_seed(seed + start)
            with self.torch.no_grad():
                out = self.model.generate(**enc, generation_config=config)
            new = out[:, enc["input_ids"].shape[1] :]
            texts += self.tokenizer.batch_decode(new, skip_special_tokens=True)
            ids += [[t for t in row if t != self.tokenizer.pad_token_id] for row in new.tolist()]
        return (texts, ids) if return_ids else texts

    def likeliest(self, prompt_ids, candidates):
        """Index of the candidate text with the highest total log-probability as a continuation of prompt_ids."""
        torch, scores = self.torch, []
        for text in candidates:
            full = torch.tensor(
                [prompt_ids + self.tokenizer(text, add_special_tokens=False)["input_ids"]], device=self.device
            )
            with torch.no_grad():
                logps = torch.log_softmax(self.model(input_ids=full).logits[0, :-1].float(), -1)
            targets = full[0, len(prompt_ids) :]
            scores.append(logps[len(prompt_ids) - 1 :].gather(-1, targets[:, None]).sum().item())
        return max(range(len(candidates)), key=scores.__getitem__)


class VLLMEngine(LocalPrompts):
    def __init__(
        self,
        model,
        adapter,
        *,
        special_tokens="doubled",
        tensor_parallel,
        dtype,
        max_model_len,
        gpu_memory_utilization,
        enable_prefix_caching,
        max_num_seqs,
        max_lora_rank,
        enforce_eager,
    ):
        from transformers import AutoTokenizer
        from vllm import LLM

        if tensor_parallel == "auto":
            import torch

            tensor_parallel = max(1, torch.cuda.device_count())
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        kwargs = dict(
            model=model,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel,
            max_model_len=max_model_len,
            enable_prefix_caching=enable_prefix_caching,
            max_num_seqs=max_num_seqs,
            seed=0,
            enforce_eager=enforce_eager,
            gpu_memory_utilization=gpu_memory_utilization,
        )  # on vLLM's CPU build: a share of RAM
        if adapter:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=1)
        self.llm = LLM(**kwargs)
        self.adapter = adapter
        self.special_tokens = special_tokens

    def generate(self, prompts, sampling, seed, return_ids=False):
        """One batched call; every request carries its own seed, so results do not depend on batching."""
        from vllm import SamplingParams, TokensPrompt
        from vllm.lora.request import LoRARequest

        params = [SamplingParams(**sampling, seed=seed + i) for i in range(len(prompts))]
        lora = LoRARequest("adapter", 1, os.path.abspath(self.adapter)) if self.adapter else None
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, lora_request=lora, use_tqdm=False
        )
        texts = [o.outputs[0].text for o in outputs]
        return (texts, [list(o.outputs[0].token_ids) for o in outputs]) if return_ids else texts


# The sampling keys a server is sent: "standard" those of OpenAI's API, "all" also vLLM's extras.
SERVER_SAMPLING = {
    "standard": ("temperature", "top_p", "max_tokens"),
    "all": ("temperature", "top_p", "max_tokens", "top_k", "min_p", "repetition_penalty"),
}
RETRIED = {408, 409, 429, 500, 502, 503, 504}  # rate limits, timeouts and server errors


class ServerError(Exception):
    pass


def retry_after(header, default):
    """The seconds of a Retry-After header (its date form is not used by the servers we call), else default."""
    try:
        return max(0.0, float(header))
    except (TypeError, ValueError):
        return default


class OpenAIEngine:
    """Chat completions of an OpenAI-compatible server, `concurrency` requests at a time.

    Each request carries its own seed (seed + its index), so the answers do not depend on the concurrency. A
    request answered 408, 409, 429 or 5xx, or not answered at all, is retried after a backoff (the server's
    Retry-After, else backoff x 2^attempt with jitter), up to max_retries times; any other status, or the last
    failure, stops the job naming the endpoint (finished shards stay, so a rerun resumes). The key is read from
    the environment variable key_env and is never printed: error texts have it masked.

    A prefill (the first words of the answer) is sent as a final assistant message that the server continues
    (vLLM's continue_final_message). With continue_final_message false, the server cannot continue a message:
    the prefill is left out and the model answers from the generation prompt. A server that returns the
    reasoning apart from the answer (a reasoning parser) gets it back in front of the answer, closed by
    </think>, as a local model would have written it.
    """

    def __init__(
        self,
        model,
        *,
        base_url,
        key_env=None,
        sampling="all",
        params=None,
        omit=(),
        continue_final_message=True,
        concurrency=16,
        timeout=600,
        max_retries=6,
        backoff=1.0,
    ):
        self.model, self.url = model, base_url.rstrip("/") + "/chat/completions"
        self.key = None
        if key_env:
            self.key = os.environ.get(key_env)
            if not self.key:
                raise SystemExit(f"the environment variable {key_env} is not set: it holds the key of {base_url}")
        self.keys, self.params, self.omit = SERVER_SAMPLING[sampling], params or {}, set(omit)
        self.continues = continue_final_message
        self.concurrency, self.timeout, self.max_retries, self.backoff = concurrency, timeout, max_retries, backoff
        self.completion_tokens = 0
        self.warned = False

    def prompt(self, messages, prefill=""):
        messages = [dict(m) for m in messages]
        if prefill and messages[-1]["role"] == "assistant":
            messages[-1]["content"] += prefill
        elif prefill:
            messages.append({"role": "assistant", "content": prefill})
        if messages[-1]["role"] == "assistant":
            messages[-1]["content"] = messages[-1]["content"].strip()  # as chat.render_open cuts it
            if not self.continues:
                if not self.warned:
                    print(f"{self.url} cannot continue a final message: the prefill is left out", flush=True)
                    self.warned = True
                messages = messages[:-1]
        return messages

    def body(self, messages, sampling, seed):
        body = {"model": self.model, "messages": messages, "seed": seed}
        body.update({k: sampling[k] for k in self.keys if k in sampling})
        if messages[-1]["role"] == "assistant":
            body.update(continue_final_message=True, add_generation_prompt=False)
        body.update(self.params)  # the model's own request fields
        return {k: v for k, v in body.items() if k not in self.omit}

    def masked(self, text):
        return text.replace(self.key, "***") if self.key else text

    def request(self, body):
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * 2**attempt * random.uniform(0.5, 1.5)
            try:
                request = urllib.request.Request(self.url, data, headers)
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.load(response)
            except urllib.error.HTTPError as e:
                failure = f"{self.url} answered HTTP {e.code}: {self.masked(e.read(500).decode(errors='replace'))}"
                if e.code not in RETRIED:
                    raise ServerError(failure) from None
                wait = retry_after(e.headers.get("Retry-After"), wait)
            except (urllib.error.URLError, OSError) as e:  # refused, reset, timed out
                failure = f"cannot reach {self.url}: {getattr(e, 'reason', e)}"
            if attempt < self.max_retries:
                print(
                    f"{failure}; retry {attempt + 1} of {self.max_retries} in {wait:.1f} s", file=sys.stderr, flush=True
                )
                time.sleep(wait)
        raise ServerError(f"{failure} (gave up after {self.max_retries + 1} attempts)")

    def answer(self, body):
        """The answer's text and its token count (the server's usage figure, 0 where it gives none)."""
        reply = self.request(body)
        message = reply["choices"][0]["message"]
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        content = message.get("content") or ""
        tokens = (reply.get("usage") or {}).get("completion_tokens") or 0
        return (f"{reasoning}</think>{content}" if reasoning else content), tokens

    def generate(self, prompts, sampling, seed, return_ids=False):
        if return_ids:
            raise SystemExit("the openai engine returns texts, not token ids")
        bodies = [self.body(m, sampling, seed + i) for i, m in enumerate(prompts)]
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(self.answer, b) for b in bodies]
            try:
                answers = [f.result() for f in futures]
            except ServerError as e:
                pool.shutdown(cancel_futures=True)
                raise SystemExit(str(e)) from None
        self.completion_tokens += sum(tokens for _, tokens in answers)
        return [text for text, _ in answers]


def add_arguments(parser, sampling_required=True):
    """The engine options every generation step takes. --engine-settings are those that change what is
    generated, --engine-speed those that change only speed or memory (kept out of the shard fingerprint)."""
    import json

    parser.add_argument("--model", required=True, help="model directory, or the served model's name (openai)")
    parser.add_argument("--adapter", help="PEFT adapter directory applied on top of --model")
    parser.add_argument("--steering", help="steering file (octlib.steering) applied to --model")
    parser.add_argument("--engine", choices=["hf", "vllm", "openai"], required=True)
    parser.add_argument("--engine-settings", type=json.loads, default={}, help="JSON: backend options")
    parser.add_argument("--engine-speed", type=json.loads, default={}, help="JSON: backend options of speed only")
    parser.add_argument(
        "--sampling", type=json.loads, required=sampling_required, help="JSON: vLLM-style sampling settings"
    )
    parser.add_argument("--seed", type=int, required=sampling_required)
    parser.add_argument("--shard-size", type=int, required=True, help="rows generated and saved together")
    parser.add_argument(
        "--special-tokens",
        choices=["doubled", "once"],
        required=True,
        help="doubled: rendered prompts are tokenized with special tokens again, as vLLM does with string prompts",
    )


def check_judge_mode(args):
    """A judge's --mode: loglik needs the model's log-probabilities (hf), generate samples (--sampling, --seed)."""
    if args.mode == "loglik" and args.engine != "hf":
        raise SystemExit("the loglik judge needs the hf engine")
    if args.mode == "generate" and (args.sampling is None or args.seed is None):
        raise SystemExit("the generate judge needs --sampling and --seed")


def from_args(args):
    settings = {**args.engine_settings, **args.engine_speed}
    return load(args.engine, args.model, args.adapter, settings, args.steering, args.special_tokens)
