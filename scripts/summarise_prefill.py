"""The prefill attack (paper §4, Table 5; ref character/robustness/prefill/multi_turn_results.py): the persona
classifier's macro-F1 and accuracy on the second-turn answers of each student and method, over all personas,
beside the published F1. F1 is sklearn's f1_score(average="macro") over the labels present, as for Figure 5."""

import argparse

from octlib.io import published, read_jsonl, write_csv
from sklearn.metrics import accuracy_score, f1_score

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--predictions", nargs=2, action="append", required=True, metavar=("MODEL", "PATH"))
parser.add_argument("--paper", required=True, help="the published numbers (data/paper_numbers.csv)")
parser.add_argument("--table", required=True)
args = parser.parse_args()

paper = {(r["model"], r["method"]): r for r in published(args.paper, "prefill")}
table = []
for model, path in args.predictions:
    rows = read_jsonl(path)
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        truth, predicted = [r["persona"] for r in mine], [r["predicted"] for r in mine]
        paper_row = paper.get((model, method), {})
        table.append(
            {
                "model": model,
                "method": method,
                "f1": round(f1_score(truth, predicted, average="macro"), 4),
                "accuracy": round(accuracy_score(truth, predicted), 4),
                "answers": len(mine),
                "published_f1": paper_row.get("value", ""),
                "published_source": paper_row.get("source", ""),
            }
        )
write_csv(args.table, table)
print(f"{len(table)} rows -> {args.table}")
