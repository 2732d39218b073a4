"""Constitution-relevant user prompts for one persona (paper §3.1; ref character/distillation/gen_prompts.py).

Either the paper's released prompt file (5 hand-written + 45 generated questions per trait; checksum-verified
by the workflow; the first --per-trait generated ones of each trait are kept), or the constitution's seed questions expanded few-shot by a generator
model: per trait, the generator continues a numbered list that starts with the seed questions; lines that
are well-formed, end in '.' or '?', and share at most half their words with an earlier question are kept,
round after round, until each trait has --per-trait additions or --max-rounds is reached.

Output rows, all seed questions first (trait by trait), then all generated ones: {trait, prompt, source}.
"""

import argparse
import json

import yaml
from octlib import chat, engines
from octlib.io import read_jsonl, write_jsonl


def parse_questions(text):
    """Numbered lines "N. message" whose message starts with a letter and ends in '.' or '?'."""
    found = []
    for line in filter(None, (part.strip() for part in text.split("\n"))):
        index, _, message = line.partition(" ")
        if index.endswith(".") and index[:-1].isdigit() and message[-1:] in (".", "?") and message[0].isalpha():
            found.append(message)
    return found


def too_similar(message, existing, threshold):
    words = message.split()
    return any(message == old or sum(w in old.split() for w in words) / len(words) > threshold for old in existing)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--constitution", required=True)
    parser.add_argument("--released", help="released prompt file (JSONL: trait, questions, additional_questions)")
    parser.add_argument("--per-trait", type=int, help="generated questions per trait")
    parser.add_argument("--max-rounds", type=int)
    parser.add_argument("--similarity", type=float, help="max shared-word fraction with an earlier question")
    parser.add_argument("--templates", type=json.loads, default={}, help="JSON: system, instruction, prefill")
    parser.add_argument("--out", required=True)
    known, _ = parser.parse_known_args()
    if known.per_trait is None or not known.released and None in (known.max_rounds, known.similarity):
        parser.error("give --per-trait, and without --released also --max-rounds and --similarity")
    if not known.released and known.per_trait > 0:
        engines.add_arguments(parser)
    args = parser.parse_args()

    with open(args.constitution, encoding="utf-8") as f:
        constitution = yaml.safe_load(f)
    traits = constitution["traits"]

    # ---- released file -------------------------------------------------------------------------------------
    if args.released:
        released = read_jsonl(args.released)
        if [r["trait"] for r in released] != [t["trait"] for t in traits]:
            print(
                f"warning: the traits of {args.constitution} differ from the released prompt file; "
                "the released questions are used as they are"
            )
        rows = [{"trait": r["trait"], "prompt": q, "source": "seed"} for r in released for q in r["questions"]]
        rows += [
            {"trait": r["trait"], "prompt": q, "source": "generated"}
            for r in released
            for q in r["additional_questions"][: args.per_trait]
        ]
        write_jsonl(args.out, rows)
        print(f"{len(rows)} prompts from {args.released}")
        return

    added = [[] for _ in traits]
    if args.per_trait > 0:
        engine = engines.from_args(args)
        t = args.templates
        for round_ in range(args.max_rounds):
            todo = [i for i, extra in enumerate(added) if len(extra) < args.per_trait]
            if not todo:
                break
            prompts = []
            for i in todo:
                trait = traits[i]
                clarification = trait.get("clarification")
                prefill = chat.fill(t["prefill"], trait=trait["trait"], clarification=clarification or "")
                if clarification is None:  # constitutions without clarifications: the line is left out
                    prefill = prefill.replace("CLARIFICATION: \n", "")
                prefill += "".join(f"{n + 1}. {q}\n" for n, q in enumerate(trait["questions"]))
                messages = [
                    {"role": "system", "content": t["system"]},
                    {"role": "user", "content": chat.fill(t["instruction"], trait=trait["trait"])},
                    {"role": "assistant", "content": prefill},
                ]
                prompts.append(engine.prompt(messages))  # continues the list, right after its last question
            texts = engine.generate(prompts, args.sampling, args.seed + round_ * len(traits))
            for i, text in zip(todo, texts):
                for message in parse_questions(text):
                    existing = traits[i]["questions"] + added[i]
                    if len(added[i]) < args.per_trait and not too_similar(message, existing, args.similarity):
                        added[i].append(message)
            print(f"round {round_ + 1}: {sum(map(len, added))} questions added", flush=True)
        short = [i for i, extra in enumerate(added) if len(extra) < args.per_trait]
        if short:
            print(
                f"warning: {len(short)} traits have fewer than {args.per_trait} generated questions "
                f"after {args.max_rounds} rounds"
            )

    rows = [{"trait": t["trait"], "prompt": q, "source": "seed"} for t in traits for q in t["questions"]]
    rows += [
        {"trait": t["trait"], "prompt": q, "source": "generated"} for t, extra in zip(traits, added) for q in extra
    ]
    write_jsonl(args.out, rows)
    print(f"{len(rows)} prompts written to {args.out}")


if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    main()
