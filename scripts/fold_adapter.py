"""Fold a LoRA adapter into its base model (ref tools/fold_all.py).

The base + DPO adapter gives the "distilled" model; the distilled model + SFT adapter gives the "trained"
model that the paper's evaluations use. The merge is computed in float32 and saved in --dtype (bfloat16 by
default, as the reference saves). Top-level files of the base that the save does not write (chat template,
processor files) are copied over.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from octlib import cards
from octlib.io import save_dir_atomic
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--base", required=True)
parser.add_argument("--adapter", required=True)
parser.add_argument("--dtype", required=True, choices=["bfloat16", "float16", "float32"])
parser.add_argument("--card", type=json.loads, help="JSON: the model card's facts (octlib.cards); none, no card")
parser.add_argument(
    "--stage", nargs=2, action="append", default=[], metavar=("NAME", "ADAPTER"), help="a training stage of the card"
)
parser.add_argument("--out", required=True)
args = parser.parse_args()

base = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32)
folded = PeftModel.from_pretrained(base, args.adapter).merge_and_unload().to(getattr(torch, args.dtype))
tokenizer = AutoTokenizer.from_pretrained(args.base)


def save(tmp):
    folded.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for f in Path(args.base).iterdir():
        if (
            f.is_file()
            and f.suffix != ".safetensors"
            and not (tmp / f.name).exists()
            and f.name != "model.safetensors.index.json"
        ):
            shutil.copy2(f, tmp / f.name)
    if args.card:
        stages = " and ".join(name for name, _ in args.stage)
        what = f"The student with its {stages} LoRA adapters folded into its weights ({args.dtype}): a plain model."
        cards.write(tmp, args.card, what, "transformers", args.stage)


save_dir_atomic(args.out, save)
print(f"{args.adapter} folded into {args.base} -> {args.out} ({args.dtype})")
