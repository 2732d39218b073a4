"""Figures of trait Elo before and after character training (paper Figures 3, 4 and 9-17; reference.md §3).

delta: one panel per (title, base Elo CSV, trained Elo CSV): the 5 traits whose score fell most and the 5
that rose most, bars of the new score, each labelled with its change. distribution: one panel per pair,
density histograms of all trait scores before and after. Each figure is written as PDF and PNG.
"""

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"font.family": "serif", "pdf.fonttype": 42})


def read_elo(path):
    with open(path, newline="") as f:
        return {row["trait"]: float(row["elo"]) for row in csv.DictReader(f)}


def biggest_changes(base, new, n=5):
    """The n most negative then the n most positive changes, as (trait, new score, change)."""
    deltas = sorted(((new[t] - base[t], t) for t in base if t in new))
    chosen = deltas[:n] + deltas[-n:] if len(deltas) > 2 * n else deltas
    return [(t, new[t], d) for d, t in chosen]


def plot_delta(panels, out):
    rows = [(title, biggest_changes(read_elo(b), read_elo(n))) for title, b, n in panels]
    top = max(score for _, bars in rows for _, score, _ in bars)
    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 5), sharey=True, squeeze=False)
    for ax, (title, bars) in zip(axes[0], rows):
        colours = ["tab:red" if d < 0 else "tab:green" for _, _, d in bars]
        ax.bar(range(len(bars)), [s for _, s, _ in bars], color=colours, alpha=0.6)
        for x, (_, score, d) in enumerate(bars):
            ax.text(x, score + 15, f"{d:+.0f}".replace("-", "\u2212"), ha="center", fontsize=10)
        ax.set_xticks(range(len(bars)), [t for t, _, _ in bars], rotation=30, ha="right", fontsize=12)
        ax.set_title(title, fontsize=16)
    axes[0][0].set_ylabel("Elo Score (New)", fontsize=13)
    axes[0][0].set_ylim(top=top + 120)
    save(fig, out)


def plot_distribution(panels, after_label, out):
    data = [(title, list(read_elo(b).values()), list(read_elo(n).values())) for title, b, n in panels]
    low = min(min(b + n) for _, b, n in data) - 100
    high = max(max(b + n) for _, b, n in data) + 100
    fig, axes = plt.subplots(1, len(data), figsize=(5 * len(data), 4), sharex=True, squeeze=False)
    for ax, (title, before, after) in zip(axes[0], data):
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
        ax.set_title(title, fontsize=14)
    axes[0][0].set_ylabel("Density")
    axes[0][0].legend(fontsize=9)
    fig.supxlabel("Character Trait Elo Score")
    save(fig, out)


def save(fig, out):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    for path in (out, out.with_suffix(".png")):
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=200)
        tmp.replace(path)
    print(f"figure written to {out} and {out.with_suffix('.png')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["delta", "distribution"])
    parser.add_argument("--panel", nargs=3, action="append", required=True, metavar=("TITLE", "BASE_CSV", "NEW_CSV"))
    parser.add_argument("--after-label", default="After Character Training")
    parser.add_argument("--out", required=True, help="PDF path; a PNG is written beside it")
    args = parser.parse_args()
    if args.kind == "delta":
        plot_delta(args.panel, args.out)
    else:
        plot_distribution(args.panel, args.after_label, args.out)


if __name__ == "__main__":
    main()
