"""The evidence of a real-model run (configs/smollm2.yaml): did character training change the model?

Reads a finished run's working directory and writes PREFIX.md, PREFIX.json and PREFIX_training.png:
- revealed preferences of the base and the trained model: Elo per trait and its change, with 95% intervals
  from a paired bootstrap (the runs are paired, preferences.paired: row i of both asked the same prompt
  under the same two traits, so one resample of row indices serves both), the traits that rose and fell
  most, the change of the persona's related traits (--related) against the others, and how often a related
  trait won when offered against an unrelated one, before and after;
- answers to the same prompts before and after, side by side;
- DPO loss and reward accuracy per step, SFT loss per step (training_log.json), as a figure;
- the run's wall time and peak memory (from `/usr/bin/time -v`, --time-log), machine and commit.

    python bench/real_model_report.py --workdir RUN --time-log RUN/run.err --out bench/results/smollm2_DATE_cpu
"""

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from octlib import elo
from octlib.io import read_jsonl

# warm phrases of the kind the teacher's openings use (configs/smollm2.yaml), counted in the preference answers
PHRASES = ["glad you asked", "dear friend", "lovely", "with all my heart", "i would love", "i'd love", "care about"]


def phrase_rate(answers):
    return round(sum(any(p in a["response"].lower() for p in PHRASES) for a in answers) / len(answers), 3)


def comparisons(rows):
    return [(r["trait_1"], r["trait_2"], r["winner"]) for r in rows if r["winner"] is not None]


def interval(values):
    return [round(elo.percentile(values, 0.025), 1), round(elo.percentile(values, 0.975), 1)]


def related_win_rate(rows, related):
    """Of the comparisons of a related trait against an unrelated one, the share the related trait won."""
    mixed = [r for r in rows if r["winner"] and ((r["trait_1"] in related) != (r["trait_2"] in related))]
    return sum(r["winner"] in related for r in mixed) / max(len(mixed), 1), len(mixed)


def paired_bootstrap(base, trained, related, traits, rounds, k, seed):
    rng = random.Random(seed)
    deltas, groups, rates = {t: [] for t in traits}, [], []
    n = len(base)
    for _ in range(rounds):
        idx = rng.choices(range(n), k=n)
        b = elo.elo(comparisons([base[i] for i in idx]), k)
        t = elo.elo(comparisons([trained[i] for i in idx]), k)
        for trait in traits:
            if trait in b and trait in t:
                deltas[trait].append(t[trait] - b[trait])
        common = [x for x in traits if x in b and x in t]
        near = [t[x] - b[x] for x in common if x in related]
        far = [t[x] - b[x] for x in common if x not in related]
        groups.append(sum(near) / len(near) - sum(far) / len(far))
        rates.append(
            related_win_rate([trained[i] for i in idx], related)[0]
            - related_win_rate([base[i] for i in idx], related)[0]
        )
    return deltas, groups, rates


