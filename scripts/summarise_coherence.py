"""Coherence win rates of the trained model (paper §4, Tables 2, 6, 7; ref character/coherence/
coherence_results.ipynb) per judge, student and compared method, beside the published numbers, and a figure.

A pair counts when the judge's verdicts agree across both orders (judge_coherence.py); the win rate is the
share of those the trained model wins, in %. --statistic personas (the code's): each persona's win rate, then
their mean and standard error over personas. prompts (the paper's): one rate over every counted pair of every
persona, with the binomial standard error over pairs. The 95% interval is the rate +- 1.96 standard errors,
within [0, 100].
"""

import argparse
import math
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from octlib.io import published, read_jsonl, write_csv  # noqa: E402

TABLES = {"steered": "Table 2", "prompted": "Table 6", "distilled": "Table 7"}
LABELS = {"steered": "vs activation steering", "prompted": "vs system prompt", "distilled": "vs distillation only"}


def rate(judged, statistic):
    """(win rate %, standard error %) of one judge, student and method; judged: {persona: rows}."""
    if statistic == "personas":
        rates = []
        for rows in judged.values():
            kept = [r for r in rows if r["outcome"] in ("first", "second")]
            if kept:
                rates.append(100 * sum(r["outcome"] == "second" for r in kept) / len(kept))
        if not rates:
            return math.nan, math.nan
        se = float(np.std(rates, ddof=1) / math.sqrt(len(rates))) if len(rates) > 1 else math.nan
        return float(np.mean(rates)), se
    kept = [r for rows in judged.values() for r in rows if r["outcome"] in ("first", "second")]
    if not kept:
        return math.nan, math.nan
    p = sum(r["outcome"] == "second" for r in kept) / len(kept)
    return 100 * p, 100 * math.sqrt(p * (1 - p) / len(kept))


def number(x):
    """Rounded for the table; empty where there is none (no counted pair, or one persona for its SE)."""
    return "" if math.isnan(x) else round(x, 2)


def value(row, key):
    return float(row[key]) if row and row[key] != "" else math.nan


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--judged", nargs=5, action="append", required=True, metavar=("JUDGE", "MODEL", "METHOD", "PERSONA", "PATH")
    )
    parser.add_argument("--statistic", choices=["personas", "prompts"], required=True)
    parser.add_argument("--paper", required=True, help="the published numbers (data/paper_numbers.csv)")
    parser.add_argument("--table", required=True)
    parser.add_argument("--figure", required=True, help="PDF; a PNG is written beside it")
    args = parser.parse_args()

    groups = defaultdict(dict)
    for judge, model, method, persona, path in args.judged:
        groups[judge, model, method][persona] = read_jsonl(path)
    paper = {(r["judge"], r["model"], r["method"]): r for r in published(args.paper, "coherence")}

    table = []
    for (judge, model, method), judged in groups.items():
        win, se = rate(judged, args.statistic)
        rows = [r for rows in judged.values() for r in rows]
        paper_row = paper.get((judge, model, method), {})
        table.append(
            {
                "judge": judge,
                "model": model,
                "comparison": method,
                "paper_table": TABLES.get(method, ""),
                "win_rate": number(win),
                "se": number(se),
                "ci_low": number(float(np.clip(win - 1.96 * se, 0, 100))),
                "ci_high": number(float(np.clip(win + 1.96 * se, 0, 100))),
                "statistic": args.statistic,
                "personas": len(judged),
                "pairs": len(rows),
                "counted": sum(r["outcome"] in ("first", "second") for r in rows),
                "inconsistent": sum(r["outcome"] == "inconsistent" for r in rows),
                "invalid": sum(r["outcome"] == "invalid" for r in rows),
                "published": paper_row.get("value", ""),
                "published_se": paper_row.get("se", ""),
                "published_source": paper_row.get("source", ""),
            }
        )
    write_csv(args.table, table)

    methods = list(dict.fromkeys(r["comparison"] for r in table))
    models = list(dict.fromkeys(r["model"] for r in table))
    judges = list(dict.fromkeys(r["judge"] for r in table))
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.8), sharey=True, squeeze=False)
    width = 0.8 / len(judges)
    for ax, method in zip(axes[0], methods):
        for j, judge in enumerate(judges):
            mine = {r["model"]: r for r in table if r["comparison"] == method and r["judge"] == judge}
            x = np.arange(len(models)) + (j - (len(judges) - 1) / 2) * width
            win, low, high = (
                np.array([value(mine.get(m), k) for m in models]) for k in ("win_rate", "ci_low", "ci_high")
            )
            errors = np.nan_to_num(np.vstack([win - low, high - win]))
            ax.bar(x, np.nan_to_num(win), width, yerr=errors, capsize=3, label=f"judge {judge}")
            for xi, w, m in zip(x, win, models):
                if m in mine and np.isnan(w):  # judged, but no pair counted
                    ax.text(xi, 2, "no consistent\nverdict", ha="center", va="bottom", fontsize=7, rotation=90)
            paper_values = [value(mine.get(m), "published") for m in models]
            ax.scatter(x, paper_values, marker="x", color="black", zorder=3, label="published" if j == 0 else None)
        ax.axhline(50, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(np.arange(len(models)), models, rotation=15)
        ax.set_title(f"{LABELS.get(method, method)} ({TABLES.get(method, '')})")
        ax.set_ylim(0, 100)
        ax.set_xlabel("student")
    axes[0][0].set_ylabel("trained model's win rate (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()  # every panel has the same judges
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    error = "SE over personas" if args.statistic == "personas" else "SE over prompts"
    fig.suptitle(f"Coherence: how often the judge prefers the character-trained model (95% CI from {error})")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(args.figure)
    fig.savefig(args.figure.removesuffix(".pdf") + ".png", dpi=150)
    print(f"{len(table)} win rates -> {args.table}, {args.figure}")


if __name__ == "__main__":
    main()
