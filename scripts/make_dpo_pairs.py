"""DPO pairs for one student and persona (paper §3.1; ref character/distillation/data.py).

Row i of the teacher file and row i of the student file answer the same prompt. A pair is kept when both
responses exist, both are complete (the last non-space character is Unicode punctuation), and both templated
conversations fit the length limit in the student's tokens. The teacher's name in chosen responses becomes
the student's.
"""

import argparse
import unicodedata

from octlib import chat
from octlib.io import read_jsonl, write_jsonl
from transformers import AutoTokenizer


def is_complete(text):
    text = text.rstrip()
    return bool(text) and unicodedata.category(text[-1]).startswith("P")


def token_length(tokenizer, conversation):
    # as the reference counts it: with a generation prompt after the answer, and special tokens added again
    return len(tokenizer.encode(chat.render(tokenizer, conversation, add_generation_prompt=True)))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chosen", required=True)
    parser.add_argument("--rejected", required=True)
    parser.add_argument("--tokenizer", required=True, help="student model directory")
    parser.add_argument("--teacher-name", required=True)
    parser.add_argument("--student-name", required=True)
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--require-complete", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    chosen, rejected = read_jsonl(args.chosen), read_jsonl(args.rejected)
    if len(chosen) != len(rejected) or any(c["prompt"] != r["prompt"] for c, r in zip(chosen, rejected)):
        raise SystemExit(f"{args.chosen} and {args.rejected} do not answer the same prompts in the same order")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)

    pairs, dropped = [], {"missing": 0, "incomplete": 0, "too long": 0}
    for c, r in zip(chosen, rejected):
        if c["response"] is None or r["response"] is None:
            dropped["missing"] += 1
            continue
        if args.require_complete and not (is_complete(c["response"]) and is_complete(r["response"])):
            dropped["incomplete"] += 1
            continue
        user = {"role": "user", "content": c["prompt"]}
        pair = {
            "chosen": [
                user,
                {"role": "assistant", "content": c["response"].replace(args.teacher_name, args.student_name)},
            ],
            "rejected": [user, {"role": "assistant", "content": r["response"]}],
        }
        if max(token_length(tokenizer, pair["chosen"]), token_length(tokenizer, pair["rejected"])) > args.max_tokens:
            dropped["too long"] += 1
            continue
        pairs.append(pair)
    if not pairs:
        raise SystemExit(f"no DPO pair survived the filters ({dropped}) for {args.chosen} and {args.rejected}")
    write_jsonl(args.out, pairs)
    print(f"{len(pairs)} pairs of {len(chosen)}; dropped: {dropped}")


if __name__ == "__main__":
    main()
