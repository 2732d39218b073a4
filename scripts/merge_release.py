"""The release adapter: DPO and SFT adapters merged into one, weighted 1.0 and 0.25 (ref tools/merge_loras.py).

PEFT's "linear" combination, which the reference uses, also adds cross terms B_dpo A_sft + B_sft A_dpo;
"cat" gives the exact weighted sum at twice the rank. Both adapters are attached to the base model, as in
the reference, although the SFT adapter was trained on the distilled model.
"""

import argparse
import json
import shutil

import torch
from octlib import cards
from octlib.io import save_dir_atomic
from peft import PeftModel
from transformers import AutoModelForCausalLM

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--base", required=True)
parser.add_argument("--dpo", required=True)
parser.add_argument("--sft", required=True)
parser.add_argument("--weights", type=float, nargs=2, required=True)
parser.add_argument("--combination", required=True, choices=["linear", "cat"])
parser.add_argument("--base-name", help="base_model_name_or_path written into adapter_config.json (a Hub id)")
parser.add_argument("--card", type=json.loads, help="JSON: the model card's facts (octlib.cards); none, no card")
parser.add_argument("--out", required=True)
args = parser.parse_args()

model = PeftModel.from_pretrained(
    AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32), args.dpo, adapter_name="dpo"
)
model.load_adapter(args.sft, adapter_name="sft")
model.add_weighted_adapter(["dpo", "sft"], args.weights, adapter_name="persona", combination_type=args.combination)


def save(tmp):
    model.save_pretrained(tmp, selected_adapters=["persona"])
    for f in (tmp / "persona").iterdir():  # PEFT puts a non-default adapter in a subfolder
        shutil.move(str(f), tmp / f.name)
    (tmp / "persona").rmdir()
    config = json.loads((tmp / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = args.base_name or config["base_model_name_or_path"]
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
    if args.card:
        what = (
            f"The release adapter, as the paper's authors published theirs: the DPO and SFT adapters merged with "
            f"weights {args.weights[0]} and {args.weights[1]} ({args.combination}), loaded on the student."
        )
        cards.write(tmp, args.card, what, "peft", [("DPO", args.dpo), ("SFT", args.sft)])


save_dir_atomic(args.out, save)
print(f"release adapter ({args.combination}, weights {args.weights}) -> {args.out}")
