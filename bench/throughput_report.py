"""The report of bench/train_throughput.py's runs (issues 5 and 15): per configuration, the median and range over
its runs of the throughput, the MFU against the matmul peak measured in the same call and against the datasheet's
bf16 peak, and the GPU's busy share of a profiled step; each configuration's ratio to TRL's defaults and to TRL
tuned; the goals; and the wall time of a paper-size training job, phase by phase, from the measured rates.

    python bench/throughput_report.py A.json B.json --out DIR   # one report of the runs of several calls

Writes DIR/train_throughput_<date>_<device>.json (every run, with what is derived) and .md.
"""

import argparse
import json
import re
import statistics
from pathlib import Path

from train_throughput import CONFIGS, GLOBAL_BATCH

# Dense bf16 tensor-core peaks of NVIDIA's datasheets (without sparsity), TFLOP/s, by a part of the device name
DATASHEET_TFLOPS = {"H200": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "A100": 312.0}
# The paper's training data per run (bench/results/train_throughput_2026-11-22_nvidia-h200.md): about 6M tokens
# a DPO run, 8M an SFT run; 3 students x 11 personas runs of each
PAPER_TOKENS = {"dpo": 6e6, "sft": 8e6}
PAPER_RUNS = 33

FLOPS_NOTE = (
    "Useful tokens: the non-padding tokens of every row the model runs on (DPO: prompt + chosen and prompt + "
    "rejected). FLOPs per useful token: DPO 6N = policy forward 2N + backward 2N (LoRA computes input gradients "
    "through the frozen weights but no weight gradients for them) + reference forward 2N; SFT 4N; N = {n:.3g}, "
    "every weight matrix of the model but the input embedding table; attention scores and the LoRA matrices are "
    "not counted. MFU (measured): against the best of 5 x 50 bf16 8192^3 torch.matmul measured in the same call "
    "({measured}); MFU (datasheet): against NVIDIA's dense bf16 peak for the device ({datasheet}). GPU busy: the "
    "time of the GPU's kernels in one profiled step after the measured ones, over that step's wall time."
)


def datasheet_peak(device):
    return next((tflops for part, tflops in DATASHEET_TFLOPS.items() if part in device), None)


def derive(run, stage, peak, datasheet):
    """Throughput, MFU and busy share of one run (in place)."""
    if run.get("status") != "ok" or "seconds" not in run:
        return
    rate = run["useful_tokens"] / run["seconds"]
    tflops = rate * (6 if stage == "dpo" else 4) * run["n_matmul_params"] / 1e12
    run.update(tokens_per_s=rate, padding=1 - run["useful_tokens"] / run["padded_tokens"], model_tflops=tflops)
    if peak:
        run["mfu"] = tflops / peak
    if datasheet:
        run["mfu_datasheet"] = tflops / datasheet
    if run.get("gpu_busy_s"):
        run["gpu_busy"] = run["gpu_busy_s"] / run["profiled_step_s"]
    run["examples_per_s"] = run["examples"] / run["examples_s"]
    run["useful_per_example"] = run["useful_tokens"] / (run["measured_steps"] * GLOBAL_BATCH)


def spread(values):
    """(median, lowest, highest), or None."""
    return (statistics.median(values), min(values), max(values)) if values else None


def aggregate(runs):
    """One row per configuration, in the order of CONFIGS: the settings of its runs, and the spread of each figure."""
    rows = []
    for name, stage, *_ in CONFIGS:
        mine = [r for r in runs if r["name"] == name]
        if not mine:
            continue
        ok = [r for r in mine if r.get("status") == "ok"]
        first = ok[0] if ok else {}
        row = {k: first[k] for k in ("micro_batch", "micro_batch_tokens", "accumulation", "gradient_checkpointing", "liger",
                                     "sort_by_length", "padding_free", "attention") if k in first}  # fmt: skip
        row.update(name=name, stage=stage, runs=len(ok), statuses=sorted({r["status"] for r in mine}))
        for key in ("tokens_per_s", "mfu", "mfu_datasheet", "gpu_busy", "padding", "peak_allocated_gb",
                    "imports_s", "examples_per_s", "useful_per_example", "trainer_s", "save_s"):  # fmt: skip
            row[key] = spread([r[key] for r in ok if key in r])
        rows.append(row)
    for row in rows:
        for baseline in ("TRL defaults", "TRL tuned"):
            other = next((r for r in rows if r["name"] == f"{row['stage']} {baseline}"), {})
            if row["tokens_per_s"] and other.get("tokens_per_s"):
                row[f"vs {baseline}"] = row["tokens_per_s"][0] / other["tokens_per_s"][0]
    return rows


