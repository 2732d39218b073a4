"""SFT examples (ref finetuning/introspection/*.sh) and folding and merging adapters (ref tools/fold_all.py,
tools/merge_loras.py)."""

import pytest
import torch
import yaml
from conftest import ROOT, run_script
from octlib import training
from octlib.validate import check
from peft import LoraConfig, PeftModel, get_peft_model
from train_sft import assistant_turns_example, last_message_example
from transformers import AutoModelForCausalLM, AutoTokenizer


def interaction_transcript():
    """B's view at the start of the last turn, as the reference saves it: it ends with A's turn r3."""
    return [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hello me."},
        {"role": "user", "content": "first turn of A"},
        {"role": "assistant", "content": "second turn of B"},
        {"role": "user", "content": "third turn of A"},
    ]


def target_text(tok, example):
    return tok.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != -100])


def test_last_message_target_of_an_interaction_is_the_other_turn_cut_by_the_header_difference(tiny_models):
    # '<|im_start|>assistant\n' is 5 characters longer than '<|im_start|>user\n' (Qwen/ChatML), so 5 are lost
    tok = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    example = last_message_example(tok, interaction_transcript(), 512)
    assert target_text(tok, example) == " turn of A<|im_end|>"  # "third" is lost
    # Gemma: '<start_of_turn>model\n' vs '<start_of_turn>user\n' is 1 character; eos is appended after a space
    tok = AutoTokenizer.from_pretrained(tiny_models["gemma"])
    example = last_message_example(tok, interaction_transcript(), 512)
    assert target_text(tok, example) == "hird turn of A<end_of_turn> <eos>"


def test_reflection_target_is_the_whole_reply(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    messages = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am me."}]
    assert target_text(tok, last_message_example(tok, messages, 512)) == "I am me.<|im_end|>"


def test_all_assistant_turns_mode_targets_every_assistant_turn_and_nothing_else(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    example = assistant_turns_example(tok, interaction_transcript(), 512)
    assert target_text(tok, example) == "Hello me.<|im_end|>second turn of B<|im_end|>"


def random_adapter(base_dir, out, seed, rank=4):
    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
        LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear"),
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.2)
    model.save_pretrained(out)
    return out


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_folded_model_matches_base_with_adapter(tmp_path, tiny_models):
    base_dir = tiny_models["chatml"]
    adapter = random_adapter(base_dir, tmp_path / "dpo", 0)
    ids = torch.randint(0, 400, (2, 16))
    expected = logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter), ids)
    for dtype, tolerance in (("float32", 1e-4), ("bfloat16", 0.1)):
        run_script(
            "fold_adapter.py", "--base", base_dir, "--adapter", adapter, "--dtype", dtype, "--out", tmp_path / dtype
        )
        folded = AutoModelForCausalLM.from_pretrained(tmp_path / dtype)
        assert folded.dtype == getattr(torch, dtype)
        assert (logits(folded.float(), ids) - expected).abs().max() < tolerance
    assert (tmp_path / "float32" / "chat_template.jinja").exists()


def test_release_adapter_cat_is_the_exact_weighted_sum_and_linear_adds_cross_terms(tmp_path, tiny_models):
    base_dir = tiny_models["chatml"]
    dpo, sft = random_adapter(base_dir, tmp_path / "dpo", 1), random_adapter(base_dir, tmp_path / "sft", 2)
    ids = torch.randint(0, 400, (2, 16))
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    # the exact sum: 1.0 x dW_dpo + 0.25 x dW_sft, by scaling each adapter inside one model
    both = PeftModel.from_pretrained(base, dpo, adapter_name="dpo")
    both.load_adapter(sft, adapter_name="sft")
    both.base_model.set_adapter(["dpo", "sft"])
    for module in both.modules():
        if isinstance(getattr(module, "scaling", None), dict) and "sft" in module.scaling:
            module.scaling["sft"] *= 0.25
    expected = logits(both, ids)
    for combination in ("cat", "linear"):
        run_script(
            "merge_release.py",
            "--base",
            base_dir,
            "--dpo",
            dpo,
            "--sft",
            sft,
            "--weights",
            1.0,
            0.25,
            "--combination",
            combination,
            "--base-name",
            "org/tiny",
            "--out",
            tmp_path / combination,
        )
        merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), tmp_path / combination)
        difference = (logits(merged, ids) - expected).abs().max().item()
        assert (difference < 1e-4) if combination == "cat" else (difference > 1e-3)
    assert '"base_model_name_or_path": "org/tiny"' in (tmp_path / "linear" / "adapter_config.json").read_text()


