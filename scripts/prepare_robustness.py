"""The robustness prompts (paper §4, Appendix C; ref character/robustness/generate/*.py): the first --count
Pure-Dove questions in file order (each conversation's first input; after the first --skip, for the held-out
questions of the steering calibration), once per split. A split's instruction is
appended on a new line after the question; the default split has none. The reference shuffles them unseeded,
which changes only the order of its files.
"""

import argparse
import json
from pathlib import Path

from octlib.io import read_jsonl, write_jsonl

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--source", required=True, help="the downloaded dataset folder, or a local JSONL file")
parser.add_argument("--count", type=int, required=True)
parser.add_argument("--skip", type=int, default=0)
parser.add_argument("--splits", type=json.loads, required=True, help='JSON {"split": "instruction" or ""}')
parser.add_argument("--out", required=True)
args = parser.parse_args()

source = Path(args.source)
files = sorted(source.rglob("*.jsonl")) if source.is_dir() else [source]
if not files:
    raise SystemExit(f"robustness.prompts: no JSONL file in {source}")
rows = [row for f in files for row in read_jsonl(f)]
if len(rows) < args.skip + args.count:
    raise SystemExit(f"{args.skip} + {args.count} questions asked for, but {source} holds {len(rows)}")
questions = [row["conversation"][0]["input"] for row in rows[args.skip : args.skip + args.count]]
write_jsonl(
    args.out,
    (
        {"split": split, "question": q, "prompt": f"{q}\n{instruction}" if instruction else q}
        for split, instruction in args.splits.items()
        for q in questions
    ),
)
print(f"{len(questions)} questions x {len(args.splits)} splits from {source}")