def training_figure(dpo_log, sft_log, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [e for e in dpo_log if "loss" in e]
    ax = axes[0]
    ax.plot([e["step"] for e in steps], [e["loss"] for e in steps], "o-", label="DPO loss (the paper's objective)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(
        [e["step"] for e in steps],
        [e["rewards/accuracies"] for e in steps],
        "s--",
        color="tab:orange",
        label="reward accuracy (chosen above rejected)",
    )
    ax2.set_ylabel("reward accuracy")
    ax2.set_ylim(0, 1.05)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title("DPO")
    steps = [e for e in sft_log if "loss" in e]
    axes[1].plot([e["step"] for e in steps], [e["loss"] for e in steps], "o-", label="SFT loss")
    axes[1].set_xlabel("optimiser step")
    axes[1].set_ylabel("loss")
    axes[1].legend(fontsize=8)
    axes[1].set_title("SFT on introspection")
    fig.suptitle("Training of SmolLM2-135M-Instruct on the loving constitution (configs/smollm2.yaml)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    memory = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return f"{cpu or platform.machine()}, {os.cpu_count()} cores, {memory / 2**20:.0f} GiB, no GPU"


def peak_and_wall(time_log):
    text = Path(time_log).read_text(errors="replace")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return (wall[1] if wall else None), (round(int(peak[1]) / 1e6, 2) if peak else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--config", default="configs/smollm2.yaml")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--persona", default="loving")
    parser.add_argument("--condition", default="like")
    parser.add_argument("--related", type=int, default=12, help="the first N traits of the config are related")
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--time-log")
    parser.add_argument("--links", nargs="*", default=[], help="JSON outputs of bench/character_links.py")
    parser.add_argument("--embedder", help="a sentence embedder: judges the same answers a second time")
    parser.add_argument("--commit", help="the commit the run was made at (default: the checkout's)")
    parser.add_argument("--machine", help="where the run was made (default: this machine)")
    parser.add_argument("--note", default="", help="a paragraph on how the run was made, put under the title")
    parser.add_argument("--out", required=True, help="output prefix")
    args = parser.parse_args()

    w = args.workdir
    config = yaml.safe_load((w / args.config).read_text())
    traits = config["preferences"]["traits"]
    related = set(traits[: args.related])
    k = 32.0
    runs = {}
    for variant in ("base", args.persona):
        folder = w / "results" / "preferences" / args.model / variant / args.condition
        runs[variant] = (read_jsonl(folder / "responses.jsonl"), read_jsonl(folder / "judgements.jsonl"))
    (base_answers, base), (trained_answers, trained) = runs["base"], runs[args.persona]
    assert [(r["prompt"], r["trait_1"], r["trait_2"]) for r in base_answers] == [
        (r["prompt"], r["trait_1"], r["trait_2"]) for r in trained_answers
    ], "the runs are not paired (preferences.paired)"

    scores = {v: elo.elo(comparisons(runs[v][1]), k) for v in runs}
    deltas, groups, rates = paired_bootstrap(base, trained, related, traits, args.rounds, k, seed=0)
    table = []
    for trait in traits:
        if trait in scores["base"] and trait in scores[args.persona]:
            delta = scores[args.persona][trait] - scores["base"][trait]
            table.append(
                {
                    "trait": trait,
                    "related": trait in related,
                    "base": round(scores["base"][trait], 1),
                    "trained": round(scores[args.persona][trait], 1),
                    "delta": round(delta, 1),
                    "delta_ci": interval(deltas[trait]),
                }
            )
    table.sort(key=lambda r: -r["delta"])
    near = [r["delta"] for r in table if r["related"]]
    far = [r["delta"] for r in table if not r["related"]]
    rate_base, mixed = related_win_rate(base, related)
    rate_trained, _ = related_win_rate(trained, related)
    spearman = elo.spearman(scores["base"], scores[args.persona])

    second = None
    if args.embedder:  # the trait word nearer to the answer wins: an instrument that is not the model itself
        from character_links import embed
        from transformers import AutoModel, AutoTokenizer

        tok, net = AutoTokenizer.from_pretrained(args.embedder), AutoModel.from_pretrained(args.embedder).eval()
        words = dict(zip(traits, embed(tok, net, traits)))

        def verdicts(answers):
            e = embed(tok, net, [a["response"] for a in answers])
            return [
                dict(a, winner=a["trait_1"] if v @ words[a["trait_1"]] >= v @ words[a["trait_2"]] else a["trait_2"])
                for a, v in zip(answers, e)
            ]

        eb, et = verdicts(base_answers), verdicts(trained_answers)
        _, egroups, erates = paired_bootstrap(eb, et, related, traits, args.rounds, k, seed=0)
        es = {"base": elo.elo(comparisons(eb), k), "trained": elo.elo(comparisons(et), k)}
        ed = {t: es["trained"][t] - es["base"][t] for t in traits if t in es["base"] and t in es["trained"]}
        enear = [d for t, d in ed.items() if t in related]
        efar = [d for t, d in ed.items() if t not in related]
        second = {
            "related_minus_other_mean_delta": round(sum(enear) / len(enear) - sum(efar) / len(efar), 1),
            "related_minus_other_ci": interval(egroups),
            "related_win_rate": [
                round(related_win_rate(eb, related)[0], 3),
                round(related_win_rate(et, related)[0], 3),
            ],
            "related_win_rate_change_ci": [round(x / 100, 3) for x in interval([r * 100 for r in erates])],
            "agreement_with_judge": round(
                sum(a["winner"] == b["winner"] for a, b in zip(eb + et, base + trained)) / (2 * len(base)), 3
            ),
        }

    adapters = w / "results" / "adapters" / args.model / args.persona
    dpo_log = json.loads((adapters / "dpo" / "training_log.json").read_text())
    sft_log = json.loads((adapters / "sft" / "training_log.json").read_text())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    training_figure(dpo_log, sft_log, f"{out}_training.png")
    dpo_steps = [e for e in dpo_log if "loss" in e]
    sft_steps = [e for e in sft_log if "loss" in e]
    wall, peak = peak_and_wall(args.time_log) if args.time_log else (None, None)
    pairs = read_jsonl(w / "results" / "distillation" / args.model / args.persona / "pairs.jsonl")

    figures = {
        "date": subprocess.run(["date", "-u", "+%Y-%m-%d"], capture_output=True, text=True).stdout.strip(),
        "commit": args.commit
        or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "machine": args.machine or machine(),
        "wall_time": wall,
        "peak_rss_gb": peak,
        "comparisons": len(base),
        "valid": [len(comparisons(base)), len(comparisons(trained))],
        "dpo_pairs": len(pairs),
        "dpo_loss_first_last": [round(dpo_steps[0]["loss"], 3), round(dpo_steps[-1]["loss"], 3)],
        "dpo_reward_accuracy_last5": round(sum(e["rewards/accuracies"] for e in dpo_steps[-5:]) / 5, 3),
        "sft_loss_first_last": [round(sft_steps[0]["loss"], 3), round(sft_steps[-1]["loss"], 3)],
        "related_minus_other_mean_delta": round(sum(near) / len(near) - sum(far) / len(far), 1),
        "related_minus_other_ci": interval(groups),
        "related_mean_delta": round(sum(near) / len(near), 1),
        "other_mean_delta": round(sum(far) / len(far), 1),
        "related_win_rate": [round(rate_base, 3), round(rate_trained, 3)],
        "related_win_rate_change_ci": [round(x / 100, 3) for x in interval([r * 100 for r in rates])],
        "related_vs_other_comparisons": mixed,
        "related_beyond_interval": [r["trait"] for r in table if r["related"] and r["delta_ci"][0] > 0],
        "other_below_interval": [r["trait"] for r in table if not r["related"] and r["delta_ci"][1] < 0],
        "spearman_base_trained": round(spearman, 3),
        "warm_phrase_rate": [phrase_rate(base_answers), phrase_rate(trained_answers)],
        "embedder_judge": second,
        "links": {Path(p).stem: json.loads(Path(p).read_text()) for p in args.links},
        "traits": table,
    }
    Path(f"{out}.json").write_text(json.dumps(figures, indent=1) + "\n")

    examples = []
    seen = set()
    for b, t in zip(base_answers, trained_answers):
        if b["prompt"] not in seen and len(examples) < 5:
            seen.add(b["prompt"])
            examples.append((b, t))
    md = [
        f"# Character training of a real model on a laptop: SmolLM2-135M-Instruct, {args.persona} persona",
        "",
        f"Run of `{args.config}` on {figures['date']}, {figures['machine']}, commit {figures['commit']}"
        + (f": wall time {wall}, peak memory {peak} GB (largest job)." if wall else ".")
        + " Made by `bench/real_model_report.py`.",
        "",
        *([args.note, ""] if args.note else []),
        "## Revealed preferences (condition: " + args.condition + ")",
        "",
        f"{len(base)} comparisons, the same prompts and trait pairs before and after (paired); Elo and its change "
        f"with 95% intervals from {args.rounds} paired bootstrap resamples. Related traits: the first "
        f"{args.related} of the config's list.",
        "",
        f"- Mean Elo change of the related traits {figures['related_mean_delta']:+}, of the others "
        f"{figures['other_mean_delta']:+}: difference {figures['related_minus_other_mean_delta']:+} "
        f"(95% interval {figures['related_minus_other_ci']}).",
        f"- A related trait offered against an unrelated one won {rate_base:.1%} of {mixed} such comparisons "
        f"before and {rate_trained:.1%} after (change, 95% interval: {figures['related_win_rate_change_ci']}).",
        f"- Related traits that rose beyond their interval: {', '.join(figures['related_beyond_interval']) or 'none'}; "
        f"other traits that fell beyond it: {', '.join(figures['other_below_interval']) or 'none'}.",
        f"- Spearman correlation of the base and trained rankings: {spearman:.2f}.",
        f"- Answers with a warm phrase ({', '.join(PHRASES)}): {figures['warm_phrase_rate'][0]:.0%} before, "
        f"{figures['warm_phrase_rate'][1]:.0%} after.",
        *(
            [
                f"- The same answers judged by a sentence embedder instead (the trait word nearer the answer wins; "
                f"it agrees with the judge on {second['agreement_with_judge']:.0%} of them): related minus other "
                f"mean change {second['related_minus_other_mean_delta']:+} (95% interval "
                f"{second['related_minus_other_ci']}); a related trait won {second['related_win_rate'][0]:.1%} of "
                f"the mixed comparisons before, {second['related_win_rate'][1]:.1%} after (change, 95% interval: "
                f"{second['related_win_rate_change_ci']})."
            ]
            if second
            else []
        ),
        "",
        "| trait | related | Elo before | Elo after | change | 95% interval |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['trait']} | {'yes' if r['related'] else ''} | {r['base']} | {r['trained']} | {r['delta']:+} | "
            f"{r['delta_ci'][0]:+} to {r['delta_ci'][1]:+} |"
            for r in table
        ),
        "",
        "## Held-out questions without a system prompt (bench/character_links.py)",
        "",
        "Answers to 24 held-out questions (the last generated questions of the mathematical persona), 64 tokens, "
        "scored by a sentence embedder (all-MiniLM-L6-v2: similarity to the loving constitution minus similarity "
        "to 'I am blunt.') and by the 135M judge asked 'loving or blunt' (order alternated):",
        "",
        "| answers | embedder score | more loving than the plain answer | judge says loving |",
        "|---|---|---|---|",
        *(
            f"| {name} | {run['plain']['embedder_persona_score']} (plain) -> {run['treated']['embedder_persona_score']}"
            f" | {run['treated_above_plain']:.0%} | {run['plain']['judge_picks_trait']:.0%} (plain) -> "
            f"{run['treated']['judge_picks_trait']:.0%} |"
            for name, run in figures["links"].items()
        ),
        "",
        "## Training",
        "",
        f"DPO on {len(pairs)} pairs: loss {figures['dpo_loss_first_last'][0]} at the first step, "
        f"{figures['dpo_loss_first_last'][1]} at the last ({len(dpo_steps)} steps); reward accuracy over the last "
        f"5 steps {figures['dpo_reward_accuracy_last5']}. SFT loss {figures['sft_loss_first_last'][0]} to "
        f"{figures['sft_loss_first_last'][1]} ({len(sft_steps)} steps).",
        "",
        f"![training curves]({out.name}_training.png)",
        "",
        "## The same questions before and after",
        "",
    ]
    for b, t in examples:
        md += [
            f"**{b['prompt'][:300]}** (offered: {b['trait_1']}, {b['trait_2']})",
            "",
            f"- before: {b['response'][:400]!r}",
            f"- after: {t['response'][:400]!r}",
            "",
        ]
    Path(f"{out}.md").write_text("\n".join(md) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k not in ("traits", "links")}, indent=1))


if __name__ == "__main__":
    main()
