"""Tables of trait Elo before and after character training for one persona (paper §5): every trait's score,
interval and change per model and condition, and the Spearman rank correlations between the models' trait
rankings before and after training (the paper's 0.44 -> 0.87), plus each model's before/after correlation."""

import argparse
import csv
import itertools
from pathlib import Path

from octlib import elo

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--entry", nargs=4, action="append", required=True, metavar=("MODEL", "CONDITION", "BASE", "NEW"))
parser.add_argument("--elo-table", required=True)
parser.add_argument("--spearman-table", required=True)
args = parser.parse_args()


def read(path):
    with open(path, newline="") as f:
        return {row["trait"]: row for row in csv.DictReader(f)}


def write(path, header, rows):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    tmp.replace(path)


tables = {(m, c): (read(b), read(n)) for m, c, b, n in args.entry}
rows = []
for (model, condition), (base, new) in tables.items():
    rate_b, rate_n = (next(iter(t.values()))["invalid_rate"] for t in (base, new))
    for trait in dict.fromkeys([*base, *new]):  # a trait one of them never compared has blanks there
        b, n = base.get(trait, {}), new.get(trait, {})
        change = round(float(n["elo"]) - float(b["elo"]), 2) if b and n else ""
        rows.append(
            [model, condition, trait]
            + [b.get(k, "") for k in ("elo", "ci_low", "ci_high")]
            + [n.get(k, "") for k in ("elo", "ci_low", "ci_high")]
            + [change, rate_b, rate_n]
        )
write(
    args.elo_table,
    [
        "model",
        "condition",
        "trait",
        "base_elo",
        "base_ci_low",
        "base_ci_high",
        "trained_elo",
        "trained_ci_low",
        "trained_ci_high",
        "change",
        "base_invalid_rate",
        "trained_invalid_rate",
    ],
    rows,
)


def scores(table):
    return {t: float(r["elo"]) for t, r in table.items()}


correlations = []
for condition in dict.fromkeys(c for _, c in tables):
    models = [m for m, c in tables if c == condition]
    for model in models:
        base, new = tables[(model, condition)]
        correlations.append(
            [condition, "before vs after training", model, model, elo.spearman(scores(base), scores(new))]
        )
    for a, b in itertools.combinations(models, 2):
        for stage, index in (("between models before training", 0), ("between models after training", 1)):
            value = elo.spearman(scores(tables[(a, condition)][index]), scores(tables[(b, condition)][index]))
            correlations.append([condition, stage, a, b, value])
correlations = [row[:4] + [round(row[4], 4)] for row in correlations]
write(args.spearman_table, ["condition", "comparison", "model_a", "model_b", "spearman"], correlations)
print(f"{len(rows)} rows -> {args.elo_table}; {len(correlations)} correlations -> {args.spearman_table}")
