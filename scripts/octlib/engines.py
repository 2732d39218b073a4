"""One generation interface, two backends: Hugging Face transformers (CPU, tests) and vLLM (GPU cluster).

Both take token-id prompts built by the same code (chat.py) and return decoded texts, so prompt building,
parsing and I/O are shared. Sampling keys follow vLLM's names: temperature, top_p, top_k (-1 = off),
min_p, repetition_penalty, max_tokens.
"""

import atexit
import os
import shutil
import tempfile


def load(engine, model, adapter=None, settings=None, steering=None):
    """steering: a steering file (octlib.steering), added at run time by hf and folded into the weights for vllm."""
    if engine == "hf":
        return HFEngine(model, adapter, steering=steering, **settings)
    if engine == "vllm":
        if steering:
            from octlib import steering as steer

            folded = tempfile.mkdtemp(prefix="steered-", dir=os.environ.get("TMPDIR"))
            atexit.register(shutil.rmtree, folded, True)
            steer.fold(model, steer.load(steering), folded)
            model = folded
        return VLLMEngine(model, adapter, **settings)
    raise SystemExit(f"unknown engine {engine!r}: use 'hf' or 'vllm'")


class HFEngine:
    def __init__(self, model, adapter, *, batch_size, dtype, steering=None):
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


class VLLMEngine:
    def __init__(
        self,
        model,
        adapter,
        *,
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


def add_arguments(parser, sampling_required=True):
    """The engine options every generation step takes. --engine-settings are those that change what is
    generated, --engine-speed those that change only speed or memory (kept out of the shard fingerprint)."""
    import json

    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--adapter", help="PEFT adapter directory applied on top of --model")
    parser.add_argument("--steering", help="steering file (octlib.steering) applied to --model")
    parser.add_argument("--engine", choices=["hf", "vllm"], required=True)
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


def from_args(args):
    return load(args.engine, args.model, args.adapter, {**args.engine_settings, **args.engine_speed}, args.steering)
