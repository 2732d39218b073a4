"""Teacher (chosen) and student (rejected) responses for DPO (paper §3.1; ref character/distillation/teacher.py,
student.py).

The teacher answers every prompt in character: the constitution's traits in its system prompt and, for a
reasoning teacher, a thinking prefill that lists them; only the text after </think> is kept. A teacher too
small to follow its system prompt can be given the first words of its answers (--openings, ours, not the
paper's): answer i continues, and keeps, opening i modulo their number. The student
answers the same prompts with no system prompt. Prompts are repeated list-major (the whole list, then again).
The robustness answers (paper §4) come from here too: the prompted baseline with --system, the steered one with
--steering, the trained models plainly; --keep carries each prompt row's split and question to its answer.
The prefill attack's second turn (paper §4, Table 5; ref character/robustness/prefill/multi_turn.py) comes with
--history: each prompt is asked with the first turn's answer (row by row from that file) and --follow-up after it.
"""

import argparse
import json

from octlib import chat, engines
from octlib.io import fingerprint, read_jsonl, run_sharded


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    engines.add_arguments(parser)
    parser.add_argument("--prompts", nargs="+", required=True, help="JSONL files with a 'prompt' field, in order")
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--system", help="system prompt template with {NAME} and {TRAITS}")
    parser.add_argument("--name", default="", help="value of {NAME}")
    parser.add_argument("--constitution", help="constitution YAML whose traits fill {TRAITS}")
    parser.add_argument("--prefill", help="text appended after the generation prompt; {TRAITS} is filled")
    parser.add_argument("--openings", type=json.loads, default=[], help="JSON list: the first words of answers")
    parser.add_argument("--keep", nargs="*", default=[], help="fields of the prompt rows copied to the output")
    parser.add_argument("--parse-thinking", action="store_true", help="keep the text after </think>, else null")
    parser.add_argument("--split", help="only the prompt rows of this split")
    parser.add_argument("--history", help="JSONL of first-turn answers, one per prompt row, in order")
    parser.add_argument("--follow-up", help="the user's second turn after the history's answer")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    # ---- prompts -------------------------------------------------------------------------------------------
    rows = [row for path in args.prompts for row in read_jsonl(path) if args.split in (None, row.get("split"))]
    rows = rows * args.repeats
    if bool(args.history) != bool(args.follow_up):
        parser.error("--history and --follow-up go together")
    if args.history:
        history = read_jsonl(args.history)
        if [h["prompt"] for h in history] != [r["prompt"] for r in rows]:
            raise SystemExit(f"{args.history} does not answer the prompts of {' '.join(args.prompts)}, in order")
        rows = [dict(r, first_turn=h["response"]) for r, h in zip(rows, history)]
    traits = chat.traits_string(chat.load_traits(args.constitution)) if args.constitution else ""
    system = chat.fill(args.system, NAME=args.name, TRAITS=traits) if args.system else None
    prefill = chat.fill(args.prefill, TRAITS=traits) if args.prefill else ""
    print(f"{len(rows)} prompts ({args.repeats} repeats)", flush=True)

    # ---- generation ----------------------------------------------------------------------------------------
    engine = engines.from_args(args)

    def parse(text):
        text = text.strip()
        if not args.parse_thinking:
            return text
        return text.split("</think>")[1].strip() if "</think>" in text else None

    def work(chunk, start):
        def second_turn(r):
            if not args.history:
                return []
            return [{"role": "assistant", "content": r["first_turn"]}, {"role": "user", "content": args.follow_up}]

        messages = [
            ([{"role": "system", "content": system}] if system else [])
            + [{"role": "user", "content": r["prompt"]}]
            + second_turn(r)
            for r in chunk
        ]
        openings = [args.openings[(start + i) % len(args.openings)] if args.openings else "" for i in range(len(chunk))]
        prompts = [engine.prompt(m, prefill + o) for m, o in zip(messages, openings)]
        texts = engine.generate(prompts, args.sampling, args.seed + start)
        return [
            {**{k: r[k] for k in args.keep}, "prompt": r["prompt"], "response": parse(o + t)}
            for r, o, t in zip(chunk, openings, texts)
        ]

    rows = run_sharded(args.out, rows, args.shard_size, work, fingerprint(args))
    invalid = sum(r["response"] is None for r in rows)
    print(f"{len(rows)} responses written to {args.out}; {invalid} without a closed </think> (response null)")


if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    main()