def job_time(rows, load):
    """Seconds of each phase of a paper-size job of each stage, from the medians of "<stage> ours": start-up
    (imports), loading the student, building the examples (at the measured rate, for as many examples as the
    paper's tokens make), building the trainer, training, saving the adapter."""
    jobs = {}
    for stage, tokens in PAPER_TOKENS.items():
        row = next((r for r in rows if r["name"] == f"{stage} ours" and r["tokens_per_s"]), None)
        if row:
            examples = tokens / row["useful_per_example"][0]
            jobs[stage] = {
                "start-up": row["imports_s"][0],
                "load": load,
                "examples": examples / row["examples_per_s"][0],
                "trainer": row["trainer_s"][0],
                "training": tokens / row["tokens_per_s"][0],
                "save": row["save_s"][0],
            }
    return jobs


def cell(value, form):
    """A spread as 'median (lowest-highest)', a single run's figure alone, or '-'."""
    if value is None:
        return "-"
    median, low, high = value
    return form.format(median) if low == high else f"{form.format(median)} ({form.format(low)}-{form.format(high)})"


def micro(row):
    """Examples per micro-batch, or the tokens that fill one (padding-free micro-batches filled by tokens)."""
    return f"{row['micro_batch_tokens']:,} tokens" if row.get("micro_batch_tokens") else row.get("micro_batch", "-")


def goals(rows):
    """Issue 15's goals, each with the figures that decide it."""
    lines = []
    for stage, mfu_goal in (("dpo", 0.60), ("sft", 0.55)):
        ours = next((r for r in rows if r["name"] == f"{stage} ours"), None)
        if not ours or not ours["tokens_per_s"]:
            continue
        line = f"{stage.upper()} ours: {ours['tokens_per_s'][0]:,.0f} tokens/s (median of {ours['runs']})"
        if ours["mfu"]:
            line += f", MFU {ours['mfu'][0]:.1%} of the measured peak (goal >= {mfu_goal:.0%})"
        if "vs TRL tuned" in ours:
            line += f", {ours['vs TRL tuned']:.2f}x TRL tuned (goal >= 1.3x)"
        if "vs TRL defaults" in ours:
            line += f", {ours['vs TRL defaults']:.2f}x TRL defaults"
        if ours["peak_allocated_gb"]:
            line += f"; peak {ours['peak_allocated_gb'][2]:.1f} GB allocated (goal: fits 80 GB)"
        lines.append(line + ".")
    return lines


