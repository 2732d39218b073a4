"""The steering a steered generation job applies: which vector (by path and sha256, so that a new vector makes
a new file), its layers and the coefficient that multiplies it (the student's steering_coefficient)."""

import argparse
import hashlib
import json
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--vector", required=True, help="vector.safetensors, with its vector.json beside it")
parser.add_argument("--coefficient", type=float, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

vector = Path(args.vector)
info = json.loads(vector.with_suffix(".json").read_text())
settings = {
    "vector": str(vector),
    "sha256": hashlib.sha256(vector.read_bytes()).hexdigest(),
    "layers": info["layers"],
    "coefficient": args.coefficient,
}
Path(args.out).write_text(json.dumps(settings, indent=1) + "\n")
print(f"coefficient {args.coefficient} on layers {info['layers']} -> {args.out}")
