"""LIMA first-turn prompts for the teacher and student responses (ref character/distillation/teacher.py).

The first user turn of every conversation in LIMA's train.jsonl (1,030) then test.jsonl (300), from the
downloaded dataset folder, or from one local JSONL file with the same `conversations` field (tests).
"""

import argparse
from pathlib import Path

from octlib.io import read_jsonl, write_jsonl

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--source", required=True, help="dataset folder with train.jsonl and test.jsonl, or one JSONL")
parser.add_argument("--out", required=True)
args = parser.parse_args()

source = Path(args.source)
files = [source / "train.jsonl", source / "test.jsonl"] if source.is_dir() else [source]
rows = [{"prompt": row["conversations"][0]} for path in files for row in read_jsonl(path)]
write_jsonl(args.out, rows)
print(f"{len(rows)} LIMA prompts from {', '.join(map(str, files))}")
