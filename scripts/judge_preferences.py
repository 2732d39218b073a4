"""Which of the two offered traits does each answer show? (paper §5; ref character/preferences/judgements.py)

generate: the paper's judge writes its reasoning and a final <answer>trait</answer>; the text between the
first <answer> and the first </answer>, lower-cased, is the verdict, and anything that is not one of the two
traits is counted invalid (and dropped before Elo), never an error.
loglik: the verdict is the trait whose "<answer>trait</answer>" continuation the judge finds likelier; it is
always valid, so the Elo path runs end to end even with a random tiny judge.
"""

import argparse

from octlib import chat, engines
from octlib.io import fingerprint, read_jsonl, run_sharded


def parse_answer(text):
    """The lower-cased tagged answer (chat.tagged_answer), or None."""
    answer = chat.tagged_answer(text)
    return answer.lower() if answer is not None else None


def verdict(answer, trait_1, trait_2):
    return answer if answer in (trait_1, trait_2) else None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    engines.add_arguments(parser, sampling_required=False)  # loglik samples nothing
    parser.add_argument("--responses", required=True)
    parser.add_argument("--mode", choices=["generate", "loglik"], required=True)
    parser.add_argument("--system", required=True, help="judge system prompt with {NAME}")
    parser.add_argument("--question", required=True, help="template with {message}, {trait_1}, {trait_2}")
    parser.add_argument("--name", required=True, help="the name the judge is addressed by")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    engines.check_judge_mode(args)

    rows = read_jsonl(args.responses)
    engine = engines.from_args(args)
    system = chat.fill(args.system, NAME=args.name)

    def prompt(row):
        question = chat.fill(args.question, message=row["response"], trait_1=row["trait_1"], trait_2=row["trait_2"])
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        return engine.prompt(messages)

    def work(chunk, start):
        if args.mode == "generate":
            texts = engine.generate([prompt(r) for r in chunk], args.sampling, args.seed + start)
            answers = [parse_answer(t) for t in texts]
        else:
            answers = [
                (r["trait_1"], r["trait_2"])[
                    engine.likeliest(
                        prompt(r), [f"<answer>{r['trait_1']}</answer>", f"<answer>{r['trait_2']}</answer>"]
                    )
                ]
                for r in chunk
            ]
        return [
            {
                "trait_1": r["trait_1"],
                "trait_2": r["trait_2"],
                "answer": a,
                "winner": verdict(a, r["trait_1"], r["trait_2"]),
            }
            for r, a in zip(chunk, answers)
        ]

    judged = run_sharded(args.out, rows, args.shard_size, work, fingerprint(args))
    invalid = sum(j["winner"] is None for j in judged)
    print(f"{len(judged)} judgements written to {args.out}; {invalid} invalid ({invalid / max(len(judged), 1):.1%})")


if __name__ == "__main__":
    main()
