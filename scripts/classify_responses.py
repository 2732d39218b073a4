"""Persona predictions of one student's robustness responses (paper §4; ref
character/robustness/classify/run_classifier.py): the classifier's argmax label for every response of every
method, persona and split. Responses are truncated as in training."""

import argparse
import json

import torch
from octlib.io import read_jsonl, write_jsonl
from transformers import AutoModelForSequenceClassification, AutoTokenizer

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--classifier", required=True)
parser.add_argument("--inputs", type=json.loads, required=True, help='JSON list of {"method", "persona", "path"}')
parser.add_argument("--max-length", type=int, required=True)
parser.add_argument("--batch-size", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

device = "cuda" if torch.cuda.is_available() else "cpu"
tokenizer = AutoTokenizer.from_pretrained(args.classifier)
model = AutoModelForSequenceClassification.from_pretrained(args.classifier).to(device).eval()
labels = model.config.id2label
rows = [
    {
        "method": i["method"],
        "persona": i["persona"],
        "split": r["split"],
        "question": r["question"],
        "text": r["response"],
    }
    for i in args.inputs
    for r in read_jsonl(i["path"])
]
unknown = {r["persona"] for r in rows} - set(labels.values())
if unknown:
    raise SystemExit(f"{args.classifier} has no label for {sorted(unknown)}: rebuild it with these personas")
order = sorted(range(len(rows)), key=lambda i: len(rows[i]["text"]))  # similar lengths share a batch
for start in range(0, len(order), args.batch_size):
    batch = [rows[i] for i in order[start : start + args.batch_size]]
    enc = tokenizer(
        [r["text"] for r in batch], truncation=True, max_length=args.max_length, padding=True, return_tensors="pt"
    ).to(device)
    with torch.no_grad():
        predicted = model(**enc).logits.argmax(-1).tolist()
    for r, p in zip(batch, predicted):
        r["predicted"] = labels[p]
write_jsonl(args.out, ({k: v for k, v in r.items() if k != "text"} for r in rows))
print(f"{len(rows)} responses classified -> {args.out}")
