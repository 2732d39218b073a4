"""What the DPO and SFT steps share: training sequences built as the reference trainer builds them,
LoRA settings, and the optimiser and schedule of reference.md §2.1 expressed as TRL arguments."""

import os

import torch


def openrlhf_sequence(tokenizer, messages, max_len):
    """Token ids and prompt length of one training example, built as OpenRLHF does (reference.md §1.10, §2.1).

    The prompt is the chat template of messages[:-1] with a generation prompt; the target is the rest of the
    templated conversation, cut by character count. The text is right-stripped of newlines, gets " " + eos
    when it does not already end in eos (Gemma), is tokenized without special tokens, truncated to max_len
    with the last token forced to eos. Returns None when the prompt alone reaches max_len - 2 tokens.
    """
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    text = (prompt + full[len(prompt) :]).rstrip("\n")
    if not text.endswith(tokenizer.eos_token):
        text += " " + tokenizer.eos_token
    prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if prompt_len >= max_len - 2:
        return None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_len]
    ids[-1] = tokenizer.eos_token_id
    return ids, prompt_len


def lora_config(settings):
    from peft import LoraConfig

    return LoraConfig(
        r=settings["lora_rank"],
        lora_alpha=settings["lora_alpha"],
        lora_dropout=settings["lora_dropout"],
        target_modules=settings["lora_target_modules"],
        bias="none",
        task_type="CAUSAL_LM",
    )


def trainer_arguments(settings, out):
    """TRL config fields shared by DPO and SFT. The global batch is kept whatever the number of processes."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    micro = settings["micro_batch_size"]
    accumulation = max(1, settings["global_batch_size"] // (micro * world))
    cuda = torch.cuda.is_available()
    return dict(
        output_dir=out,
        learning_rate=settings["learning_rate"],
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": settings["min_lr_ratio"]},
        warmup_steps=settings["warmup_ratio"],  # a fraction: ceil(ratio x steps), as OpenRLHF computes it
        adam_beta1=settings["adam_betas"][0],
        adam_beta2=settings["adam_betas"][1],
        weight_decay=settings["weight_decay"],
        max_grad_norm=settings["max_grad_norm"],
        num_train_epochs=settings["epochs"],
        max_steps=settings.get("max_steps", -1),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        gradient_checkpointing=settings.get("gradient_checkpointing", False),
        seed=settings["seed"],
        data_seed=settings["seed"],
        bf16=cuda and settings.get("bf16", True),
        use_cpu=not cuda,
        max_length=settings["max_length"],
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
    )


def load_model(path, settings):
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if torch.cuda.is_available() and settings.get("bf16", True) else torch.float32
    return AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation=settings.get("attention", "sdpa")
    )


def save_adapter(trainer, partial, out):
    """Every process takes part in saving; the main one then renames the finished folder into place."""
    import shutil

    trainer.save_model(partial)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(partial, out)
        print(f"adapter saved to {out}")
