"""Revealed preferences: the model answers WildChat prompts after being offered two traits (paper §5;
ref character/preferences/preferences.py).

Each prompt gets a random pair of distinct traits (--pairs-per-prompt pairs: the prompt is asked once with each),
drawn with --pair-seed (by default the workflow gives every model, variant and condition its own, as the
reference's unseeded draws differ between runs; preferences.paired shares them). Rows whose templated
prompt (without the special tokens added again) reaches --max-prompt-tokens are dropped.
"""

import argparse
import json
import random

from octlib import chat, engines
from octlib.io import fingerprint, read_jsonl, run_sharded


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    engines.add_arguments(parser)
    parser.add_argument("--prompts", required=True, help="JSONL with a 'prompt' field")
    parser.add_argument("--traits", type=json.loads, required=True, help="JSON list of single-word traits")
    parser.add_argument("--system", required=True, help="template with {personality_1}, {personality_2}, {condition}")
    parser.add_argument("--condition", required=True, help="the phrase that fills {condition}")
    parser.add_argument("--pair-seed", type=int, required=True)
    parser.add_argument("--pairs-per-prompt", type=int, required=True)
    parser.add_argument("--max-prompt-tokens", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    rng = random.Random(args.pair_seed)
    rows = []
    for row in read_jsonl(args.prompts):
        for _ in range(args.pairs_per_prompt):
            first = rng.choice(args.traits)
            second = rng.choice([t for t in args.traits if t != first])
            rows.append({"prompt": row["prompt"], "trait_1": first, "trait_2": second})

    engine = engines.from_args(args)

    def messages(row):
        system = chat.fill(
            args.system, personality_1=row["trait_1"], personality_2=row["trait_2"], condition=args.condition
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": row["prompt"]}]

    kept = []
    for row in rows:
        text = chat.render(engine.tokenizer, messages(row))
        # the reference counts the templated prompt without the special tokens its engine adds again
        if len(chat.encode(engine.tokenizer, text, False)) < args.max_prompt_tokens:
            kept.append(dict(row, ids=chat.encode(engine.tokenizer, text, args.special_tokens == "doubled")))
    print(f"{len(kept)} of {len(rows)} prompts under {args.max_prompt_tokens} tokens", flush=True)

    def work(chunk, start):
        texts = engine.generate([r["ids"] for r in chunk], args.sampling, args.seed + start)
        return [{k: r[k] for k in ("prompt", "trait_1", "trait_2")} | {"response": t} for r, t in zip(chunk, texts)]

    run_sharded(args.out, kept, args.shard_size, work, fingerprint(args))
    print(f"{len(kept)} preference responses written to {args.out}")


if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    main()
