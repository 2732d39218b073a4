"""Download one file (or copy a local one) and verify its sha256 (the released prompt files, ref
constitutions/few-shot/). A mismatch writes nothing."""

import argparse
import hashlib
import urllib.request
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--url", required=True, help="a URL or a local path")
parser.add_argument("--sha256", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

if Path(args.url).is_file():
    data = Path(args.url).read_bytes()
else:
    with urllib.request.urlopen(args.url, timeout=60) as response:
        data = response.read()
digest = hashlib.sha256(data).hexdigest()
if digest != args.sha256:
    raise SystemExit(f"checksum mismatch for {args.url}: expected {args.sha256}, got {digest}; nothing written")
out = Path(args.out)
out.parent.mkdir(parents=True, exist_ok=True)
tmp = out.with_name(f".{out.name}.tmp")
tmp.write_bytes(data)
tmp.replace(out)
print(f"{args.url} -> {out} ({len(data)} bytes, sha256 ok)")
