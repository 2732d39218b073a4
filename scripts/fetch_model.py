"""Download a model from the Hugging Face Hub once into resources/, at a pinned revision.

Runs on a login node (a Snakemake localrule); every other job then reads the local copy with the Hub's
offline flags set.
"""

import argparse

from huggingface_hub import snapshot_download
from octlib.io import save_dir_atomic

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--repo", required=True, help="Hub id, e.g. meta-llama/Llama-3.1-8B-Instruct")
parser.add_argument("--revision", default="main", help="branch, tag or commit hash")
parser.add_argument("--repo-type", default="model", choices=["model", "dataset"])
parser.add_argument("--out", required=True)
args = parser.parse_args()

save_dir_atomic(
    args.out,
    lambda tmp: snapshot_download(
        args.repo,
        revision=args.revision,
        repo_type=args.repo_type,
        local_dir=tmp,
        ignore_patterns=["original/*", "*.pth", "*.gguf"],
    ),
)
print(f"{args.repo}@{args.revision} -> {args.out}")
