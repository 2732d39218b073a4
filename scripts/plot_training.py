"""Training curves of one student and persona: the DPO stage's loss and rewards and the SFT stage's loss per
optimizer step, from the training logs beside the adapters (training_log.json)."""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dpo", required=True, help="the DPO adapter's folder")
parser.add_argument("--sft", required=True, help="the SFT adapter's folder")
parser.add_argument("--title", required=True)
parser.add_argument("--out", required=True, help="a .png")
args = parser.parse_args()


def steps(folder):
    log = json.loads((Path(folder) / "training_log.json").read_text())
    return [e for e in log if "loss" in e]


dpo, sft = steps(args.dpo), steps(args.sft)
fig, (loss_ax, reward_ax, sft_ax) = plt.subplots(1, 3, figsize=(13, 3.8))
loss_ax.plot([e["step"] for e in dpo], [e["loss"] for e in dpo], marker=".", label="DPO loss")
loss_ax.set_title("DPO: loss")
reward_ax.set_title("DPO: implicit rewards")
for key, label in (("rewards/chosen", "chosen"), ("rewards/rejected", "rejected"), ("rewards/margins", "margin")):
    if any(key in e for e in dpo):
        reward_ax.plot([e["step"] for e in dpo if key in e], [e[key] for e in dpo if key in e], marker=".", label=label)
sft_ax.plot([e["step"] for e in sft], [e["loss"] for e in sft], marker=".", color="tab:green", label="SFT loss")
sft_ax.set_title("SFT: loss")
for ax, ylabel in ((loss_ax, "loss"), (reward_ax, "reward (β · log-ratio)"), (sft_ax, "loss")):
    ax.set_xlabel("optimizer step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.legend()
fig.suptitle(args.title)
fig.tight_layout()
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out, dpi=120)
print(f"{len(dpo)} DPO and {len(sft)} SFT steps -> {args.out}")
