"""Files that are complete or absent: atomic JSONL and directory writes, and resumable sharded generation."""

import json
import os
import shutil
import tempfile
from pathlib import Path


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    """Write rows under a temporary name in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def save_dir_atomic(path, save):
    """Call save(tmp_dir), then rename tmp_dir to path (replacing an older copy)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        save(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_sharded(out_path, items, shard_size, work):
    """Process items in fixed shards, each saved when done, so a killed job resumes where it stopped.

    work(chunk, shard_index) returns the output rows of one shard. Shards live in `<out_path>.shards/`
    until every one exists; they are then joined into out_path and removed. The shard boundaries
    depend only on shard_size, so a rerun with the same settings reuses finished shards exactly.
    """
    out_path = Path(out_path)
    shard_dir = out_path.with_name(out_path.name + ".shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    settings = shard_dir / "shard_size"
    if settings.exists() and int(settings.read_text()) != shard_size:
        raise SystemExit(
            f"{shard_dir} holds shards of size {settings.read_text()}, not {shard_size}: remove it to restart"
        )
    settings.write_text(str(shard_size))
    rows = []
    for index, start in enumerate(range(0, len(items), shard_size)):
        shard = shard_dir / f"{index:05d}.jsonl"
        if not shard.exists():
            write_jsonl(shard, work(items[start : start + shard_size], index))
            print(f"shard {index} written ({min(start + shard_size, len(items))}/{len(items)} items)", flush=True)
        rows.extend(read_jsonl(shard))
    write_jsonl(out_path, rows)
    shutil.rmtree(shard_dir)
    return rows
