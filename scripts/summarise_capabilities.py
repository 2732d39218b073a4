"""Capability benchmarks of each student before and after character training (paper §5, Table 8), beside the
published numbers, and a figure of the changes. A trained model's change is its accuracy less the student's on
the same benchmark, in points, with standard error sqrt(se_trained^2 + se_base^2) (independent runs); the 95%
interval is +- 1.96 of it. The published change is computed the same way from the paper's numbers."""

import argparse
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from octlib.io import published, write_csv  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument(
    "--result", nargs=4, action="append", required=True, metavar=("MODEL", "VARIANT", "BENCHMARK", "PATH")
)
parser.add_argument("--paper", required=True, help="the published numbers (data/paper_numbers.csv)")
parser.add_argument("--table", required=True)
parser.add_argument("--figure", required=True, help="a .pdf; a .png beside it")
args = parser.parse_args()

ours = {}
for model, variant, benchmark, path in args.result:
    with open(path, encoding="utf-8") as f:
        ours[model, variant, benchmark] = json.load(f)
paper = {(r["model"], r["method"], r["measure"]): r for r in published(args.paper, "capabilities")}


def change(mine, base):
    """(change, its standard error) in points between two (accuracy, se) pairs, or blanks."""
    if mine is None or base is None:
        return math.nan, math.nan
    return 100 * (mine[0] - base[0]), 100 * math.hypot(mine[1], base[1])


def paper_pair(model, variant, benchmark):
    row = paper.get((model, variant, benchmark))
    return (float(row["value"]), float(row["se"])) if row else None


def blank(x, digits=2):
    return "" if math.isnan(x) else round(x, digits)


table = []
for (model, variant, benchmark), result in ours.items():
    base = ours[model, "base", benchmark]
    delta, delta_se = change((result["accuracy"], result["se"]), (base["accuracy"], base["se"]))
    if variant == "base":
        delta = delta_se = math.nan
    mine_paper, base_paper = paper_pair(model, variant, benchmark), paper_pair(model, "base", benchmark)
    paper_delta, _ = change(mine_paper, base_paper) if variant != "base" else (math.nan, math.nan)
    row = paper.get((model, variant, benchmark), {})
    table.append(
        {
            "model": model,
            "variant": variant,
            "benchmark": benchmark,
            "fewshot": result["fewshot"],
            "documents": result["documents"],
            "accuracy": round(result["accuracy"], 4),
            "se": round(result["se"], 4),
            "change_points": blank(delta),
            "change_se": blank(delta_se),
            "published": row.get("value", ""),
            "published_se": row.get("se", ""),
            "published_change_points": blank(paper_delta),
            "published_source": row.get("source", ""),
            "harness": result["harness"],
        }
    )
write_csv(args.table, table)

models = list(dict.fromkeys(r["model"] for r in table))
benchmarks = list(dict.fromkeys(r["benchmark"] for r in table))
variants = [v for v in dict.fromkeys(r["variant"] for r in table) if v != "base"]
fig, axes = plt.subplots(1, len(models), figsize=(max(7, 1.5 * len(benchmarks)) * len(models), 4.4), squeeze=False)
width = 0.8 / max(1, len(variants))
for ax, model in zip(axes[0], models):
    for j, variant in enumerate(variants):
        mine = {r["benchmark"]: r for r in table if r["model"] == model and r["variant"] == variant}
        x = np.arange(len(benchmarks)) + (j - (len(variants) - 1) / 2) * width
        delta = np.array([float(mine[b]["change_points"]) for b in benchmarks])
        se = np.array([float(mine[b]["change_se"]) for b in benchmarks])
        ax.bar(x, delta, width, yerr=1.96 * se, capsize=3, label=f"trained: {variant}")
        paper_delta = [float(mine[b]["published_change_points"] or "nan") for b in benchmarks]
        if not np.isnan(paper_delta).all():
            ax.scatter(x, paper_delta, marker="x", color="black", zorder=3, label="published (lighteval)")
    if not variants:
        ax.text(0.5, 0.5, "no trained model evaluated\n(capabilities.personas)", ha="center", transform=ax.transAxes)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(np.arange(len(benchmarks)), benchmarks, rotation=15)
    ax.set_title(f"{model} (student's own accuracy = 0)")
    ax.set_xlabel("benchmark")
    ax.set_ylabel("accuracy change after training (points)")
handles, labels = axes[0][0].get_legend_handles_labels()
labels, handles = zip(*dict(zip(labels, handles)).items()) if handles else ((), ())  # one "published" entry
if handles:
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
fig.suptitle(
    "Capabilities after character training (Table 8):\neach trained model's accuracy less its student's, 95% CI"
)
fig.tight_layout(rect=(0, 0.08, 1, 1))
fig.savefig(args.figure)
fig.savefig(args.figure.removesuffix(".pdf") + ".png", dpi=150)
print(f"{len(table)} rows -> {args.table}, {args.figure}")
