"""A steering vector per student and persona with repeng (paper §4; ref character/robustness/generate/steered.py,
repeng 0.4.0's ControlVector.train).

The contrast is the reference's: each of repeng's 582 truncated outputs follows the student's chat template of
[system: the persona's prompt, user: "Please talk about anything."] (positive) and of the same user turn without
the system prompt (negative). pca_center over the last-token hidden states gives one unit direction per layer;
only the controlled layers (the 12.5th to 87.5th percentile of the layers, as the reference) are saved. Runs in
the steering environment (envs/steering.txt).
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np

np.float_ = np.float64  # repeng 0.4.0 names np.float_ in type hints; numpy 1.26 has it, this keeps numpy 2 working

import repeng.extract  # noqa: E402
import torch  # noqa: E402
from octlib import chat  # noqa: E402
from octlib.io import umask  # noqa: E402
from octlib.steering import controlled_layers, decoder_layers  # noqa: E402
from repeng import ControlVector, DatasetEntry  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--model", required=True, help="student model directory")
parser.add_argument("--constitution", required=True)
parser.add_argument("--system", required=True, help="template with {NAME} and {TRAITS}")
parser.add_argument("--name", required=True)
parser.add_argument("--user", required=True, help="the user turn of both sides of the contrast")
parser.add_argument("--suffixes", required=True, help="JSON list of truncated outputs")
parser.add_argument("--pairs", type=int, required=True, help="contrast pairs: the first this many suffixes")
parser.add_argument("--layers", type=float, nargs=2, required=True, help="fractions of the layers: low high")
parser.add_argument("--method", default="pca_center")
parser.add_argument("--batch-size", type=int, required=True)
parser.add_argument("--out", required=True, help="vector.safetensors; its layers go to the .json beside it")
args = parser.parse_args()

torch.manual_seed(0)
tokenizer = AutoTokenizer.from_pretrained(args.model)
tokenizer.padding_side = "left"
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if device == "cuda" else torch.float32
model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
# repeng 0.4.0 finds decoder layers only at model.model.layers (not in Gemma-3's multimodal class)
repeng.extract.model_layer_list = decoder_layers

traits = chat.traits_string(chat.load_traits(args.constitution))
system = chat.fill(args.system, NAME=args.name, TRAITS=traits)
user = [{"role": "user", "content": args.user}]
positive = chat.render(tokenizer, [{"role": "system", "content": system}, *user])
negative = chat.render(tokenizer, user)
suffixes = json.loads(Path(args.suffixes).read_text())[: args.pairs]
dataset = [DatasetEntry(positive=positive + s, negative=negative + s) for s in suffixes]
layers = controlled_layers(model.config, args.layers)
if not layers:
    raise SystemExit(f"steering.layers {args.layers} select no layer of the model's {len(decoder_layers(model))}")
vector = ControlVector.train(
    model, tokenizer, dataset, method=args.method, batch_size=args.batch_size, hidden_layers=layers
)
tensors = {f"layer.{i}": torch.from_numpy(np.asarray(vector.directions[i], dtype=np.float32)) for i in layers}


out = Path(args.out)
out.parent.mkdir(parents=True, exist_ok=True)
save_file(tensors, f"{out}.tmp")
os.chmod(f"{out}.tmp", 0o666 & ~umask())  # safetensors writes 0600: the mode of any new file instead
info = {
    "layers": layers,
    "method": args.method,
    "pairs": len(dataset),
    "hidden_size": int(vector.directions[layers[0]].size),
}
out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
Path(f"{out}.tmp").replace(out)
print(f"steering directions for layers {layers[0]}..{layers[-1]} from {len(dataset)} contrast pairs -> {out}")
