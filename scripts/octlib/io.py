"""Files that are complete or absent: atomic JSONL and directory writes, and resumable sharded generation."""

import csv
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

# Files up to this size are fingerprinted by content; larger ones (model weights) by size and modification time.
CONTENT_LIMIT = 64 * 2**20


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, write):
    """Call write(file) on a temporary file in the same folder, then rename it to path: readers never see half a
    file. The file gets the mode of any new file (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        write(f)
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)


def write_jsonl(path, rows):
    write_atomic(path, lambda f: f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_csv(path, rows):
    """Rows (dicts with the same keys) as a CSV table with a header, atomically."""
    rows = list(rows)

    def write(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(path, write)


def published(path, experiment):
    """The rows of the published numbers (data/paper_numbers.csv) of one experiment."""
    with open(path, encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["experiment"] == experiment]


def share(folder):
    """Give a folder and everything in it the modes of new files and folders (umask applied): mkdtemp makes
    0700 folders and safetensors 0600 files, which a group sharing results/ could not read."""
    mask = umask()
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def save_dir_atomic(path, save):
    """Call save(tmp_dir), then rename tmp_dir to path (replacing an older copy), with the modes of share()."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        save(tmp)
        share(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def digest(path):
    """A digest of a file or folder: the content of small files, size and modification time of large ones."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        stat = f.stat()
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
        if stat.st_size <= CONTENT_LIMIT:
            h.update(hashlib.sha256(f.read_bytes()).digest())
        else:
            h.update(f"{stat.st_size} {stat.st_mtime_ns}".encode())
    return h.hexdigest()


def fingerprint(args, ignore=("out", "shard_size", "engine_speed")):
    """What made a job's rows: its arguments (less those that change only speed) with every argument that names
    an existing file or folder replaced by that file's digest."""

    def resolve(value):
        if isinstance(value, list):
            return [resolve(v) for v in value]
        try:
            if isinstance(value, str) and value and os.path.exists(value):
                return {"digest": digest(value)}
        except (OSError, ValueError):  # a template, not a path
            pass
        return value

    settings = {k: resolve(v) for k, v in sorted(vars(args).items()) if k not in ignore}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def run_sharded(out_path, items, shard_size, work, fingerprint):
    """Process items in fixed shards, each saved when done, so a killed job resumes where it stopped.

    work(chunk, start) returns the output rows of items[start : start + len(chunk)]; it must depend on the
    items' global positions only, not on shard_size. Shards live in `<out_path>.shards/` until every one exists;
    they are then joined into out_path and removed. A rerun reuses the finished shards only when they were made
    with the same fingerprint (the job's settings and inputs, see fingerprint()) and shard size, and discards
    them otherwise, so a resumed file never mixes rows made under other settings.
    """
    out_path = Path(out_path)
    shard_dir = out_path.with_name(out_path.name + ".shards")
    stamp = shard_dir / "fingerprint"
    made_by = f"{fingerprint} {shard_size}"
    if shard_dir.exists():
        old = sorted(shard_dir.glob("*.jsonl"))
        if not stamp.exists() or stamp.read_text() != made_by:
            print(f"discarding {len(old)} shards in {shard_dir}: made with other settings or inputs", flush=True)
            shutil.rmtree(shard_dir)
        elif old:
            print(f"resuming from {len(old)} finished shards in {shard_dir}", flush=True)
    shard_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(made_by)
    rows = []
    for index, start in enumerate(range(0, len(items), shard_size)):
        shard = shard_dir / f"{index:05d}.jsonl"
        if not shard.exists():
            write_jsonl(shard, work(items[start : start + shard_size], start))
            print(f"shard {index} written ({min(start + shard_size, len(items))}/{len(items)} items)", flush=True)
        rows.extend(read_jsonl(shard))
    write_jsonl(out_path, rows)
    shutil.rmtree(shard_dir)
    return rows
