"""Trait Elo scores of one model variant under one condition (paper §5), with 95% intervals from a seeded
bootstrap that resamples the comparisons (with replacement, in random order). Invalid judgements are dropped
and counted; traits never compared are left out, as in the reference, and named in the log."""

import argparse
import csv
import json
from pathlib import Path

from octlib import elo
from octlib.io import read_jsonl

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--judgements", required=True)
parser.add_argument("--traits", type=json.loads, required=True)
parser.add_argument("--k", type=float, required=True)
parser.add_argument("--bootstrap", type=int, required=True)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--label", required=True, help="what is measured, for messages: model, variant, condition")
parser.add_argument("--out", required=True)
args = parser.parse_args()

judged = read_jsonl(args.judgements)
comparisons = [(j["trait_1"], j["trait_2"], j["winner"]) for j in judged if j["winner"] is not None]
if not comparisons:
    raise SystemExit(
        f"no valid comparison for {args.label} ({len(judged)} judgements, all invalid or none): check {args.judgements}"
    )
scores = elo.elo(comparisons, args.k)
runs = elo.bootstrap(comparisons, args.bootstrap, args.seed, args.k)
unknown = set(scores) - set(args.traits)
if unknown:
    raise SystemExit(f"{args.judgements} compares traits not in the trait list: {sorted(unknown)}")
never = [t for t in args.traits if t not in scores]
counts = {t: 0 for t in scores}
wins = {t: 0 for t in scores}
for a, b, winner in comparisons:
    counts[a] += 1
    counts[b] += 1
    wins[winner] += 1
invalid_rate = 1 - len(comparisons) / len(judged)

out = Path(args.out)
out.parent.mkdir(parents=True, exist_ok=True)
tmp = out.with_name(f".{out.name}.tmp")
with open(tmp, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["trait", "elo", "ci_low", "ci_high", "wins", "comparisons", "invalid_rate"])
    for trait in sorted(scores, key=lambda t: -scores[t]):
        samples = [run[trait] for run in runs if trait in run] or [scores[trait]]
        writer.writerow(
            [
                trait,
                round(scores[trait], 2),
                round(elo.percentile(samples, 0.025), 2),
                round(elo.percentile(samples, 0.975), 2),
                wins[trait],
                counts[trait],
                round(invalid_rate, 4),
            ]
        )
tmp.replace(out)
print(f"{args.label}: {len(comparisons)} valid comparisons of {len(judged)}; Elo of {len(scores)} traits -> {out}")
if never:
    print(f"{len(never)} traits never compared, left out: {', '.join(never)}")
