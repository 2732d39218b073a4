"""Which of two answers to the same question is more coherent and in character? (paper §4, Tables 2, 6, 7 and
Appendix D; ref character/coherence/coherence.py)

The answers of one method (--first) and of the trained model (--second) to the default split's questions are
paired question by question (the k-th answer to a question in one file with the k-th in the other: the
reference's inner join would multiply a repeated question). The judge sees each pair twice, the first method's
answer as response 1, then as response 2. Its verdict is the text between the first <answer> and </answer>:
"1" or "2", anything else (INVALID, no tags) is invalid. A pair counts only when both verdicts are valid and
agree across the two orders; the trained model wins it with (2, 1).
generate: the judge writes its verdict; loglik: the verdict is the likelier of "<answer>1</answer>" and
"<answer>2</answer>" (always valid, for a tiny random judge).
"""

import argparse
from collections import Counter

from octlib import chat, engines
from octlib.io import fingerprint, read_jsonl, run_sharded


def verdict(text):
    """The tagged answer (chat.tagged_answer) if it is "1" or "2", else None."""
    answer = chat.tagged_answer(text)
    return answer if answer in ("1", "2") else None


def outcome(in_order, swapped):
    """The pair's outcome from the verdicts with the first method's answer as response 1, then as response 2."""
    if in_order is None or swapped is None:
        return "invalid"
    return {("1", "2"): "first", ("2", "1"): "second"}.get((in_order, swapped), "inconsistent")


def pairs(first, second):
    """(question, first answer, second answer) of the default split, paired by question and occurrence."""
    seen, answers = Counter(), {}
    for row in second:
        if row["split"] == "default":
            seen[row["question"]] += 1
            answers[row["question"], seen[row["question"]]] = row["response"]
    seen.clear()
    joined = []
    for row in first:
        if row["split"] == "default":
            seen[row["question"]] += 1
            other = answers.get((row["question"], seen[row["question"]]))
            if other is not None:
                joined.append({"question": row["question"], "first": row["response"], "second": other})
    return joined


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    engines.add_arguments(parser, sampling_required=False)  # loglik samples nothing
    parser.add_argument("--first", required=True, help="answers of the method compared with the trained model")
    parser.add_argument("--second", required=True, help="answers of the trained model")
    parser.add_argument("--constitution", required=True, help="the persona whose traits the judge is shown")
    parser.add_argument("--prompt", required=True, help="template with {message}, {response_1}, {response_2}, {traits}")
    parser.add_argument("--mode", choices=["generate", "loglik"], required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    engines.check_judge_mode(args)

    rows = pairs(read_jsonl(args.first), read_jsonl(args.second))
    if not rows:
        raise SystemExit(f"{args.first} and {args.second} share no question of the default split")
    traits = chat.traits_string(chat.load_traits(args.constitution))
    engine = engines.from_args(args)

    def prompt(row, swapped):
        one, two = (row["second"], row["first"]) if swapped else (row["first"], row["second"])
        text = chat.fill(args.prompt, message=row["question"], response_1=one, response_2=two, traits=traits)
        return engine.prompt([{"role": "user", "content": text}])

    def work(chunk, start):
        prompts = [prompt(row, swapped) for row in chunk for swapped in (False, True)]
        if args.mode == "generate":
            verdicts = [verdict(t) for t in engine.generate(prompts, args.sampling, args.seed + 2 * start)]
        else:
            verdicts = [str(1 + engine.likeliest(p, ["<answer>1</answer>", "<answer>2</answer>"])) for p in prompts]
        return [
            {"question": row["question"], "in_order": a, "swapped": b, "outcome": outcome(a, b)}
            for row, a, b in zip(chunk, verdicts[::2], verdicts[1::2])
        ]

    judged = run_sharded(args.out, rows, args.shard_size, work, fingerprint(args))
    counts = Counter(j["outcome"] for j in judged)
    print(f"{len(judged)} pairs judged in both orders -> {args.out}: {dict(counts)}")


if __name__ == "__main__":
    main()
