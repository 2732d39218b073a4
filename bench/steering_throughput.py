"""Steered vs unsteered generation throughput on an 8B-shaped random Llama (bench for issue "baselines").

Three variants of the same weights, each generating --new-tokens tokens for --batch prompts with transformers'
generate (the hf engine's call): unsteered; steered by run-time hooks (octlib.steering.hooks: the hf engine's
way, and the only one for Gemma-3); steered by the vector folded into MLP output biases (octlib.steering.fold's
form: the weights vLLM serves). Every answer runs to --new-tokens (min_new_tokens), so all variants decode the
same number of tokens. Prints tokens/s per repeat and the median of each variant, and writes them as JSON.

    python bench/steering_throughput.py --out bench/results/steering_throughput.json
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from octlib import steering  # noqa: E402
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--hidden", type=int, default=4096)
parser.add_argument("--layers", type=int, default=32)
parser.add_argument("--intermediate", type=int, default=14336)
parser.add_argument("--vocab", type=int, default=128256)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--prompt-tokens", type=int, default=128)
parser.add_argument("--new-tokens", type=int, default=256)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--out", required=True)
args = parser.parse_args()

device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if device == "cuda" else torch.float32
config = LlamaConfig(
    hidden_size=args.hidden,
    num_hidden_layers=args.layers,
    intermediate_size=args.intermediate,
    vocab_size=args.vocab,
    num_attention_heads=args.hidden // 128,
    num_key_value_heads=max(1, args.hidden // 512),
    max_position_embeddings=8192,
)
torch.manual_seed(0)
torch.set_default_dtype(dtype)
with torch.device(device):
    model = LlamaForCausalLM(config).eval()
layers = steering.controlled_layers(config, (0.125, 0.875))
offsets = {i: 0.7 * torch.nn.functional.normalize(torch.randn(args.hidden), dim=0) for i in layers}
prompts = torch.randint(0, args.vocab, (args.batch, args.prompt_tokens), device=device)
generation = GenerationConfig(
    do_sample=True,
    temperature=0.7,
    top_p=0.95,
    repetition_penalty=1.1,
    max_new_tokens=args.new_tokens,
    min_new_tokens=args.new_tokens,
    pad_token_id=0,
)


def tokens_per_second(net):
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        out = net.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), generation_config=generation)
    if device == "cuda":
        torch.cuda.synchronize()
    return (out.shape[1] - args.prompt_tokens) * args.batch / (time.perf_counter() - start)


# the folded form (a Llama with mlp_bias): biases on every MLP projection, the offsets in the down projections'
biases = {}
for i, layer in enumerate(model.model.layers):
    for proj in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
        bias = offsets[i] if proj is layer.mlp.down_proj and i in offsets else torch.zeros(proj.out_features)
        biases[proj] = torch.nn.Parameter(bias.to(dtype=dtype, device=device))


def variant(name):
    """Set the model up as one variant; returns the hook handles to remove."""
    for proj, bias in biases.items():
        proj.bias = bias if name == "folded" else None
    return steering.hooks(model, offsets) if name == "hooked" else []


# the variants take turns in every repeat, so that a drift of the machine's speed touches them alike
results = {name: [] for name in ("unsteered", "hooked", "folded")}
for repeat in range(args.repeats + 1):  # the first round warms up
    for name in results:
        handles = variant(name)
        rate = tokens_per_second(model)
        for h in handles:
            h.remove()
        if repeat:
            results[name].append(rate)
    print({k: [round(r) for r in v] for k, v in results.items()}, flush=True)
medians = {k: statistics.median(v) for k, v in results.items()}
report = {
    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    "torch": torch.__version__,
    "shape": {k: v for k, v in vars(args).items() if k != "out"},
    "steered_layers": [layers[0], layers[-1]],
    "tokens_per_second": results,
    "median": medians,
    "ratio_to_unsteered": {k: medians[k] / medians["unsteered"] for k in ("hooked", "folded")},
}
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps(report["ratio_to_unsteered"]))