def test_reference_loss_weights_match_a_hand_computation():
    """Two reference micro-batches of 54 and 22 target tokens: a token weighs 1/(2 x 54) = 0.0093 in the first
    and 1/(2 x 22) = 0.0227 in the second (one token mean over the step would give 1/76 = 0.0132 to all)."""
    targets = [30, 24, 12, 10]
    for seed in range(100):  # a shuffle that pairs examples 0 and 1, and 2 and 3
        sampler = training.Steps([1, 1, 1, 1], 4, seed, micro=4, sort=False, group=2, targets=targets)
        list(sampler)
        if sorted(map(sorted, sampler.groups)) == [[0, 1], [2, 3]]:
            break
    assert [round(sampler.weights[i], 4) for i in range(4)] == [0.0093, 0.0093, 0.0227, 0.0227]
    assert sum(sampler.weights[i] * targets[i] for i in range(4)) == pytest.approx(1.0)


def sft_settings(micro_batch_size):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    settings = check(config, ROOT / "rules/schemas/config.schema.yaml", "config.yaml")["sft"]
    settings.update(global_batch_size=4, micro_batch_size=micro_batch_size, lora_rank=4, lora_alpha=8, max_length=128)
    return dict(settings, seed=0, max_steps=1)


@pytest.mark.parametrize("micro_batch_size", [1, 2, 4])
def test_sft_loss_is_the_references_mean_of_micro_batch_token_means_whatever_our_micro_batch(
    tmp_path, tiny_models, micro_batch_size
):
    from train_sft import build_trainer

    tok = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    replies = ["Yes.", "I am a long and careful answer. " * 6, "Perhaps so, friend.", "No " * 20]
    examples = [
        last_message_example(tok, [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": r}], 128)
        for i, r in enumerate(replies)
    ]
    model = AutoModelForCausalLM.from_pretrained(tiny_models["chatml"], dtype=torch.float32)
    trainer, decisions = build_trainer(
        model, tok, examples, sft_settings(micro_batch_size), str(tmp_path), "micro_batch_means"
    )
    assert decisions["micro_batch_size"] == micro_batch_size
    torch.manual_seed(0)
    for name, p in trainer.model.named_parameters():  # an adapter that changes the predictions
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    trainer.model.eval()
    batches = list(trainer.get_train_dataloader())
    loss = sum(trainer.compute_loss(trainer.model, dict(b)).item() for b in batches)

    def token_nlls(i):
        ids = torch.tensor([examples[i]["input_ids"]])
        labels = torch.tensor(examples[i]["labels"][1:])
        with torch.no_grad():
            logps = torch.log_softmax(trainer.model(input_ids=ids).logits[0, :-1].float(), -1)
        return -logps[labels != -100].gather(-1, labels[labels != -100, None])[:, 0]

    pairs = trainer.steps.groups  # the reference's micro-batches: pairs of the step's shuffle
    assert len(pairs) == 2 and sorted(sum(pairs, [])) == [0, 1, 2, 3]
    expected = sum(torch.cat([token_nlls(i) for i in pair]).mean().item() / 2 for pair in pairs)
    assert loss == pytest.approx(expected, rel=1e-5)
