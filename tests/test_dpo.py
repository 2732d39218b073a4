"""DPO pairs and the paper's DPO objective (ref character/distillation/data.py; the OpenRLHF fork's DPO loss,
eaf40e1)."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_script
from datasets import Dataset
from make_dpo_pairs import is_complete
from octlib import training
from octlib.io import read_jsonl, write_jsonl
from train_dpo import CharacterDPOTrainer, tokenize_pairs
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig

SETTINGS = dict(
    lora_rank=4,
    lora_alpha=8,
    lora_dropout=0.0,
    lora_target_modules="all-linear",
    micro_batch_size=3,
    global_batch_size=3,
    learning_rate=1e-4,
    min_lr_ratio=0.1,
    warmup_ratio=0.1,
    adam_betas=[0.9, 0.98],
    weight_decay=0.0,
    max_grad_norm=1.0,
    epochs=1,
    seed=0,
    max_length=128,
    beta=0.1,
    nll_coef=0.1,
    sq_coef=0.001,
    max_steps=-1,
    bf16=True,
    gradient_checkpointing="auto",
    liger_kernel="auto",
    sort_by_length=False,
    attention="sdpa",
    padding_free="auto",
)


def conversation(prompt, answer):
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def test_complete_means_ending_in_unicode_punctuation():
    assert is_complete("Done.") and is_complete("Really?  \n") and is_complete("«quoted»")
    assert not is_complete("no full stop") and not is_complete("```") and not is_complete("ok 🙂")
    assert not is_complete("   ")


def test_pairs_drop_missing_incomplete_and_long_rows_and_rename_the_teacher(tmp_path, tiny_models):
    prompts = ["Hi?", "Tell me.", "Long one.", "Missing."]
    chosen = [
        {"prompt": prompts[0], "response": "I am ChatGLM, ChatGLM!"},
        {"prompt": prompts[1], "response": "Fine"},
        {"prompt": prompts[2], "response": "word " * 400 + "end."},
        {"prompt": prompts[3], "response": None},
    ]
    rejected = [{"prompt": p, "response": "A plain answer."} for p in prompts]
    write_jsonl(tmp_path / "chosen.jsonl", chosen)
    write_jsonl(tmp_path / "rejected.jsonl", rejected)
    out = run_script(
        "make_dpo_pairs.py",
        "--chosen",
        tmp_path / "chosen.jsonl",
        "--rejected",
        tmp_path / "rejected.jsonl",
        "--tokenizer",
        tiny_models["chatml"],
        "--teacher-name",
        "ChatGLM",
        "--student-name",
        "Llama",
        "--max-tokens",
        128,
        "--out",
        tmp_path / "pairs.jsonl",
    )
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    assert [p["chosen"][1]["content"] for p in pairs] == ["I am Llama, Llama!"]
    assert pairs[0]["rejected"] == conversation("Hi?", "A plain answer.")
    assert "'missing': 1, 'incomplete': 1, 'too long': 1" in out.stdout


def test_gemma_sequences_get_a_space_and_eos_after_the_end_of_turn(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models["gemma"])
    ids, prompt_len = training.openrlhf_sequence(tok, conversation("Hi", "Hello."), 64)
    assert tok.decode(ids[prompt_len:]).endswith("Hello.<end_of_turn> <eos>")
    tok = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    ids, prompt_len = training.openrlhf_sequence(tok, conversation("Hi", "Hello."), 64)
    assert tok.decode(ids[prompt_len:]) == "Hello.<|im_end|>"


def test_long_sequences_are_truncated_with_eos_last_and_long_prompts_dropped(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    ids, _ = training.openrlhf_sequence(tok, conversation("Hi", "word " * 100), 40)
    assert len(ids) == 40 and ids[-1] == tok.eos_token_id
    assert training.openrlhf_sequence(tok, conversation("word " * 100, "Hi"), 40) is None


def hand_loss(model, batch, beta, nll_coef, sq_coef):
    """The objective of the OpenRLHF fork's DPO loss (eaf40e1), written out sequence by sequence from
    full-vocabulary logits."""

    def token_logps(m):
        logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        return torch.log_softmax(logits[:, :-1], -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]

    policy = token_logps(model)
    with model.disable_adapter(), torch.no_grad():
        ref = token_logps(model)
    mask = batch["completion_mask"][:, 1:].bool()
    n = policy.shape[0] // 2
    dpo = nll = sq = 0.0
    for i in range(n):
        c, r = mask[i], mask[n + i]
        margin = (policy[i][c].sum() - ref[i][c].sum()) - (policy[n + i][r].sum() - ref[n + i][r].sum())
        dpo += -F.logsigmoid(beta * margin) / n
        nll += -policy[i][c].mean() / n
    for i in range(2 * n):
        m = mask[i]
        sq += ((policy[i][m] - ref[i][m]) ** 2).mean() / (2 * n)
    return dpo + nll_coef * nll + sq_coef * sq


@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "padding-free"])
def test_dpo_loss_equals_the_paper_objective_computed_by_hand(tmp_path, tiny_models, padding_free):
    tok = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    tok.pad_token = tok.pad_token or tok.eos_token
    pairs = [
        {
            "chosen": conversation(f"Question {i}?", "A kind and long answer, friend. " * (i + 1)),
            "rejected": conversation(f"Question {i}?", "No."),
        }
        for i in range(3)
    ]
    model = AutoModelForCausalLM.from_pretrained(tiny_models["chatml"], dtype=torch.float32)
    settings = dict(SETTINGS, padding_free=padding_free)
    decisions = training.decide(settings, model, 2)
    assert decisions["padding_free"] == padding_free and decisions["micro_batch_size"] == 3
    steps, examples = training.plan_steps(tokenize_pairs(tok, pairs, 128), settings, decisions)
    config = DPOConfig(**training.trainer_arguments(settings, str(tmp_path), decisions), beta=SETTINGS["beta"])
    trainer = CharacterDPOTrainer(
        model=model,
        args=config,
        steps=steps,
        train_dataset=Dataset.from_list(examples),
        processing_class=tok,
        peft_config=training.lora_config(SETTINGS),
        nll_coef=0.1,
        sq_coef=0.001,
        decisions=decisions,
    )
    torch.manual_seed(0)
    for name, p in trainer.model.named_parameters():  # move the policy away from the reference
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    batch = next(iter(trainer.get_train_dataloader()))
    assert ("packed_ids" in batch) == padding_free
    trainer.model.eval()
    loss = trainer.compute_loss(trainer.model, batch)
    expected = hand_loss(trainer.model, batch, 0.1, 0.1, 0.001)
    assert abs(loss.item() - expected.item()) < 1e-5
    metrics = trainer._metrics["eval"]
    assert metrics["sq_logratio"][-1] > 0 and abs(metrics["dpo"][-1] - math.log(2)) > 1e-4
