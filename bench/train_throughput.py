"""Training throughput of the DPO and SFT steps on one GPU: our training code against TRL's defaults (issue 5).

The student is a Llama-3.1-8B-shaped model with random weights, built on the GPU in bf16, with LoRA r64 /
alpha 128 on every linear layer. Examples are drawn from log-normal length distributions like the paper's data
and built by our own example builders (train_dpo.tokenize_pairs, train_sft.last_message_example) with a
word-level tokenizer, one token per word. "ours" is train_dpo.build_trainer / train_sft.build_trainer with the
dpo / sft blocks of config.yaml; "TRL defaults" is DPOTrainer / SFTTrainer with a default config (gradient
checkpointing on, 8 examples per micro-batch, accumulated to the paper's global batch of 32). Every
configuration trains the same global batch and runs in its own process, so an out-of-memory error is reported
and the next one still runs.

    python bench/train_throughput.py --out DIR --gpu-memory-gb 80 --profile "dpo ours"
        # one GPU, about 12 minutes on an H200, planning for and capped at an H100's 80 GB
    python bench/train_throughput.py --out DIR --only "dpo TRL defaults" "dpo ours"   # some configurations
    python bench/train_throughput.py --merge A.json B.json --out DIR   # one report of several runs
    python bench/train_throughput.py --tiny --out DIR   # CPU dry run: a tiny model in float32

Writes DIR/train_throughput_<date>_<device>.json and .md; copy them to bench/results/.
"""

