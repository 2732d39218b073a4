"""Turn a GGUF file into a regular model directory (float weights, tokenizer, chat template), once.

transformers dequantises a GGUF checkpoint when it loads one (`gguf_file=`), but flags the result as
quantised and refuses to save it. A plain model built from the same config, without the quantisation
entry, takes the dequantised weights unchanged and saves like any other; every later step then loads the
directory as it loads a Hub download.
"""

import argparse
from pathlib import Path

import torch
from octlib.io import save_dir_atomic
from transformers import AutoModelForCausalLM, AutoTokenizer

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--gguf", required=True, help="the .gguf file")
parser.add_argument("--dtype", required=True, choices=["float32", "bfloat16"], help="dtype of the saved weights")
parser.add_argument("--out", required=True)
args = parser.parse_args()

gguf = Path(args.gguf)
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
config = loaded.config
config.quantization_config = None
del config.quantization_config
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
if set(missing) - tied or unexpected:
    raise SystemExit(f"{gguf}: weights do not match the architecture: missing {missing}, unexpected {unexpected}")
if tied:
    model.tie_weights()
model.to(getattr(torch, args.dtype))
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token


def save(tmp):
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)


save_dir_atomic(args.out, save)
params = sum(p.numel() for p in model.parameters())
print(f"{gguf} -> {args.out}: {type(model).__name__}, {params / 1e6:.1f} M parameters, {args.dtype}")
