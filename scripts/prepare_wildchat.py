"""WildChat first turns for the revealed-preference prompts (ref character/preferences/preferences.py,
tools/download.sh).

The dataset is shuffled with a fixed seed and the first --count rows kept, as the reference does with
`datasets` (so the same seed gives the paper's rows); the prompt is each conversation's first user turn.
"""

import argparse
from pathlib import Path

from datasets import load_dataset
from octlib.io import write_jsonl

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--source", required=True, help="downloaded dataset folder, or a local JSONL file")
parser.add_argument("--count", type=int, required=True)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

source = Path(args.source)
if source.is_dir():
    dataset = load_dataset(str(source), split="train")
else:
    dataset = load_dataset("json", data_files=str(source), split="train")
if args.count > len(dataset):
    raise SystemExit(
        f"preferences.count asks for {args.count} prompts but {source} holds {len(dataset)}: lower the count, or"
        " ask each prompt with several trait pairs (preferences.pairs_per_prompt)"
    )
dataset = dataset.shuffle(seed=args.seed).select(range(args.count))
write_jsonl(args.out, ({"prompt": row["conversation"][0]["content"]} for row in dataset))
print(f"{len(dataset)} WildChat prompts from {source}")
