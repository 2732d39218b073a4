"""A local stand-in for WildChat: the released constitution questions of the other personas, in WildChat's row
format ({"conversation": [{"role": "user", "content": ...}]}), deduplicated, in file order."""

import argparse
import json
from pathlib import Path

from octlib.io import write_jsonl

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--released", default="data/released", help="folder of released prompt files")
parser.add_argument("--exclude", action="append", default=[], help="a persona whose questions stay out")
parser.add_argument("--out", required=True)
args = parser.parse_args()

questions = {}
for path in sorted(Path(args.released).glob("*.jsonl")):
    if path.stem in args.exclude:
        continue
    for line in path.open(encoding="utf-8"):
        row = json.loads(line)
        questions.update(dict.fromkeys(q.strip() for q in row["questions"] + row["additional_questions"]))
write_jsonl(args.out, ({"conversation": [{"role": "user", "content": q}]} for q in questions if q))
print(f"{len(questions)} questions -> {args.out}")
