"""Training throughput of the DPO and SFT steps on one GPU: our training code against TRL's defaults and against
TRL tuned as its documentation suggests (issues 5 and 15). This file measures; bench/throughput_report.py reports.

The student is a Llama-3.1-8B-shaped model with random weights, built on the GPU in bf16, with LoRA r64 /
alpha 128 on every linear layer. Examples are drawn from log-normal length distributions like the paper's data
and built by our own example builders (train_dpo.tokenize_pairs, train_sft.last_message_example) with a
word-level tokenizer, one token per word. Every configuration trains the same global batch (the paper's 32):

- "ours": train_dpo.build_trainer / train_sft.build_trainer with the dpo / sft blocks of config.yaml;
- "TRL defaults": DPOTrainer / SFTTrainer with a default config (gradient checkpointing on, 8 examples per
  micro-batch, accumulated to the global batch);
- "TRL tuned": what a user would set from TRL's documentation: no gradient checkpointing, Liger's kernels,
  our micro-batch, for SFT TRL's padding-free collator with flash_attention_2 where the flash-attn package is
  installed, else with PyTorch's own variable-length flash attention (the kernel "ours" uses, which transformers
  calls with the packing TRL's collator gives: the same work as flash_attention_2; SDPA would mask the whole
  packed row and compute attention across sequences); TRL's DPO has no padding-free mode (DPOConfig.padding_free
  is disabled in TRL 1.16).

Each run of a configuration is its own process (an out-of-memory error is reported and the next one runs); with
--repeats the configurations are run in turn that many times. A run times --measured optimiser steps after
--warmup, then profiles one more step (the GPU's busy share of it), and records the job's other phases: building
the examples, building the trainer, saving the adapter. A "load" run saves the model and times loading it.

    python bench/train_throughput.py --out DIR --gpu-memory-gb 80 --repeats 3 --budget 560
        # one H200 call under 10 minutes takes part of it: --only and several calls, then throughput_report.py
    python bench/train_throughput.py --out DIR --only "dpo TRL tuned" "dpo ours"   # some configurations
    python bench/train_throughput.py --tiny --out DIR   # CPU dry run: a tiny model in float32

Writes DIR/train_throughput_<date>_<device>.json (every run) and .md (the report); copy them to bench/results/.
"""

import argparse
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LLAMA_8B = dict(
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    intermediate_size=14336,
    vocab_size=128256,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128)
LORA = dict(lora_rank=64, lora_alpha=128, lora_dropout=0.0, lora_target_modules="all-linear")
GLOBAL_BATCH = 32  # examples (DPO: pairs) per optimiser step: the paper's (config.yaml dpo and sft)
TINY_MAX_LENGTH = {"dpo": 128, "sft": 256}

# Lengths in tokens: log-normal with this median and sigma (of the log), clipped to [low, high]; the response
# (target) is then clipped so that prompt + response fits max_length (1024 for DPO pairs, 3072 for SFT).
LENGTHS = {
    "dpo": dict(prompt=(80, 0.8, 5, 400), response=(380, 0.6, 10, None)),  # chosen and rejected drawn apart
    "sft": dict(prompt=(700, 0.9, 30, 2900), response=(600, 0.6, 10, None)),
}
FULL_PROMPT = {"dpo": 100, "sft": 1500}  # full-length examples: this prompt, responses filling max_length

# name, stage, trainer, data, overrides of the config block; in order of importance (the budget may cut the end)
CONFIGS = [
    ("dpo TRL defaults", "dpo", "trl defaults", "realistic", {}),
    ("dpo TRL tuned", "dpo", "trl tuned", "realistic", {}),
    ("dpo ours", "dpo", "ours", "realistic", {}),
    ("sft TRL defaults", "sft", "trl defaults", "realistic", {}),
    ("sft TRL tuned", "sft", "trl tuned", "realistic", {}),
    ("sft ours", "sft", "ours", "realistic", {}),
    ("dpo ours, padded", "dpo", "ours", "realistic", dict(padding_free=False)),
    ("sft ours, padded", "sft", "ours", "realistic", dict(padding_free=False)),
    ("dpo ours, all pairs 1024 tokens", "dpo", "ours", "full", {}),
    ("sft ours, all transcripts 3072 tokens", "sft", "ours", "full", {}),
]

CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


# ---- data -----------------------------------------------------------------------------------------------


def word_tokenizer(words=1000):
    """A chat tokenizer with one token per word, so that drawn lengths are token counts."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>", "[UNK]"]
    vocab = special + ["system", "user", "assistant"] + [f"w{i}" for i in range(words)]
    core = Tokenizer(models.WordLevel({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.add_special_tokens(special)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|pad|>", unk_token="[UNK]"
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def draw(rng, median, sigma, low, high):
    return int(min(max(rng.lognormvariate(math.log(median), sigma), low), high))


def text(rng, n):
    return " ".join(f"w{rng.randrange(1000)}" for _ in range(n))


def conversations(stage, n, data, max_length, seed=0):
    """n (prompt, responses) conversations; the template adds about 8 tokens."""
    import random

    rng = random.Random(seed)
    spec, room = LENGTHS[stage], max_length - 10
    for _ in range(n):
        if data == "full":
            prompt = FULL_PROMPT[stage] if max_length > 1000 else max_length // 4
            responses = [max_length] * 2
        else:
            prompt = min(draw(rng, *spec["prompt"]), room - 10)
            responses = [draw(rng, *spec["response"][:3], room - prompt) for _ in range(2)]
        question = [{"role": "user", "content": text(rng, prompt)}]
        yield [question + [{"role": "assistant", "content": text(rng, length)}] for length in responses]


def examples(stage, tokenizer, n, data, max_length):
    import train_dpo
    import train_sft

    talks = list(conversations(stage, n, data, max_length))
    if stage == "dpo":
        pairs = [{"chosen": chosen, "rejected": rejected} for chosen, rejected in talks]
        return train_dpo.tokenize_pairs(tokenizer, pairs, max_length)
    built = (train_sft.last_message_example(tokenizer, talk[0], max_length) for talk in talks)
    return [example for example in built if example is not None]


# ---- one run, in its own process ----------------------------------------------------------------------------


def measure_peak(result):
    import torch

    a, b = (torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda") for _ in range(2))
    c = torch.empty_like(a)
    for _ in range(10):
        torch.matmul(a, b, out=c)
    best = 0.0
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(50):
            torch.matmul(a, b, out=c)
        end.record()
        torch.cuda.synchronize()
        best = max(best, 2 * 8192**3 * 50 / (start.elapsed_time(end) / 1e3))
    result.update(peak_tflops=best / 1e12, device=torch.cuda.get_device_name(0))


def build_model(tiny, cuda, vocab, dtype=None):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    shape = dict(TINY, vocab_size=vocab) if tiny else LLAMA_8B
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    with torch.device("cuda" if cuda else "cpu"):
        return AutoModelForCausalLM.from_config(LlamaConfig(**shape), dtype=dtype, attn_implementation="sdpa")


def tuned_attention(model, cuda):
    """TRL's documentation pairs padding-free training with flash attention: flash_attention_2 where the flash-attn
    package is installed, else PyTorch's varlen flash attention (see the module's text); SDPA on the CPU."""
    import importlib.util

    from octlib import training

    if cuda and importlib.util.find_spec("flash_attn"):
        model.set_attn_implementation("flash_attention_2")
    elif cuda:
        training.use_varlen_attention(model)


def trl_trainer(kind, stage, model, tokenizer, train, settings, micro, out, cuda):
    """TRL's own trainer: with its defaults, or tuned as its documentation suggests (see the module's text)."""
    from datasets import Dataset
    from octlib import training
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    common = dict(output_dir=out, max_steps=settings["max_steps"], max_length=settings["max_length"],
                  report_to="none", save_strategy="no", bf16=cuda, use_cpu=not cuda)  # fmt: skip
    if kind == "trl defaults":
        common.update(gradient_accumulation_steps=GLOBAL_BATCH // 8)  # TRL's micro-batch is 8
    else:
        common.update(per_device_train_batch_size=micro, gradient_accumulation_steps=GLOBAL_BATCH // micro,
                      gradient_checkpointing=False, use_liger_kernel=training.liger_kernel({"liger_kernel": "auto"}))  # fmt: skip
        if stage == "sft":  # the examples are cut to max_length already, which TRL asks for without packing
            common.update(padding_free=True, max_length=None)
    lora = training.lora_config(LORA)
    if stage == "dpo":

        class PretokenizedDPOTrainer(DPOTrainer):
            def _prepare_dataset(self, dataset, *args):
                return dataset

        trainer = PretokenizedDPOTrainer
        config = DPOConfig(**common)
    else:
        trainer = SFTTrainer
        config = SFTConfig(**common, dataset_kwargs={"skip_prepare_dataset": True})
    return trainer(model, args=config, train_dataset=Dataset.from_list(train), processing_class=tokenizer,
                   peft_config=lora)  # fmt: skip


def callbacks(warmup, measured, cuda, marks, tokens, result):
    """A clock at the end of every optimiser step (with the tokens counted so far), and a profile of the step
    after the measured ones: the GPU's busy share of it and the ops that take the most time."""
    import torch
    from transformers import TrainerCallback

    profiled = warmup + measured

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == profiled:
                activities = [torch.profiler.ProfilerActivity.CPU]
                activities += [torch.profiler.ProfilerActivity.CUDA] if cuda else []
                self.profiler = torch.profiler.profile(activities=activities)
                self.profiler.start()
                self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            if state.global_step <= profiled:
                marks.append((time.perf_counter(), *tokens.tolist()))
                return
            wall = time.perf_counter() - self.started
            self.profiler.stop()
            events = self.profiler.key_averages()
            kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
            busy = sum(e.self_device_time_total for e in kernels if not e.is_user_annotation) / 1e6
            result.update(profiled_step_s=wall, gpu_busy_s=busy)
            print(f"profiled step: {wall:.3f} s, GPU kernels {busy:.3f} s ({busy / wall:.0%} busy)")
            sort = "self_device_time_total" if cuda else "self_cpu_time_total"
            print(events.table(sort_by=sort, row_limit=15, max_name_column_width=60))

    return Clock()


