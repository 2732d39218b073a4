"""Figures of trait Elo before and after character training (paper Figures 3, 4 and 9-17).

delta: one panel per (title, base Elo CSV, trained Elo CSV): the 5 traits whose score fell most and the 5
that rose most, bars of the new score with its 95% interval, each labelled with its change. distribution: one
panel per pair, density histograms of all trait scores before and after. Each figure is written as PDF (--out) and
PNG (--png).
"""

import argparse
import csv
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

plt.rcParams.update({"font.family": "serif", "pdf.fonttype": 42})


def read_elo(path):
    """{trait: (elo, ci_low, ci_high)}"""
    with open(path, newline="") as f:
        return {r["trait"]: (float(r["elo"]), float(r["ci_low"]), float(r["ci_high"])) for r in csv.DictReader(f)}


def scores(table):
    return {t: row[0] for t, row in table.items()}


def biggest_changes(base, new, n=5):
    """The n most negative then the n most positive changes among the traits both compared, as
    (trait, (new score, low, high), change)."""
    deltas = sorted((new[t][0] - base[t][0], t) for t in base if t in new)
    chosen = deltas[:n] + deltas[-n:] if len(deltas) > 2 * n else deltas
    return [(t, new[t], d) for d, t in chosen]


def plot_delta(panels, title, out, png):
    rows = [(name, biggest_changes(read_elo(b), read_elo(n))) for name, b, n in panels]
    low = min(lo for _, bars in rows for _, (_, lo, _), _ in bars)
    high = max(hi for _, bars in rows for _, (_, _, hi), _ in bars)
    width = max(5 * len(rows), 8)
    fig, axes = plt.subplots(1, len(rows), figsize=(width, 5.8), sharey=True, squeeze=False)
    for ax, (name, bars) in zip(axes[0], rows):
        colours = ["tab:red" if d < 0 else "tab:green" for _, _, d in bars]
        heights = [score for _, (score, _, _), _ in bars]
        errors = [[score - lo for _, (score, lo, _), _ in bars], [hi - score for _, (score, _, hi), _ in bars]]
        ax.bar(range(len(bars)), heights, color=colours, alpha=0.6, yerr=errors, capsize=3, ecolor="0.3")
        for x, (_, (_, _, hi), d) in enumerate(bars):
            ax.text(x, hi + 8, f"{d:+.0f}".replace("-", "\u2212"), ha="center", fontsize=10)
        ax.set_xticks(range(len(bars)), [t for t, _, _ in bars], rotation=30, ha="right", fontsize=12)
        ax.set_title(name, fontsize=16)
    axes[0][0].set_ylabel("Elo Score (New)", fontsize=13)
    axes[0][0].set_ylim(low - 40, high + 60)  # the scores sit near 1000: an axis from 0 would hide the changes
    legend = [
        Patch(color="tab:red", alpha=0.6, label="fell most"),
        Patch(color="tab:green", alpha=0.6, label="rose most"),
    ]
    axes[0][-1].legend(handles=legend, loc="upper right", fontsize=10)
    fig.suptitle(textwrap.fill(title, int(width * 7)), fontsize=14)
    note = "Bars: Elo after training, labelled with the change from before. Error bars: 95% bootstrap interval "
    note += "(judgements resampled with replacement)."
    fig.text(0.5, 0.005, textwrap.fill(note, int(width * 14)), ha="center", va="bottom", fontsize=9)
    save(fig, out, png, bottom=0.05)


def plot_distribution(panels, after_label, title, out, png):
    data = [(name, list(scores(read_elo(b)).values()), list(scores(read_elo(n)).values())) for name, b, n in panels]
    low = min(min(b + n) for _, b, n in data) - 100
    high = max(max(b + n) for _, b, n in data) + 100
    fig, axes = plt.subplots(1, len(data), figsize=(5 * len(data), 4), sharex=True, squeeze=False)
    for ax, (name, before, after) in zip(axes[0], data):
        ax.hist(
            before,
            bins=20,
            range=(low, high),
            density=True,
            alpha=0.5,
            color="tab:blue",
            label="Before Character Training",
        )
        ax.hist(after, bins=20, range=(low, high), density=True, alpha=0.5, color="tab:orange", label=after_label)
        ax.set_title(name, fontsize=14)
    axes[0][0].set_ylabel("Density")
    axes[0][0].legend(fontsize=9)
    fig.supxlabel("Character Trait Elo Score")
    fig.suptitle(textwrap.fill(title, int(5 * len(data) * 8)), fontsize=13)
    save(fig, out, png)


def save(fig, out, png, bottom=0.0):
    out, png = Path(out), Path(png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    for path in (out, png):
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=200)
        tmp.replace(path)
    print(f"figure written to {out} and {png}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["delta", "distribution"])
    parser.add_argument("--panel", nargs=3, action="append", required=True, metavar=("TITLE", "BASE_CSV", "NEW_CSV"))
    parser.add_argument("--after-label", default="After Character Training")
    parser.add_argument("--title", required=True, help="what the figure shows: persona, condition")
    parser.add_argument("--out", required=True, help="the PDF")
    parser.add_argument("--png", required=True, help="the same figure as PNG")
    args = parser.parse_args()
    if args.kind == "delta":
        plot_delta(args.panel, args.title, args.out, args.png)
    else:
        plot_distribution(args.panel, args.after_label, args.title, args.out, args.png)


if __name__ == "__main__":
    main()