import argparse
import datetime
import json
import math
import os
import re
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
OLD = dict(
    micro_batch_size=2, gradient_checkpointing=False, liger_kernel=False, sort_by_length=False, padding_free=False
)
CONFIGS = [
    ("dpo TRL defaults", "dpo", "trl", "realistic", {}),
    ("dpo ours", "dpo", "ours", "realistic", {}),
    ("sft TRL defaults", "sft", "trl", "realistic", {}),
    ("sft ours", "sft", "ours", "realistic", {}),
    ("dpo ours, padded", "dpo", "ours", "realistic", dict(padding_free=False)),
    ("dpo ours, all pairs 1024 tokens", "dpo", "ours", "full", {}),
    ("sft ours, all transcripts 3072 tokens", "sft", "ours", "full", {}),
    ("dpo ours, settings before issue 5", "dpo", "ours", "realistic", OLD),
    ("sft ours, settings before issue 5", "sft", "ours", "realistic", OLD),
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


# ---- one configuration, in its own process ------------------------------------------------------------


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


def build_model(tiny, cuda, vocab):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    shape = dict(TINY, vocab_size=vocab) if tiny else LLAMA_8B
    with torch.device("cuda" if cuda else "cpu"):
        return AutoModelForCausalLM.from_config(
            LlamaConfig(**shape), dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation="sdpa"
        )


def trl_default_trainer(stage, model, tokenizer, train, max_length, steps, out, cuda):
    from datasets import Dataset
    from octlib import training
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    common = dict(output_dir=out, max_steps=steps, max_length=max_length, report_to="none", save_strategy="no")
    # TRL's default micro-batch is 8, accumulated here to the global batch
    common.update(gradient_accumulation_steps=GLOBAL_BATCH // 8, bf16=cuda, use_cpu=not cuda)
    lora = training.lora_config(LORA)
    if stage == "dpo":

        class PretokenizedDPOTrainer(DPOTrainer):
            def _prepare_dataset(self, dataset, *args):
                return dataset

        config = DPOConfig(**common)
        return PretokenizedDPOTrainer(
            model, args=config, train_dataset=Dataset.from_list(train), processing_class=tokenizer, peft_config=lora
        )
    config = SFTConfig(**common, dataset_kwargs={"skip_prepare_dataset": True})
    return SFTTrainer(
        model, args=config, train_dataset=Dataset.from_list(train), processing_class=tokenizer, peft_config=lora
    )


def profiler_callback():
    import torch
    from transformers import TrainerCallback

    class Profiler(TrainerCallback):
        """Profiles the first measured step: the GPU's busy share of it and the ops that take the most time."""

        def __init__(self, warmup, cuda, result):
            self.warmup, self.cuda, self.result = warmup, cuda, result
            activities = [torch.profiler.ProfilerActivity.CPU] + (
                [torch.profiler.ProfilerActivity.CUDA] if cuda else []
            )
            self.profiler = torch.profiler.profile(activities=activities)

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == self.warmup:
                self.profiler.start()
                self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == self.warmup + 1:
                if self.cuda:
                    torch.cuda.synchronize()
                wall = time.perf_counter() - self.started
                self.profiler.stop()
                events = self.profiler.key_averages()
                kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
                busy = sum(e.self_device_time_total for e in kernels if not e.is_user_annotation) / 1e6
                self.result.update(profiled_step_s=wall, gpu_busy_s=busy)
                print(f"profiled step: {wall:.3f} s, GPU kernels {busy:.3f} s ({busy / wall:.0%} busy)")
                sort = "self_device_time_total" if self.cuda else "self_cpu_time_total"
                print(events.table(sort_by=sort, row_limit=15, max_name_column_width=60))

    return Profiler


def run_configuration(name, tiny, warmup, measured, memory_gb, profile, result):
    import torch
    import train_dpo
    import train_sft
    import yaml
    from octlib import training
    from transformers import TrainerCallback

    _, stage, kind, data, overrides = next(c for c in CONFIGS if c[0] == name)
    cuda = torch.cuda.is_available()
    steps = warmup + measured
    from octlib.validate import check

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    settings = check(config, ROOT / "rules/schemas/config.schema.yaml", "config.yaml")[stage]
    settings.update(LORA, seed=0, global_batch_size=GLOBAL_BATCH, max_steps=steps, **overrides)
    if tiny:
        settings["max_length"] = TINY_MAX_LENGTH[stage]
    max_length = settings["max_length"]
    tokenizer = word_tokenizer()
    train = examples(stage, tokenizer, GLOBAL_BATCH * steps, data, max_length)

    if cuda and memory_gb:  # plan for and stay within a smaller GPU's memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, memory_gb * 1e9 / training.gpu_memory()))
        training.gpu_memory = lambda: memory_gb * 1e9
    model = build_model(tiny, cuda, len(tokenizer))
    n_all = sum(p.numel() for p in model.parameters())
    n_matmul = n_all - model.get_input_embeddings().weight.numel()
    out = tempfile.mkdtemp()
    if kind == "ours":
        build = train_dpo.build_trainer if stage == "dpo" else train_sft.build_trainer
        trainer, _ = build(model, tokenizer, train, settings, out)
    else:
        trainer = trl_default_trainer(stage, model, tokenizer, train, max_length, steps, out, cuda)
    a = trainer.args
    assert a.per_device_train_batch_size * a.gradient_accumulation_steps == GLOBAL_BATCH
    result.update(
        micro_batch=a.per_device_train_batch_size,
        accumulation=a.gradient_accumulation_steps,
        gradient_checkpointing=a.gradient_checkpointing,
        liger=a.use_liger_kernel,
        sort_by_length=getattr(trainer, "sort_by_length", False),
        padding_free=isinstance(trainer.data_collator, training.PackRows),
        max_length=max_length,
        n_params=n_all,
        n_matmul_params=n_matmul,
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

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), *tokens.tolist()))

    trainer.add_callback(Clock())
    if profile:
        trainer.add_callback(profiler_callback()(warmup, cuda, result))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    (t0, useful0, padded0), (t1, useful1, padded1) = marks[warmup - 1], marks[-1]
    result.update(
        status="ok",
        measured_steps=len(marks) - warmup,
        seconds=t1 - t0,
        useful_tokens=useful1 - useful0,
        padded_tokens=padded1 - padded0,
    )
    if cuda:
        result.update(
            peak_allocated_gb=torch.cuda.max_memory_allocated() / 1e9,
            peak_reserved_gb=torch.cuda.max_memory_reserved() / 1e9,
        )


