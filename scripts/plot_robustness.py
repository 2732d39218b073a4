"""Robustness to "break character" instructions (paper §4, Figure 5; ref character/robustness/classify/
save_classifier_evaluation.py, view_classifier.ipynb): macro-F1 of the persona classifier per student, method
and split, and Figure 5.

F1 is sklearn's f1_score(average="macro") with its default labels, those present among the true or predicted
personas of the split, as the reference's evaluate.load("f1") computes it. Per (student, method): the mean and
standard error of the mean over the adversarial splits (the paper's bars), the F1 of the default split (in the
classifier's training data, as in the reference) and of its held-out questions (ours, out of sample).
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from octlib.io import read_jsonl, write_csv  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

LABELS = {
    "prompted": "System Prompt",
    "steered": "Activation Steering",
    "distilled": "Distill",
    "trained": "Distill+Introspect",
}

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument(
    "--student", nargs=3, action="append", required=True, metavar=("MODEL", "PREDICTIONS", "CLASSIFIER")
)
parser.add_argument("--methods", nargs="+", required=True)
parser.add_argument("--adversarial", nargs="+", required=True, help="the break-character splits")
parser.add_argument("--table", required=True)
parser.add_argument("--splits-table", required=True)
parser.add_argument("--figure", required=True, help="PDF; a PNG is written beside it")
args = parser.parse_args()


def scores(rows):
    truth, predicted = [r["persona"] for r in rows], [r["predicted"] for r in rows]
    return f1_score(truth, predicted, average="macro"), accuracy_score(truth, predicted), len(rows)


summary, per_split, personas = [], [], set()
for model, predictions, classifier in args.student:
    rows = read_jsonl(predictions)
    personas |= {r["persona"] for r in rows}
    held_out = set(json.loads((Path(classifier) / "held_out.json").read_text()))
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        groups = {split: [r for r in mine if r["split"] == split] for split in ["default", *args.adversarial]}
        groups["held_out"] = [r for r in groups["default"] if r["question"] in held_out]
        result = {}
        for split, group in groups.items():
            if not group:
                raise SystemExit(f"{predictions}: no {method} response of split {split!r}")
            result[split] = scores(group)
            per_split.append(
                {
                    "model": model,
                    "method": method,
                    "split": split,
                    "f1": result[split][0],
                    "accuracy": result[split][1],
                    "responses": result[split][2],
                }
            )
        f1 = np.array([result[s][0] for s in args.adversarial])
        summary.append(
            {
                "model": model,
                "method": method,
                "label": LABELS.get(method, method),
                "f1_mean": f1.mean(),
                "f1_sem": f1.std(ddof=1) / np.sqrt(len(f1)) if len(f1) > 1 else 0.0,
                "adversarial_splits": len(f1),
                "f1_default_in_sample": result["default"][0],
                "f1_held_out": result["held_out"][0],
                "held_out_responses": result["held_out"][2],
            }
        )


def write(path, table):
    write_csv(path, ({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in table))


write(args.table, summary)
write(args.splits_table, per_split)

models = [m for m, _, _ in args.student]
colours = ["steelblue", "crimson", "forestgreen", "darkorange", "purple"]
width = 0.8 / len(models)
x = np.arange(len(args.methods))
fig, ax = plt.subplots(figsize=(1.8 * len(args.methods) + 2, 4))
for i, model in enumerate(models):
    mine = {r["method"]: r for r in summary if r["model"] == model}
    ax.bar(
        x + (i - (len(models) - 1) / 2) * width,
        [mine[m]["f1_mean"] for m in args.methods],
        width,
        yerr=[mine[m]["f1_sem"] for m in args.methods],
        capsize=5,
        color=colours[i % len(colours)],
        alpha=0.7,
        label=model,
    )
ax.axhline(1 / len(personas), color="grey", linestyle="--", linewidth=1, label=f"chance (1/{len(personas)} personas)")
ax.set_xticks(x, [LABELS.get(m, m) for m in args.methods])
ax.set_ylim(0, 1.05)
ax.set_ylabel("macro-F1 of the persona classifier (mean ± SE)")
ax.set_xlabel("method")
ax.set_title(f"Robustness to {len(args.adversarial)} break-character instructions (Figure 5)")
ax.legend(title="student")
fig.tight_layout()
Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
fig.savefig(args.figure)
fig.savefig(Path(args.figure).with_suffix(".png"), dpi=150)
print(f"{len(summary)} method rows -> {args.table}, {args.figure}")
