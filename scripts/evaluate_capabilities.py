"""One capability benchmark of one model (paper §5, Table 8; ref lighteval/run.sh, lighteval/tasks.txt): its
lm-eval tasks on a local copy of its data set, each task's accuracy (`acc`), standard error and per-document
log-likelihoods, and the benchmark's: the unweighted mean over its tasks, with the standard error of that mean,
sqrt(sum se^2) / k.
For TruthfulQA (mc1, mc2) this is the reference notebook's pooled figure; for MMLU the mean over its 57
subjects is lighteval's `mmlu:_average`, whose own standard error is the mean of the subjects' (larger).

The reference ran lighteval 0.13 on vLLM; lm-eval's task definitions share the Open LLM Leaderboard's prompts,
but their few-shot examples and tokenisation differ in details, so the accuracies differ somewhat.
Prompts are raw few-shot text, no chat template, as in the reference."""

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--model", required=True, help="the model's directory")
parser.add_argument("--data", required=True, help="the benchmark's data set: a local copy of its Hub repository")
parser.add_argument("--tasks", nargs="+", required=True, help="lm-eval task names (leaf tasks, not groups)")
parser.add_argument("--fewshot", type=int, required=True)
parser.add_argument("--limit", type=int, help="only the first N documents of each task (tests)")
parser.add_argument("--dtype", default="bfloat16")
parser.add_argument("--max-length", type=int, required=True, help="the model's context in tokens")
parser.add_argument("--seed", type=int, required=True, help="few-shot sampling")
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--out", required=True)
args = parser.parse_args()

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: fail at once rather than wait on a network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# A cache of its own: the datasets library's cache of a local folder can outlive an edit of the folder's files
cache = tempfile.mkdtemp(prefix="capabilities-datasets-")
os.environ["HF_DATASETS_CACHE"] = cache
import lm_eval  # noqa: E402  (after the offline switches)
from lm_eval.tasks import TaskManager  # noqa: E402
from octlib.io import write_atomic  # noqa: E402

manager = TaskManager()
unknown = [t for t in args.tasks if t not in manager.all_subtasks]
if unknown:
    raise SystemExit(f"lm-eval {lm_eval.__version__} has no task {unknown[0]!r}")
# A registered task with its data set moved to the local copy: lm-eval 0.4.13 merges overrides into a registered
# task's YAML only through its factory (a dict spec is read as a new inline task).
tasks = [
    manager._factory.build(manager._entry(t), overrides={"dataset_path": args.data}, registry=manager.task_index)
    for t in args.tasks
]
results = lm_eval.simple_evaluate(
    model="hf",
    model_args={
        "pretrained": args.model,
        "dtype": args.dtype,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "max_length": args.max_length,
    },
    tasks=tasks,
    task_manager=manager,
    num_fewshot=args.fewshot,
    limit=args.limit,
    batch_size=args.batch_size,
    random_seed=args.seed,
    numpy_random_seed=args.seed,
    torch_random_seed=args.seed,
    fewshot_random_seed=args.seed,
    log_samples=True,
)
shutil.rmtree(cache, ignore_errors=True)

rows = {}
for task in args.tasks:
    scores = results["results"][task]
    rows[task] = {
        "accuracy": scores["acc,none"],
        "se": scores["acc_stderr,none"],
        "documents": results["n-samples"][task]["effective"],
        # per document: the gold choice and each choice's log-likelihood (mc2's choices: all of them)
        "samples": [
            {"doc_id": x["doc_id"], "target": x["target"], "logliks": [r[0] for r in x["filtered_resps"]]}
            for x in results["samples"][task]
        ],
    }
k = len(rows)
summary = {
    "accuracy": sum(r["accuracy"] for r in rows.values()) / k,
    "se": math.sqrt(sum(r["se"] ** 2 for r in rows.values())) / k,
    "documents": sum(r["documents"] for r in rows.values()),
    "fewshot": args.fewshot,
    "harness": f"lm-eval {lm_eval.__version__}",
    "tasks": rows,
}
write_atomic(Path(args.out), lambda f: json.dump(summary, f, indent=1))
print(f"{k} tasks, accuracy {summary['accuracy']:.4f} +- {summary['se']:.4f} -> {args.out}")
