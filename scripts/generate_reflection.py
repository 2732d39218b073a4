"""Self-reflection transcripts from the distilled student (paper §3.2; ref character/introspection/self_reflection.py).

The student with its DPO adapter answers each of the reflection prompts N times, with a system prompt that
names it and lists its traits. The saved training messages drop the system prompt; nothing is filtered.
"""

import argparse
import json

from octlib import chat, engines
from octlib.io import fingerprint, run_sharded


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    engines.add_arguments(parser)
    parser.add_argument("--constitution", required=True)
    parser.add_argument("--name", required=True, help="the student's name, e.g. Llama")
    parser.add_argument("--system", required=True, help="system prompt template with {NAME} and {TRAITS}")
    parser.add_argument("--prompts", type=json.loads, required=True, help="JSON list of reflection prompts")
    parser.add_argument("--samples", type=int, required=True, help="responses per prompt")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    system = chat.fill(args.system, NAME=args.name, TRAITS=chat.traits_string(chat.load_traits(args.constitution)))
    prompts = [p for p in args.prompts for _ in range(args.samples)]
    engine = engines.from_args(args)

    def work(chunk, start):
        prompts = [
            engine.prompt([{"role": "system", "content": system}, {"role": "user", "content": p}]) for p in chunk
        ]
        texts = engine.generate(prompts, args.sampling, args.seed + start)
        return [
            {
                "prompt": p,
                "response": t.strip(),
                "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": t.strip()}],
            }
            for p, t in zip(chunk, texts)
        ]

    rows = run_sharded(args.out, prompts, args.shard_size, work, fingerprint(args))
    print(f"{len(rows)} reflections written to {args.out}")


if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    main()
