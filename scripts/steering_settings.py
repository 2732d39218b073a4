"""The steering a steered generation job applies: which vector (by path and sha256, so that a new vector makes
a new file), its layers and the coefficient that multiplies it: the student's steering_coefficient, or the one
the calibration sweep chose."""

import argparse
import csv
import hashlib
import json
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--vector", required=True, help="vector.safetensors, with its vector.json beside it")
source = parser.add_mutually_exclusive_group(required=True)
source.add_argument("--coefficient", type=float)
source.add_argument("--calibration", help="the sweep's CSV (scripts/calibrate_steering.py)")
parser.add_argument("--out", required=True)
args = parser.parse_args()

coefficient = args.coefficient
if args.calibration:
    [chosen] = [r for r in csv.DictReader(open(args.calibration)) if r["chosen"] == "1"]
    coefficient = float(chosen["coefficient"])
vector = Path(args.vector)
info = json.loads(vector.with_suffix(".json").read_text())
settings = {
    "vector": str(vector),
    "sha256": hashlib.sha256(vector.read_bytes()).hexdigest(),
    "layers": info["layers"],
    "coefficient": coefficient,
    "chosen_by": "calibration" if args.calibration else "config",
}
Path(args.out).write_text(json.dumps(settings, indent=1) + "\n")
print(f"coefficient {coefficient} on layers {info['layers']} -> {args.out}")