def run_configuration(name, tiny, warmup, measured, memory_gb, result):
    started = time.perf_counter()
    import torch
    import train_dpo
    import train_sft
    import yaml
    from octlib import training
    from octlib.validate import check

    result["imports_s"] = time.perf_counter() - started

    _, stage, kind, data, overrides = next(c for c in CONFIGS if c[0] == name)
    cuda = torch.cuda.is_available()
    config = check(
        yaml.safe_load((ROOT / "config.yaml").read_text()), ROOT / "rules/schemas/config.schema.yaml", "config.yaml"
    )
    settings = config[stage]
    settings.update(LORA, seed=0, global_batch_size=GLOBAL_BATCH, max_steps=warmup + measured + 1, **overrides)
    if tiny:
        settings["max_length"] = TINY_MAX_LENGTH[stage]
    max_length = settings["max_length"]
    tokenizer = word_tokenizer()
    started = time.perf_counter()
    train = examples(stage, tokenizer, GLOBAL_BATCH * settings["max_steps"], data, max_length)
    result["examples_s"] = time.perf_counter() - started

    if cuda and memory_gb:  # plan for and stay within a smaller GPU's memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, memory_gb * 1e9 / training.gpu_memory()))
        training.gpu_memory = lambda: memory_gb * 1e9
    model = build_model(tiny, cuda, len(tokenizer))
    if kind == "trl tuned" and stage == "sft":
        tuned_attention(model, cuda)
    n_all = sum(p.numel() for p in model.parameters())
    n_matmul = n_all - model.get_input_embeddings().weight.numel()
    out = tempfile.mkdtemp()
    started = time.perf_counter()
    if kind == "ours" and stage == "dpo":
        trainer, _ = train_dpo.build_trainer(model, tokenizer, train, settings, out)
    elif kind == "ours":
        trainer, _ = train_sft.build_trainer(model, tokenizer, train, settings, out, config["fidelity"]["sft_loss"])
    else:
        micro = training.decide(settings, model, 2 if stage == "dpo" else 1)["micro_batch_size"]
        trainer = trl_trainer(kind, stage, model, tokenizer, train, settings, micro, out, cuda)
    result["trainer_s"] = time.perf_counter() - started
    a = trainer.args
    result.update(
        micro_batch=a.per_device_train_batch_size,
        micro_batch_tokens=getattr(getattr(trainer, "steps", None), "budget", None),
        accumulation=a.gradient_accumulation_steps,
        gradient_checkpointing=a.gradient_checkpointing,
        liger=a.use_liger_kernel,
        sort_by_length=getattr(trainer, "sort_by_length", False),
        padding_free=isinstance(trainer.data_collator, training.PackRows) or bool(getattr(trainer, "padding_free", 0)),
        attention=model.config._attn_implementation,
        max_length=max_length,
        n_params=n_all,
        n_matmul_params=n_matmul,
        examples=len(train),
    )

    # tokens of every micro-batch, summed on the device (no sync); read at the end of each optimiser step
    tokens = torch.zeros(2, dtype=torch.long, device=trainer.args.device)
    inner_step = trainer.training_step

    def counted_step(model, inputs, *args, **kwargs):
        ids = inputs.get("packed_ids", inputs["input_ids"])  # the tokens the model runs on
        mask = inputs.get("attention_mask")
        tokens[0] += mask.sum() if mask is not None else ids.numel()
        tokens[1] += ids.numel()
        return inner_step(model, inputs, *args, **kwargs)

    trainer.training_step = counted_step
    marks = []
    trainer.add_callback(callbacks(warmup, measured, cuda, marks, tokens, result))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    (t0, useful0, padded0), (t1, useful1, padded1) = marks[warmup - 1], marks[warmup + measured - 1]
    result.update(
        measured_steps=measured,
        seconds=t1 - t0,
        useful_tokens=useful1 - useful0,
        padded_tokens=padded1 - padded0,
    )
    if cuda:
        result.update(
            peak_allocated_gb=torch.cuda.max_memory_allocated() / 1e9,
            peak_reserved_gb=torch.cuda.max_memory_reserved() / 1e9,
        )
    started = time.perf_counter()
    trainer.save_model(out)
    result["save_s"] = time.perf_counter() - started


