"""The steering coefficient of a student and persona that has none in the config (ours: the reference set one by
hand per model family, ref character/robustness/generate/steered.py).

The sweep: coefficient = scale x the mean norm of the student's hidden states at the controlled layers (measured
on the calibration questions), for each scale; at each, the steered student answers held-out questions (Pure-Dove
questions after those the robustness evaluation uses). Two scores per coefficient:
- persona: how much likelier an answer is when the student is prompted with the persona (the system prompt the
  vector was contrasted with) than without it, in nats per answer token, averaged over answers: the vector's aim
  is to make the plain student behave as the prompted one does;
- coherence: the perplexity of the answers under the unsteered student, over that of its own unsteered answers.
The rule: the coefficient with the highest persona score among those whose perplexity ratio is at most
--max-perplexity-ratio. When none is, the job fails and writes nothing.
"""

import argparse
import json
import math
from pathlib import Path

import torch
from octlib import chat, engines, steering
from octlib.io import read_jsonl, write_csv
from safetensors.torch import load_file

parser = argparse.ArgumentParser(description=__doc__)
engines.add_arguments(parser)
parser.add_argument("--vector", required=True, help="vector.safetensors, with its vector.json beside it")
parser.add_argument("--prompts", required=True, help="JSONL with a 'prompt' field: the calibration questions")
parser.add_argument("--system", required=True, help="the persona's system prompt template ({NAME}, {TRAITS})")
parser.add_argument("--name", required=True)
parser.add_argument("--constitution", required=True)
parser.add_argument("--scales", type=float, nargs="+", required=True)
parser.add_argument("--max-perplexity-ratio", type=float, required=True)
parser.add_argument("--out", required=True, help="CSV of the sweep; the chosen row has chosen=1")
args = parser.parse_args()
if args.engine != "hf":
    raise SystemExit("the calibration sweep runs on the hf engine (it changes the steering between generations)")

engine = engines.from_args(args)
model, tokenizer = engine.model, engine.tokenizer
layers = json.loads(Path(args.vector).with_suffix(".json").read_text())["layers"]
vector = load_file(args.vector)
directions = {i: vector[f"layer.{i}"].float() for i in layers}
system = chat.fill(args.system, NAME=args.name, TRAITS=chat.traits_string(chat.load_traits(args.constitution)))
questions = [row["prompt"] for row in read_jsonl(args.prompts)]
doubled = args.special_tokens == "doubled"
plain = [chat.encode(tokenizer, chat.render(tokenizer, [{"role": "user", "content": q}]), doubled) for q in questions]
prompted = [
    chat.encode(
        tokenizer,
        chat.render(tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": q}]),
        doubled,
    )
    for q in questions
]


def forward(ids, **kwargs):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids], device=engine.device), **kwargs)


# the scale of the residual stream at the controlled layers
hidden = [forward(ids, output_hidden_states=True).hidden_states for ids in plain]
norm = sum(h[i + 1][0].float().norm(dim=-1).mean().item() for h in hidden for i in layers) / (len(hidden) * len(layers))
print(f"mean hidden-state norm at layers {layers[0]}..{layers[-1]}: {norm:.4g}", flush=True)


def answer_logprobs(prompt_ids, answer_ids):
    """Summed log-probability of the answer's tokens after the prompt, and their count."""
    if not answer_ids:
        return 0.0, 0
    logits = forward(prompt_ids + answer_ids).logits[0, len(prompt_ids) - 1 : -1].float()
    picked = torch.log_softmax(logits, -1).gather(-1, torch.tensor(answer_ids, device=logits.device)[:, None])
    return picked.sum().item(), len(answer_ids)


def sweep_point(coefficient):
    handles = steering.hooks(model, {i: coefficient * d for i, d in directions.items()}) if coefficient else []
    _, answers = engine.generate(plain, args.sampling, args.seed, return_ids=True)
    for h in handles:
        h.remove()
    nll, tokens, persona = 0.0, 0, []
    for p, q, a in zip(plain, prompted, answers):
        base, n = answer_logprobs(p, a)
        if n:
            nll, tokens = nll - base, tokens + n
            persona.append((answer_logprobs(q, a)[0] - base) / n)
    mean = sum(persona) / len(persona) if persona else float("nan")
    sem = (
        math.sqrt(sum((x - mean) ** 2 for x in persona) / (len(persona) - 1) / len(persona))
        if len(persona) > 1
        else 0.0
    )
    return {"perplexity": math.exp(nll / tokens) if tokens else float("inf"), "persona": mean, "persona_sem": sem}


reference = sweep_point(0.0)
rows = [{"scale": 0.0, "coefficient": 0.0, **reference}]
for scale in args.scales:
    rows.append({"scale": scale, "coefficient": scale * norm, **sweep_point(scale * norm)})
    print(rows[-1], flush=True)
for row in rows:
    row["perplexity_ratio"] = row["perplexity"] / reference["perplexity"]
    row["coherent"] = int(row["scale"] > 0 and row["perplexity_ratio"] <= args.max_perplexity_ratio)
coherent = [r for r in rows if r["coherent"]]
if not coherent:
    raise SystemExit(
        f"no coefficient of the sweep (steering.calibration.scales {args.scales} x hidden-state norm {norm:.4g}) keeps "
        f"the perplexity within {args.max_perplexity_ratio}x that of the unsteered answers "
        f"(steering.calibration.max_perplexity_ratio); ratios: {[round(r['perplexity_ratio'], 3) for r in rows[1:]]}"
    )
best = max(coherent, key=lambda r: r["persona"])
for row in rows:
    row["chosen"] = int(row is best)
write_csv(args.out, rows)
print(f"chosen coefficient {best['coefficient']:.4g} (scale {best['scale']}) -> {args.out}")