def worker(args):
    sys.path.insert(0, str(ROOT / "scripts"))
    result = {"name": args.worker}
    try:
        if args.worker == "peak":
            measure_peak(result)
        else:
            profile = args.profile == args.worker
            run_configuration(args.worker, args.tiny, args.warmup, args.measured, args.gpu_memory_gb, profile, result)
    except Exception as error:  # noqa: BLE001 - reported in the results, the next configuration still runs
        traceback.print_exc()
        oom = "OutOfMemoryError" in type(error).__name__ or "out of memory" in str(error)
        result["status"] = "OOM" if oom else f"error: {type(error).__name__}: {str(error)[:300]}"
    Path(args.result).write_text(json.dumps(result))


# ---- the whole run ----------------------------------------------------------------------------------------


def spawn(name, args, timeout, profile=False):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    command = [sys.executable, __file__, "--worker", name, "--result", path]
    command += ["--warmup", str(args.warmup), "--measured", str(args.measured)] + (["--tiny"] if args.tiny else [])
    command += ["--gpu-memory-gb", str(args.gpu_memory_gb)] if args.gpu_memory_gb else []
    command += ["--profile", name] if profile else []
    print(f"\n==== {name} ({datetime.datetime.now():%H:%M:%S})", flush=True)
    started = time.time()
    try:
        rc = subprocess.run(command, check=False, timeout=timeout).returncode
        result = json.loads(Path(path).read_text()) if Path(path).stat().st_size else {}
        result.setdefault("status", f"failed: exit {rc}")
    except subprocess.TimeoutExpired:
        result = {"status": f"timeout after {timeout:.0f} s"}
    result.update(name=name, wall_s=round(time.time() - started, 1))
    print(json.dumps(result), flush=True)
    return result


def summarise(result, stage, peak_tflops):
    """Throughput, model FLOP/s and MFU of one configuration (in place)."""
    if result.get("status") != "ok":
        return
    rate = result["useful_tokens"] / result["seconds"]
    # per useful token; LoRA computes no weight gradients of the frozen weights, so the backward pass is 2N
    strict = (6 if stage == "dpo" else 4) * result["n_matmul_params"]
    dense = (8 if stage == "dpo" else 6) * result["n_params"]
    result.update(
        tokens_per_s=rate,
        padding=1 - result["useful_tokens"] / result["padded_tokens"],
        model_tflops=rate * strict / 1e12,
    )
    if peak_tflops:
        result.update(mfu=rate * strict / 1e12 / peak_tflops, mfu_dense_count=rate * dense / 1e12 / peak_tflops)


FLOPS_NOTE = (
    "Useful tokens: the non-padding tokens of every row the model runs on (DPO: prompt + chosen and prompt + "
    "rejected). FLOPs per useful token, the MFU column: DPO 6N = policy forward 2N + backward 2N (LoRA computes "
    "input gradients through the frozen weights but no weight gradients for them) + reference forward 2N; "
    "SFT 4N; N = {n_matmul:.3g}, every weight matrix of the model but the input embedding table; attention "
    "scores and the LoRA matrices are not counted. The 'MFU, 6N+2N' column uses the usual dense count instead, "
    "DPO 6N + 2N = 8N and SFT 6N with N = {n_all:.3g}, all parameters, so it overstates the work of LoRA training "
    "by about a half (DPO) to two thirds (SFT). Peak: the best of 5 x 50 bf16 8192^3 torch.matmul in this run."
)


