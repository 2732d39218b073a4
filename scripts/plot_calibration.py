"""The steering coefficient sweep of one student and persona (scripts/calibrate_steering.py): the persona score
and the perplexity ratio per coefficient, the coherence limit, and the coefficient chosen."""

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--sweep", required=True)
parser.add_argument("--max-perplexity-ratio", type=float, required=True)
parser.add_argument("--title", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(args.sweep))]
unsteered, steered = rows[0], rows[1:]
chosen = next(r for r in rows if r["chosen"])
x = [r["coefficient"] for r in steered]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
left.errorbar(x, [r["persona"] for r in steered], yerr=[r["persona_sem"] for r in steered], marker="o", capsize=4,
              label="steered (mean ± SE over answers)")  # fmt: skip
left.axhline(unsteered["persona"], color="grey", linestyle=":", label="unsteered")
left.set_title("persona expression")
left.set_ylabel("persona score (nats/token, prompted - plain)")
right.plot(x, [r["perplexity_ratio"] for r in steered], marker="o", label="steered")
right.axhline(args.max_perplexity_ratio, color="crimson", linestyle="--", label="coherence limit")
right.set_title("coherence (perplexity under the unsteered student)")
right.set_ylabel("perplexity ratio to unsteered answers")
for ax, key in ((left, "persona"), (right, "perplexity_ratio")):
    ax.plot([chosen["coefficient"]], [chosen[key]], marker="*", markersize=16, color="gold", markeredgecolor="black",
            linestyle="none", label=f"chosen: {chosen['coefficient']:.3g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("steering coefficient")
    ax.legend(fontsize=8)
fig.suptitle(args.title)
fig.tight_layout()
fig.savefig(args.out, dpi=150)
print(f"{len(steered)} coefficients -> {args.out}")
