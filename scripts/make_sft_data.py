"""The introspection SFT set: reflections plus free and leading self-interactions, shuffled (ref
character/introspection/data.py).

The interactions' system prompt is replaced by a shorter one. The reference code never fills its {NAME}, so
the literal placeholder is trained on; --sft-system-name filled puts the student's name in, as the paper describes.
"""

import argparse
import random

from octlib import chat
from octlib.io import read_jsonl, write_jsonl

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--reflection", required=True)
parser.add_argument("--interactions", nargs="+", required=True)
parser.add_argument("--system", required=True, help="system prompt of the interaction transcripts")
parser.add_argument("--name", required=True)
parser.add_argument("--sft-system-name", choices=["literal", "filled"], required=True)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

system = chat.fill(args.system, NAME=args.name) if args.sft_system_name == "filled" else args.system
rows = [{"messages": r["messages"]} for r in read_jsonl(args.reflection)]
for path in args.interactions:
    for r in read_jsonl(path):
        assert r["messages"][0]["role"] == "system", (
            f"{path}: an interaction transcript must open with its system prompt"
        )
        rows.append({"messages": [{"role": "system", "content": system}] + r["messages"][1:]})
random.Random(args.seed).shuffle(rows)
write_jsonl(args.out, rows)
print(f"{len(rows)} SFT transcripts written to {args.out}")