def markdown(report):
    rows = report["results"]
    some = next((r for r in rows if "n_params" in r), {})
    lines = [
        f"# Training throughput, {report['date']}, {report['device']}",
        "",
        f"`{report['command']}` (bench/train_throughput.py). {report['versions']}.",
        "",
        f"Model: {report['model']}; LoRA r64, alpha 128, all linear layers; global batch {GLOBAL_BATCH} examples "
        f"(DPO: pairs); {report['warmup']} warm-up and {report['measured']} measured optimiser steps per "
        f"configuration, each in its own process. Peak bf16 matmul measured in this run: "
        f"{report['peak_tflops']:.0f} TFLOP/s."
        if report["peak_tflops"]
        else "Peak: not measured (no GPU).",
        "",
        (
            f"GPU memory capped at {report['gpu_memory_gb']:.0f} GB (torch.cuda.set_per_process_memory_fraction), "
            "and the training code's auto choices planned for it."
            if report["gpu_memory_gb"]
            else ""
        ),
        "",
        f"Lengths: {report['lengths']}",
        "",
        FLOPS_NOTE.format(n_matmul=some.get("n_matmul_params", 0), n_all=some.get("n_params", 0)),
        "",
        (
            "| configuration | micro x accum | ckpt | Liger | sorted | packed | tokens/s | vs TRL | padding | MFU "
            "| MFU, 6N+2N | peak alloc. GB | status |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:

        def f(key, form, r=r):
            return form.format(r[key]) if key in r else "-"

        lines.append(
            f"| {r['name']} | {f('micro_batch', '{}')} x {f('accumulation', '{}')} | "
            f"{f('gradient_checkpointing', '{}')} | {f('liger', '{}')} | {f('sort_by_length', '{}')} | "
            f"{f('padding_free', '{}')} | "
            f"{f('tokens_per_s', '{:,.0f}')} | {f('speedup', '{:.2f}x')} | {f('padding', '{:.0%}')} | "
            f"{f('mfu', '{:.1%}')} | {f('mfu_dense_count', '{:.1%}')} | {f('peak_allocated_gb', '{:.1f}')} | "
            f"{r['status']} |"
        )
    lines += ["", "## Goals (issue 5)", ""] + [f"- {line}" for line in report["goals"]]
    lines += ["", "## GPU memory and runtime per training job", ""] + [f"- {line}" for line in report["guidance"]]
    return "\n".join(lines) + "\n"


def conclusions(report):
    by_name = {r["name"]: r for r in report["results"]}

    def rate(name):
        return by_name.get(name, {}).get("tokens_per_s")

    goals, guidance = [], []
    for stage, tokens_per_run in (("dpo", 6e6), ("sft", 8e6)):
        ours, trl = rate(f"{stage} ours"), rate(f"{stage} TRL defaults")
        if ours and trl:
            goals.append(
                f"{stage.upper()}: ours {ours:,.0f} tokens/s = {ours / trl:.2f}x TRL defaults ({trl:,.0f}); "
                "goal >= 1.5x."
            )
        full = next((r for r in report["results"] if r["name"].startswith(f"{stage} ours, all")), {})
        peak = max((r.get("peak_allocated_gb", 0) for r in (by_name.get(f"{stage} ours", {}), full)), default=0)
        if peak:
            goals.append(
                f"{stage.upper()} peak memory of ours: {peak:.1f} GB allocated (reserved "
                f"{full.get('peak_reserved_gb', 0):.1f} GB at full length); goal: fits an 80 GB H100."
            )
        if ours:
            hours = 33 * tokens_per_run / ours / 3600
            guidance.append(
                f"train_{stage}: one GPU of >= 80 GB; peak {peak:.0f} GB allocated with an 8B student at full "
                f"length; {tokens_per_run / 1e6:.0f}M tokens a run take {tokens_per_run / ours / 3600:.2f} h here "
                f"(TRL defaults: {tokens_per_run / trl / 3600:.2f} h); 33 runs (3 students x 11 personas): "
                f"{hours:.1f} GPU-hours, an upper bound for the 7B and 4B students."
                if trl
                else f"train_{stage}: {hours:.1f} GPU-hours for 33 runs."
            )
    dpo = by_name.get("dpo ours", {})
    if "mfu" in dpo:
        goals.append(
            f"DPO MFU of ours on useful tokens: {dpo['mfu']:.1%} (6N count; {dpo['mfu_dense_count']:.1%} "
            f"with 8N); goal >= 55%."
        )
    rates = [rate("dpo ours"), rate("sft ours")]
    if all(rates):
        total = 33 * 6e6 / rates[0] / 3600 + 33 * 8e6 / rates[1] / 3600
        guidance.append(
            f"All 66 training runs of the paper (about 6M tokens per DPO run, 8M per SFT run): "
            f"{total:.1f} GPU-hours on this GPU with our defaults."
        )
    report.update(goals=goals, guidance=guidance)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".", help="folder for the JSON and markdown results")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU, float32: a dry run")
    parser.add_argument("--warmup", type=int, default=3, help="optimiser steps before timing")
    parser.add_argument("--measured", type=int, default=5, help="optimiser steps timed")
    parser.add_argument("--budget", type=float, default=540, help="seconds; later configurations are skipped")
    parser.add_argument("--gpu-memory-gb", type=float, help="cap the GPU memory (80: an H100's) and plan for it")
    parser.add_argument("--profile", help="a configuration to run once more with torch.profiler on one step")
    parser.add_argument("--only", nargs="*", help="names of the configurations to run (default: all)")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="write one report of earlier runs' JSON files")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    if args.merge:  # runs split over several device calls (each under its time limit): one report
        reports = [json.loads(Path(path).read_text()) for path in args.merge]
        report = dict(reports[0], command="; ".join(r["command"] for r in reports))
        order = [name for name, *_ in CONFIGS]
        results = [result for r in reports for result in r["results"]]
        report["results"] = sorted(results, key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
        add_speedups(report["results"])
        return write(report, args.out)

    os.environ.update(PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    started = time.time()
    peak = {"device": "cpu"} if args.tiny else spawn("peak", args, 120)
    results = []
    for name, stage, *_ in CONFIGS:
        if args.only and name not in args.only:
            continue
        left = args.budget - (time.time() - started)
        if left < 40:
            results.append({"name": name, "status": "skipped: time budget"})
            continue
        result = spawn(name, args, left)
        summarise(result, stage, peak.get("peak_tflops"))
        results.append(result)
    if args.profile:
        result = spawn(args.profile, args, max(60, args.budget + 120 - (time.time() - started)), profile=True)
        busy = (
            f": GPU kernels {result['gpu_busy_s'] / result['profiled_step_s']:.0%} of a step"
            if "gpu_busy_s" in result
            else ""
        )
        results.append({**result, "name": f"{args.profile} (profiled, not timed)", "status": "profiled" + busy})
    add_speedups(results)

    import peft
    import torch
    import transformers
    import trl
    import yaml

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    max_length = TINY_MAX_LENGTH if args.tiny else {stage: config[stage]["max_length"] for stage in LENGTHS}
    date = datetime.date.today().isoformat()
    device = peak.get("device", "unknown")
    report = dict(
        date=date,
        device=device,
        command=shlex.join(["python", "bench/train_throughput.py"] + sys.argv[1:]),
        versions=f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
        f"peft {peft.__version__}",
        model="tiny Llama (CPU dry run)"
        if args.tiny
        else "Llama-3.1-8B shape (hidden 4096, 32 layers, 32 heads, "
        "8 KV heads, intermediate 14336, vocab 128256), random weights, bf16, SDPA attention",
        lengths="; ".join(
            f"{stage.upper()} max_length {max_length[stage]}: "
            f"prompt log-normal(median {p[0]}, sigma {p[1]}) clipped to [{p[2]}, {p[3]}], "
            f"{'chosen and rejected each' if stage == 'dpo' else 'target'} log-normal(median {r[0]}, sigma {r[1]}) "
            f"clipped so that the whole fits max_length"
            for stage, (p, r) in ((s, (v["prompt"], v["response"])) for s, v in LENGTHS.items())
        ),
        warmup=args.warmup,
        measured=args.measured,
        peak_tflops=peak.get("peak_tflops"),
        gpu_memory_gb=args.gpu_memory_gb,
        results=results,
    )
    write(report, args.out)


def add_speedups(results):
    for result in results:
        trl = next((r for r in results if r["name"] == result["name"][:3] + " TRL defaults"), {})
        if "tokens_per_s" in result and "tokens_per_s" in trl:
            result["speedup"] = result["tokens_per_s"] / trl["tokens_per_s"]


def write(report, folder):
    conclusions(report)
    slug = re.sub(r"[^a-z0-9]+", "-", report["device"].lower()).strip("-")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"train_throughput_{report['date']}_{slug}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print("\n" + markdown(report))


if __name__ == "__main__":
    main()