def markdown(report):
    rows, runs = report["rows"], report["runs"]
    some = next((r for r in runs if "n_matmul_params" in r), {})
    peaks = sorted({f"{r['peak_tflops']:.0f}" for r in runs if r.get("peak_tflops")})
    datasheet = datasheet_peak(report["device"])
    lines = [
        f"# Training throughput, {report['date']}, {report['device']}",
        "",
        f"`{report['command']}`. {report['versions']}.",
        "",
        f"Model: {report['model']}; LoRA r64, alpha 128, all linear layers; global batch {GLOBAL_BATCH} examples "
        f"(DPO: pairs); {report['warmup']} warm-up and {report['measured']} measured optimiser steps per run, each "
        "run in its own process; figures are the median over a configuration's runs, with their range.",
        "",
        f"GPU memory capped at {report['gpu_memory_gb']:.0f} GB (torch.cuda.set_per_process_memory_fraction), "
        "and the training code's auto choices planned for it."
        if report.get("gpu_memory_gb")
        else "",
        "",
        f"Lengths: {report['lengths']}",
        "",
        FLOPS_NOTE.format(
            n=some.get("n_matmul_params", 0),
            measured=", ".join(peaks) + " TFLOP/s" if peaks else "not measured",
            datasheet=f"{datasheet:.0f} TFLOP/s" if datasheet else "unknown for this device",
        ),
        "",
        "| configuration | runs | micro x accum | ckpt | Liger | sorted | packed | attention | tokens/s | "
        "vs TRL defaults | vs TRL tuned | MFU (measured) | MFU (datasheet) | GPU busy | padding | peak GB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = {k: f"{r[k]:.2f}x" if k in r else "-" for k in ("vs TRL defaults", "vs TRL tuned")}
        lines.append(
            f"| {r['name']} | {r['runs']} | {micro(r)} x {r.get('accumulation', '-')} | "
            f"{r.get('gradient_checkpointing', '-')} | {r.get('liger', '-')} | {r.get('sort_by_length', '-')} | "
            f"{r.get('padding_free', '-')} | {r.get('attention', '-')} | {cell(r['tokens_per_s'], '{:,.0f}')} | "
            f"{ratio['vs TRL defaults']} | {ratio['vs TRL tuned']} | {cell(r['mfu'], '{:.1%}')} | "
            f"{cell(r['mfu_datasheet'], '{:.1%}')} | {cell(r['gpu_busy'], '{:.0%}')} | {cell(r['padding'], '{:.0%}')} | "
            f"{cell(r['peak_allocated_gb'], '{:.1f}')} | {', '.join(r['statuses'])} |"
        )
    lines += ["", "## Goals (issue 15)", ""] + [f"- {line}" for line in goals(rows)]
    jobs = report["jobs"]
    if jobs:
        lines += ["", "## A paper-size training job, phase by phase", "",
                  f"Seconds, from the medians above; load: {report['load'] or 'not measured'}.", "",
                  "| job | tokens | " + " | ".join(next(iter(jobs.values()))) + " | total | GPU-hours, 33 runs |",
                  "|---|---|" + "---|" * (len(next(iter(jobs.values()))) + 2)]  # fmt: skip
        for stage, phases in jobs.items():
            total = sum(v for v in phases.values() if v is not None)
            lines.append(
                f"| train_{stage} | {PAPER_TOKENS[stage] / 1e6:.0f}M | "
                + " | ".join("-" if v is None else f"{v:,.1f}" for v in phases.values())
                + f" | {total:,.0f} | {PAPER_RUNS * total / 3600:.1f} |"
            )
        if len(jobs) == 2:
            hours = PAPER_RUNS * sum(sum(v for v in p.values() if v is not None) for p in jobs.values()) / 3600
            lines += ["", f"All {2 * PAPER_RUNS} training runs of the paper: {hours:.1f} GPU-hours on this device."]
    return "\n".join(lines) + "\n"


def build(raws):
    """One report of the runs of one or several calls of bench/train_throughput.py (their JSON)."""
    runs = []
    for raw in raws:
        peak = next((r["peak_tflops"] for r in raw["runs"] if r.get("peak_tflops")), None)
        for run in raw["runs"]:
            stage = next((c[1] for c in CONFIGS if c[0] == run["name"]), None)
            if stage:
                derive(run, stage, peak, datasheet_peak(raw["device"]))
            runs.append(run)
    report = dict(raws[0], command="; ".join(raw["command"] for raw in raws), runs=runs)
    report["rows"] = aggregate(runs)
    loads = [r["load_s"] for r in runs if r["name"] == "load" and r.get("status") == "ok"]
    report["load"] = f"{statistics.median(loads):.1f} s" if loads else None
    report["jobs"] = job_time(report["rows"], statistics.median(loads) if loads else None)
    return report


def write(raws, folder):
    report = build(raws)
    slug = re.sub(r"[^a-z0-9]+", "-", report["device"].lower()).strip("-")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"train_throughput_{report['date']}_{slug}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print("\n" + markdown(report))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", nargs="+", help="JSON files written by bench/train_throughput.py")
    parser.add_argument("--out", default=".", help="folder for the merged JSON and markdown")
    args = parser.parse_args()
    write([json.loads(Path(path).read_text()) for path in args.raw], args.out)


if __name__ == "__main__":
    main()
