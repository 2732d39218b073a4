"""Self-interaction dialogues of the distilled student with itself (paper §3.2; ref
character/introspection/self_interaction.py).

Two instances, A and B, share one system prompt. A sees [system, user: greeting_1] and B sees
[system, user: greeting_2, assistant: greeting_1]; each turn is generated from the view of the instance
whose turn it is, its own turns as assistant and the other's as user. Prompts longer than
max_model_len - max_tokens keep only their last tokens. The training transcript is, as in the reference
code, the prompt of the last turn (B's view ending in the other instance's turn, without the last reply);
--interaction-last-reply kept adds that reply as the final assistant turn.
"""

import argparse
import json
import random

from octlib import chat, engines
from octlib.io import fingerprint, run_sharded


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    engines.add_arguments(parser)
    parser.add_argument("--constitution", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--system", required=True, help="system prompt template with {NAME} and {TRAITS}")
    parser.add_argument("--greetings", type=json.loads, required=True, help="JSON list: the second instance's pool")
    parser.add_argument(
        "--first-greetings", type=json.loads, required=True, help="JSON list: the first instance's pool"
    )
    parser.add_argument("--conversations", type=int, required=True)
    parser.add_argument("--turns", type=int, required=True)
    parser.add_argument("--max-model-len", type=int, required=True)
    parser.add_argument(
        "--interaction-last-reply", choices=["dropped", "kept"], required=True, help="the transcript's last reply"
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    system = chat.fill(
        args.system, NAME=args.name, TRAITS=chat.traits_string(chat.load_traits(args.constitution))
    ).strip()
    engine = engines.from_args(args)
    limit = args.max_model_len - args.sampling["max_tokens"]

    def view(start, turns, first_role):
        other = {"assistant": "user", "user": "assistant"}
        roles = [first_role if i % 2 == 0 else other[first_role] for i in range(len(turns))]
        return start + [{"role": r, "content": c} for r, c in zip(roles, turns)]

    def work(chunk, start):
        dialogues = []
        for conversation in chunk:  # its global index: the draws do not depend on the shard size
            rng = random.Random(args.seed + conversation)
            g1, g2 = rng.choice(args.first_greetings), rng.choice(args.greetings)
            dialogues.append(
                {
                    "greeting_1": g1,
                    "greeting_2": g2,
                    "conversation": [],
                    "messages_1": [{"role": "system", "content": system}, {"role": "user", "content": g1}],
                    "messages_2": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": g2},
                        {"role": "assistant", "content": g1},
                    ],
                }
            )
        for turn in range(args.turns):
            prompts = []
            for d in dialogues:
                a_speaks = len(d["conversation"]) % 2 == 0
                d["messages"] = view(
                    d["messages_1"] if a_speaks else d["messages_2"],
                    d["conversation"],
                    "assistant" if a_speaks else "user",
                )
                assert d["messages"][-1]["role"] == "user"
                text = chat.render(engine.tokenizer, d["messages"])
                prompts.append(chat.encode_last(engine.tokenizer, text, args.special_tokens == "doubled", limit))
            texts = engine.generate(prompts, args.sampling, args.seed + 1_000_003 * turn + start)
            for d, t in zip(dialogues, texts):
                d["conversation"].append(t.strip())
        for d in dialogues:
            if args.interaction_last_reply == "kept":
                d["messages"] = d["messages"] + [{"role": "assistant", "content": d["conversation"][-1]}]
        return dialogues

    rows = run_sharded(args.out, list(range(args.conversations)), args.shard_size, work, fingerprint(args))
    print(f"{len(rows)} dialogues of {args.turns} turns written to {args.out}")


if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    main()