def measure_load(tiny, result):
    """The student saved in bf16 safetensors to the local disk, then loaded as the training scripts load it and
    moved to the GPU."""
    import torch
    from octlib import training

    cuda = torch.cuda.is_available()
    folder = tempfile.mkdtemp()
    build_model(tiny, False, len(word_tokenizer()), torch.bfloat16).save_pretrained(folder)
    started = time.perf_counter()
    model = training.load_model(folder, {"bf16": True, "attention": "sdpa"})
    if cuda:
        model.to("cuda")
        torch.cuda.synchronize()
    result.update(load_s=time.perf_counter() - started, checkpoint_gb=sum(
        f.stat().st_size for f in Path(folder).glob("*.safetensors")) / 1e9)  # fmt: skip


def worker(args):
    sys.path.insert(0, str(ROOT / "scripts"))
    result = {"name": args.worker}
    scratch = tempfile.TemporaryDirectory()
    tempfile.tempdir = scratch.name  # the run's checkpoints and adapters (8B: 16 GB) go when it ends
    try:
        if args.worker == "peak":
            measure_peak(result)
        elif args.worker == "load":
            measure_load(args.tiny, result)
        else:
            run_configuration(args.worker, args.tiny, args.warmup, args.measured, args.gpu_memory_gb, result)
        result["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - reported in the results, the next configuration still runs
        traceback.print_exc()
        oom = "OutOfMemoryError" in type(error).__name__ or "out of memory" in str(error)
        result["status"] = "OOM" if oom else f"error: {type(error).__name__}: {str(error)[:300]}"
    scratch.cleanup()
    Path(args.result).write_text(json.dumps(result))


# ---- the whole run ----------------------------------------------------------------------------------------


def spawn(name, args, timeout):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    command = [sys.executable, __file__, "--worker", name, "--result", path]
    command += ["--warmup", str(args.warmup), "--measured", str(args.measured)] + (["--tiny"] if args.tiny else [])
    command += ["--gpu-memory-gb", str(args.gpu_memory_gb)] if args.gpu_memory_gb else []
    print(f"\n==== {name} ({datetime.datetime.now():%H:%M:%S})", flush=True)
    started = time.time()
    try:
        rc = subprocess.run(command, check=False, timeout=timeout).returncode
        text = Path(path).read_text()
        result = json.loads(text) if text else {"status": f"no result: exit {rc}"}
    except subprocess.TimeoutExpired:
        result = {"status": f"timeout after {timeout:.0f} s"}
    result.update(name=name, wall_s=round(time.time() - started, 1))
    print(json.dumps(result), flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".", help="folder for the JSON and markdown results")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU, float32: a dry run")
    parser.add_argument("--warmup", type=int, default=2, help="optimiser steps before timing")
    parser.add_argument("--measured", type=int, default=6, help="optimiser steps timed")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration, in turn")
    parser.add_argument("--budget", type=float, default=540, help="seconds; later runs are skipped")
    parser.add_argument("--gpu-memory-gb", type=float, help="cap the GPU memory (80: an H100's) and plan for it")
    parser.add_argument("--only", nargs="*", help="names of the configurations to run (default: all)")
    parser.add_argument("--no-load", action="store_true", help="skip the run that times loading the model")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    os.environ.update(PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    started = time.time()
    runs = [] if args.tiny else [spawn("peak", args, 120)]
    names = [name for name, *_ in CONFIGS if not args.only or name in args.only]
    plan = [(repeat, name) for repeat in range(args.repeats) for name in names]
    for repeat, name in plan + ([] if args.no_load else [(0, "load")]):
        left = args.budget - (time.time() - started)
        result = spawn(name, args, left) if left >= 40 else {"name": name, "status": "skipped: time budget"}
        runs.append(dict(result, repeat=repeat))

    import peft
    import torch
    import transformers
    import trl

    device = next((r["device"] for r in runs if "device" in r), "cpu" if args.tiny else "unknown")
    raw = dict(
        date=datetime.date.today().isoformat(),
        device=device,
        command=shlex.join(["python", "bench/train_throughput.py"] + sys.argv[1:]),
        versions=f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
        f"peft {peft.__version__}",
        model="tiny Llama (CPU dry run)"
        if args.tiny
        else "Llama-3.1-8B shape (hidden 4096, 32 layers, 32 heads, "
        "8 KV heads, intermediate 14336, vocab 128256), random weights, bf16",
        lengths=describe_lengths(args.tiny),
        warmup=args.warmup,
        measured=args.measured,
        gpu_memory_gb=args.gpu_memory_gb,
        runs=runs,
    )
    import throughput_report

    throughput_report.write([raw], args.out)


def describe_lengths(tiny):
    import yaml

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    max_length = TINY_MAX_LENGTH if tiny else {stage: config[stage]["max_length"] for stage in LENGTHS}
    return "; ".join(
        f"{stage.upper()} max_length {max_length[stage]}: "
        f"prompt log-normal(median {p[0]}, sigma {p[1]}) clipped to [{p[2]}, {p[3]}], "
        f"{'chosen and rejected each' if stage == 'dpo' else 'target'} log-normal(median {r[0]}, sigma {r[1]}) "
        f"clipped so that the whole fits max_length"
        for stage, (p, r) in ((s, (v["prompt"], v["response"])) for s, v in LENGTHS.items())
    )


if __name__ == "__main__":
    main()
