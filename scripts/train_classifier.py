"""The persona classifier of one student (paper §4; ref character/robustness/classify/train_classifier.py).

ModernBERT with a sequence-classification head, one label per persona in the config's order, trained for one
epoch on the default-split responses (no break-character instruction) of every method and persona, with the
reference's settings: AdamW, lr 5e-4 on a cosine schedule with 5% warm-up, weight decay 1e-6, gradient norm 1.0,
per-device batch 8 with 2 accumulation steps. Ours: the responses to a fixed share of the questions
(--held-out, the same questions for every method and persona) are kept out of training, so that an F1 on them
measures the classifier (the reference trains and scores on the same data).
"""

import argparse
import json
import random
import shutil
import tempfile

import torch
from datasets import Dataset
from octlib.io import read_jsonl, save_dir_atomic
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--base", required=True, help="ModernBERT model directory")
parser.add_argument("--inputs", type=json.loads, required=True, help='JSON list of {"method", "persona", "path"}')
parser.add_argument("--labels", nargs="+", required=True, help="personas, in label order")
parser.add_argument("--settings", type=json.loads, required=True, help="JSON: the classifier block")
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
s = args.settings

rows = [
    dict(r, label=args.labels.index(i["persona"]))
    for i in args.inputs
    for r in read_jsonl(i["path"])
    if r["split"] == "default"
]
questions = sorted({r["question"] for r in rows})
random.Random(args.seed).shuffle(questions)
held_out = set(questions[: round(s["held_out"] * len(questions))])
train = [r for r in rows if r["question"] not in held_out]
random.Random(args.seed).shuffle(train)
if not train:
    raise SystemExit("no default-split response is left to train the classifier on (classifier.held_out too large?)")
print(f"{len(train)} training responses, {len(rows) - len(train)} held out ({len(held_out)} questions)", flush=True)

set_seed(args.seed)
gpu = torch.cuda.is_available()
tokenizer = AutoTokenizer.from_pretrained(args.base)
model = AutoModelForSequenceClassification.from_pretrained(
    args.base,
    num_labels=len(args.labels),
    id2label=dict(enumerate(args.labels)),
    label2id={p: i for i, p in enumerate(args.labels)},
    problem_type="single_label_classification",
    dtype=torch.bfloat16 if gpu else torch.float32,  # the reference trains pure-bf16 weights
)
data = Dataset.from_list([{"text": r["response"], "label": r["label"]} for r in train]).map(
    lambda b: tokenizer(b["text"], truncation=True, max_length=s["max_length"]), batched=True, remove_columns=["text"]
)
training = TrainingArguments(
    output_dir=tempfile.mkdtemp(prefix="classifier-"),  # nothing is saved there (save_strategy no)
    per_device_train_batch_size=s["batch_size"],
    gradient_accumulation_steps=s["gradient_accumulation_steps"],
    learning_rate=s["learning_rate"],
    lr_scheduler_type="cosine",
    warmup_steps=s["warmup_ratio"],  # transformers 5: a float below 1 is a share of the steps
    weight_decay=s["weight_decay"],
    max_grad_norm=s["max_grad_norm"],
    num_train_epochs=s["epochs"],
    bf16=gpu,
    gradient_checkpointing=gpu,
    logging_steps=s["logging_steps"],
    save_strategy="no",
    eval_strategy="no",
    report_to=[],
    seed=args.seed,
    data_seed=args.seed,
    use_cpu=not gpu,
)
trainer = Trainer(model=model, args=training, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer))
trainer.train()


def save(folder):
    trainer.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "held_out.json").write_text(json.dumps(sorted(held_out), ensure_ascii=False, indent=1) + "\n")
    (folder / "training_log.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")


save_dir_atomic(args.out, save)
shutil.rmtree(training.output_dir, ignore_errors=True)
print(f"classifier over {len(args.labels)} personas -> {args.out}")
