"""What the DPO and SFT steps share: training sequences built as the reference trainer builds them,
LoRA settings, the optimiser and schedule of the reference's finetuning/*.sh (OpenRLHF flags) as TRL arguments, and
the speed-ups
that leave the objective as it is (measured by bench/train_throughput.py)."""

import functools
import importlib
import inspect
import math
import os

import torch
import torch.nn.functional as F
from transformers.trainer_pt_utils import BatchRebalanceSampler

# Micro-batches of many lengths fragment PyTorch's CUDA memory cache: growable segments keep what it reserves
# near what is allocated (an 8B DPO run: 55 GB reserved instead of 80; bench/results/). Read at the first
# CUDA allocation; a value the user set wins.
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def openrlhf_sequence(tokenizer, messages, max_len):
    """Token ids and prompt length of one training example, built as OpenRLHF does (the fork at eaf40e1).

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


def decide(settings, model=None, sequences_per_example=1):
    """Every choice of how to train, made once for this job and its hardware, so that it can be logged and saved
    beside the adapter: processes, micro-batch and accumulation (the global batch is kept whatever the number of
    processes), checkpointing, Liger, padding-free micro-batches, attention, dtype. model and
    sequences_per_example (2 for DPO: chosen and rejected) size the activations for the "auto" choices."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if settings["global_batch_size"] % world:
        raise SystemExit(f"global_batch_size {settings['global_batch_size']} does not divide among {world} processes")
    per_process = settings["global_batch_size"] // world
    liger = liger_kernel(settings)
    micro = micro_batch_size(settings, model, sequences_per_example, per_process, liger)
    checkpointing = gradient_checkpointing(settings, model, micro * sequences_per_example, liger)
    cuda = torch.cuda.is_available()
    # padding-free micro-batches are filled by tokens: those of the micro-batch at full length, or with micro_batch_size
    # auto, as many as fit the GPU
    tokens = micro * sequences_per_example * settings["max_length"]
    if settings["micro_batch_size"] == "auto" and model is not None and cuda and not checkpointing:
        tokens = max(tokens, int(activation_tokens(model, liger)))
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "processes": world,
        "examples_per_process": per_process,
        "micro_batch_size": micro,
        "gradient_accumulation_steps": per_process // micro,
        "gradient_checkpointing": checkpointing,
        "liger_kernel": liger,
        "padding_free": padding_free(settings),
        "micro_batch_tokens": tokens,
        "sort_by_length": settings["sort_by_length"],
        "attention": settings["attention"],
        "dtype": "bfloat16" if cuda and settings["bf16"] else "float32",
    }


def trainer_arguments(settings, out, decisions):
    """TRL config fields shared by DPO and SFT, from the settings and the job's decisions (decide)."""
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
        max_steps=settings["max_steps"],
        per_device_train_batch_size=decisions["micro_batch_size"],
        gradient_accumulation_steps=decisions["gradient_accumulation_steps"],
        gradient_checkpointing=decisions["gradient_checkpointing"],
        use_liger_kernel=decisions["liger_kernel"],
        seed=settings["seed"],
        data_seed=settings["seed"],
        bf16=decisions["dtype"] == "bfloat16",
        use_cpu=decisions["device"] == "cpu",
        max_length=settings["max_length"],
        logging_steps=1,
        logging_nan_inf_filter=False,  # its check reads every micro-batch's loss, which stalls the GPU
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
    )


def gpu_memory():
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def activation_tokens(model, liger):
    """How many tokens' activations fit the GPU beside the weights, without checkpointing. A token keeps, per LoRA
    decoder layer, about 15 x hidden + 4 x intermediate bf16 values for the backward pass, 10 x hidden +
    3.5 x intermediate with Liger's kernels (measured on an 8B Llama: bench/results/)."""
    text = model.config.get_text_config()
    h, i = text.hidden_size, text.intermediate_size
    per_token = text.num_hidden_layers * 2 * ((10 * h + 3.5 * i) if liger else (15 * h + 4 * i))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    # 1.2: the LoRA weights with their gradients and Adam state, the LM head's chunks, the reference forward
    return (0.85 * gpu_memory() - 1.2 * weights) / per_token


def fits(settings, model, sequences, liger):
    """Whether a micro-batch of full-length sequences trains without checkpointing."""
    return sequences * settings["max_length"] < activation_tokens(model, liger)


def micro_batch_size(settings, model, sequences_per_example, per_process, liger):
    """auto: the largest divisor of the per-process batch that fits the GPU without checkpointing (a step costs
    the same whatever the micro-batch, but a small one leaves the GPU waiting on Python); 2 on CPU."""
    wanted = settings["micro_batch_size"]
    if wanted != "auto":
        return wanted
    if model is None or not torch.cuda.is_available():
        return min(2, per_process)
    sizes = [m for m in range(per_process, 0, -1) if per_process % m == 0]
    return next((m for m in sizes if fits(settings, model, m * sequences_per_example, liger)), 1)


def gradient_checkpointing(settings, model, sequences, liger):
    """auto: on only when the micro-batch would not fit the GPU otherwise, since recomputing the activations
    costs about a third of the step."""
    wanted = settings["gradient_checkpointing"]
    if wanted != "auto":
        return bool(wanted)
    return model is not None and torch.cuda.is_available() and not fits(settings, model, sequences, liger)


def liger_kernel(settings):
    """Liger's Triton kernels for RMSNorm, SwiGLU and RoPE: the same arithmetic, fewer kernels and saved
    activations. GPU only; auto: where the liger-kernel package is installed."""
    wanted = settings["liger_kernel"]
    if not torch.cuda.is_available() or wanted != "auto":
        return bool(wanted) and torch.cuda.is_available()
    try:
        importlib.import_module("liger_kernel.transformers")
        return True
    except Exception:  # noqa: BLE001 - absent, or built for another torch or Triton: train without it
        return False


def padding_free(settings):
    """Whether a micro-batch runs as one row of its sequences laid end to end, without padding: auto, on GPU in
    bf16 where PyTorch has variable-length flash attention (torch.nn.attention.varlen). Elsewhere true works too,
    with SDPA over a block-diagonal mask (slower; for tests)."""
    wanted = settings["padding_free"]
    if wanted != "auto":
        return bool(wanted)
    return torch.cuda.is_available() and settings["bf16"] and varlen_parameters() is not None


@functools.cache
def varlen_parameters():
    """The parameters of PyTorch's varlen attention, which change between versions; None where it has none."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return set(inspect.signature(varlen_attn).parameters)


class PackRows:
    """Collator wrapper: adds the padding-free form of a right-padded batch (input_ids, attention_mask and
    completion_mask of shape [rows, T]): every row's tokens end to end in one row (packed_ids, packed_labels with
    -100 outside the completions, position_ids restarting at 0), where each sequence starts (cu_seq_lens), the
    longest (max_length), and, for each position of the padded layout but the last, the packed position that
    predicts its next token (unpack_index; padding points anywhere, the completion mask hides it)."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, examples):
        batch = self.collate(examples)
        keep = batch["attention_mask"].bool()
        lengths = keep.sum(1)
        starts = F.pad(lengths.cumsum(0), (1, 0))
        positions = torch.arange(keep.size(1)).expand_as(keep)
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        batch.update(
            packed_ids=batch["input_ids"][keep][None],
            packed_labels=labels[keep][None],
            position_ids=positions[keep][None],
            cu_seq_lens=starts.to(torch.int32),
            max_length=int(lengths.max()),
            unpack_index=(starts[:-1, None] + positions[:, :-1]).clamp(max=int(starts[-1]) - 2),
        )
        return batch


VARLEN = "octlib_varlen"


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Causal attention over packed sequences, each attending only to itself, with PyTorch's variable-length
    flash attention: the attention function transformers calls (query [1, heads, tokens, dim]), given the
    packing by cu_seq_lens_q and max_length_q in the model's keyword arguments."""
    from torch.nn.attention.varlen import varlen_attn

    q, k, v = (x[0].transpose(0, 1).contiguous() for x in (query, key, value))  # [tokens, heads, dim]
    options = varlen_parameters()
    window = kwargs.get("sliding_window")  # Gemma's local layers: a query sees the last `window` positions
    extra = {"window_size": (window - 1 if window else -1, 0)} if "window_size" in options else {"is_causal": True}
    if q.size(1) != k.size(1):
        if "enable_gqa" in options:
            extra["enable_gqa"] = True
        else:
            k, v = (x.repeat_interleave(q.size(1) // x.size(1), dim=1) for x in (k, v))
    cu, longest = kwargs["cu_seq_lens_q"], kwargs["max_length_q"]
    out = varlen_attn(q, k, v, cu, cu, longest, longest, scale=scaling, **extra)
    return out[None], None


def pack_with_varlen(model, decisions):
    """Padding-free micro-batches on GPU in bf16 run through varlen_attention (elsewhere SDPA over a block-diagonal
    mask); where the model cannot use it (use_varlen_attention), the decision falls back to padded micro-batches."""
    if decisions["padding_free"] and model.device.type == "cuda" and model.dtype == torch.bfloat16:
        decisions["padding_free"] = use_varlen_attention(model)


def use_varlen_attention(model):
    """Run the model's attention through varlen_attention; False, changing nothing, where the model has sliding
    window layers and this PyTorch's varlen attention cannot window. varlen_attention is no mask interface of
    transformers, so the model builds no mask for it (nor reads the packing back from position_ids, a GPU sync)."""
    from transformers import AttentionInterface

    text = model.config.get_text_config()
    if "sliding_attention" in (getattr(text, "layer_types", None) or []) and "window_size" not in varlen_parameters():
        return False
    AttentionInterface.register(VARLEN, varlen_attention)
    model.set_attn_implementation(VARLEN)
    return True


def keep_input_dtypes(model):
    """PEFT casts each LoRA layer's input to the adapter's float32, and autocast casts it back to bf16 for the
    matmul: two copies of every input for the same result. Under bf16 autocast, skip them."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


def fuse_lora_updates(model):
    """PEFT adds a LoRA layer's update to the base layer's output as `result + lora_B(lora_A(x)) * scaling`: a
    multiply and an add over the whole output, and in the backward pass the multiply again and an add of the
    input's two gradients (in profiles of the 8B benchmark's steps on an H100, multiplies and adds took 10% of the
    GPU's time in DPO, 12% in SFT; bench/results/). LoRA layers over a frozen nn.Linear with no dropout, no LoRA
    bias and no variant such as DoRA here run as one autograd function (FusedLora) whose matmuls do the adding and
    scaling. Other calls (adapters disabled or merged, several adapters, extra arguments) take PEFT's forward."""
    import types

    from peft.tuners.lora import Linear

    for module in model.modules():
        if type(module) is Linear and type(module.base_layer) is torch.nn.Linear and not module.lora_variant:
            dropouts, biases = module.lora_dropout.values(), [b.bias for b in module.lora_B.values()]
            frozen = not any(p.requires_grad for p in module.base_layer.parameters())
            if frozen and all(isinstance(d, torch.nn.Identity) for d in dropouts) and all(b is None for b in biases):
                module.forward = types.MethodType(lora_forward, module)


def lora_forward(self, x, *args, **kwargs):
    """A LoRA layer's forward through FusedLora (fuse_lora_updates)."""
    adapters = [a for a in self.active_adapters if a in self.lora_A]
    if args or kwargs or self.disable_adapters or self.merged or len(adapters) != 1:
        return type(self).forward(self, x, *args, **kwargs)
    lora_A, lora_B = self.lora_A[adapters[0]].weight, self.lora_B[adapters[0]].weight
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    elif x.dtype == lora_A.dtype:
        dtype = x.dtype
    else:
        return type(self).forward(self, x, *args, **kwargs)  # PEFT casts the input to the adapter's dtype
    base = self.base_layer
    y = FusedLora.apply(x.reshape(-1, x.shape[-1]), base.weight, base.bias, lora_A, lora_B, self.scaling[adapters[0]],
                        dtype)  # fmt: skip
    return y.view(*x.shape[:-1], y.shape[-1])


class FusedLora(torch.autograd.Function):
    """y = x W^T + b + s (x A^T) B^T for a frozen W and b, computed in `dtype`. The update is added by lora_B's
    matmul into the base output (addmm_, alpha = s); in the backward pass the input's gradient through the adapter
    is added by lora_A's matmul into the one through W, and s scales only rank-sized products."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_A, lora_B, scaling, dtype):
        x, A, B = x.to(dtype), lora_A.to(dtype), lora_B.to(dtype)
        h = x @ A.t()
        y = F.linear(x, weight.to(dtype), None if bias is None else bias.to(dtype))
        y.addmm_(h, B.t(), alpha=scaling)
        ctx.save_for_backward(x, h, weight, A, B)
        ctx.scaling = scaling
        return y

    @staticmethod
    def backward(ctx, grad):
        x, h, weight, A, B = ctx.saved_tensors
        s, (x_needs, _, _, A_needs, B_needs, _, _) = ctx.scaling, ctx.needs_input_grad
        grad = grad.to(x.dtype)
        grad_h = (grad @ B).mul_(s)
        grad_x = grad_A = grad_B = None
        if x_needs:
            grad_x = (grad @ weight.to(x.dtype)).addmm_(grad_h, A)
        if A_needs:
            grad_A = grad_h.t() @ x
        if B_needs:
            grad_B = (grad.t() @ h).mul_(s)
        return grad_x, None, None, grad_A, grad_B, None, None


def example_tokens(examples):
    """Tokens of the rows each example puts through the model: its sequence (SFT), or prompt + chosen and prompt +
    rejected (DPO)."""
    if "input_ids" in examples[0]:
        return [len(e["input_ids"]) for e in examples]
    return [2 * len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples]


class Steps(BatchRebalanceSampler):
    """The micro-batches of one process, optimiser step by optimiser step: a batch sampler (the Trainer takes a
    BatchRebalanceSampler as one that is already rank-aware, and does not shard it again).

    Each step takes the next `step` examples of a seeded shuffle (the one accelerate's seedable sampler draws:
    seed + epoch). They go to the micro-batches of all processes, micro-batch j to process j % processes: with
    `budget`, the examples longest first each into the micro-batch with the fewest tokens, in as few micro-batches
    per process (`accumulation`, the same for every step of the run) as keep each within `budget` tokens;
    otherwise `micro` examples each, sorted by length when `sort` so that a padded micro-batch pads only to its own
    longest example. A last, smaller step is cut into as many micro-batches per process as it fills, at most
    `accumulation`.

    `weights`: each example's weight in its step's loss, which makes the loss the same whatever the micro-batches:
    with `group` and `targets` (target tokens per example), 1 / (groups in the step x target tokens of its group),
    the token mean of each group of `group` consecutive examples of the shuffle averaged over the step (OpenRLHF's
    SFT loss, its micro-batch as the group); without, 1 / examples in the step. The groups of the epoch: `groups`."""

    def __init__(self, tokens, step, seed, micro, processes=1, rank=0, sort=True, budget=None, group=None,
                 targets=None, epochs=1):  # fmt: skip
        self.tokens, self.step, self.seed, self.micro, self.sort, self.budget = tokens, step, seed, micro, sort, budget
        self.processes, self.rank, self.group, self.targets = processes, rank, group, targets
        self.epoch, self.weights, self.groups = 0, {}, []
        self.batch_size, self.drop_last = None, False  # read by accelerate: micro-batches of any size
        per_process = step // processes
        self.accumulation = per_process // micro
        if budget:
            steps = [s for epoch in range(math.ceil(epochs)) for s in self.steps(epoch)]
            least = math.ceil(max(sum(tokens[i] for i in s) for s in steps) / (budget * processes))
            self.accumulation = next(a for a in range(least, per_process + 1) if all(
                sum(tokens[i] for i in b) <= budget for s in steps for b in self.cut(s, a)))  # fmt: skip

    def steps(self, epoch):
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(len(self.tokens), generator=generator).tolist()
        return [order[start : start + self.step] for start in range(0, len(order), self.step)]

    def cut(self, step, accumulation):
        """The step's micro-batches, of all processes."""
        count = min(accumulation * self.processes, len(step)) // self.processes * self.processes
        longest_first = sorted(step, key=self.tokens.__getitem__, reverse=True)
        if self.budget:
            batches, loads = [[] for _ in range(count)], [0] * count
            for i in longest_first:
                j = loads.index(min(loads))
                batches[j].append(i)
                loads[j] += self.tokens[i]
        elif len(step) == count * self.micro:
            batches = [(longest_first if self.sort else step)[j * self.micro : (j + 1) * self.micro]
                       for j in range(count)]  # fmt: skip
        else:  # a last, smaller step: examples dealt round
            batches = [longest_first[j::count] for j in range(count)]
        return batches

    def __len__(self):
        return sum(len(self.cut(s, self.accumulation)) // self.processes for s in self.steps(self.epoch))

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        self.groups = []
        for step in self.steps(self.epoch):
            size = self.group or len(step)
            groups = [step[i : i + size] for i in range(0, len(step), size)]
            self.groups += groups
            for members in groups:
                total = sum(self.targets[i] for i in members) if self.targets else len(members)
                for i in members:
                    self.weights[i] = 1 / (len(groups) * total) if total else 0.0
            yield from self.cut(step, self.accumulation)[self.rank :: self.processes]


class WithWeights:
    """Collator wrapper: each example's weight in its step's loss (Steps.weights) as loss_weight."""

    def __init__(self, collate, steps):
        self.collate, self.steps = collate, steps

    def __call__(self, examples):
        weights = [self.steps.weights[e["index"]] for e in examples]
        batch = self.collate([{k: v for k, v in e.items() if k != "index"} for e in examples])
        batch["loss_weight"] = torch.tensor(weights)
        return batch


def plan_steps(examples, settings, decisions, **options):
    """The run's Steps, from the examples and the job's decisions: padding-free micro-batches are filled up to
    micro_batch_tokens (decide), which sets the accumulation. Returns the examples with their index, for
    WithWeights."""
    processes = decisions["processes"]
    budget = decisions["micro_batch_tokens"] if decisions["padding_free"] else None
    epochs = settings["epochs"]
    if settings["max_steps"] > 0:
        epochs = settings["max_steps"] * settings["global_batch_size"] / len(examples)
    steps = Steps(example_tokens(examples), settings["global_batch_size"], settings["seed"],
                  decisions["micro_batch_size"], processes, int(os.environ.get("RANK", 0)),
                  decisions["sort_by_length"], budget, epochs=epochs, **options)  # fmt: skip
    decisions.update(micro_batch_tokens=budget, gradient_accumulation_steps=steps.accumulation)
    return steps, [dict(e, index=i) for i, e in enumerate(examples)]


class Speedups:
    """Trainer mixin: training draws its micro-batches from `steps` (Steps), with each example's weight in the
    loss (WithWeights); LoRA layers add their update in their matmuls (fuse_lora_updates); in bf16, they keep their
    inputs' dtype (keep_input_dtypes) and every loss runs under bf16 autocast, which that needs (accelerate adds the
    same autocast once training starts; this one also covers calls before). On GPU, SDPA runs without its cuDNN
    backend: cuDNN plans every new shape on the CPU (1.5-1.8 ms a call), and length-sorted micro-batches bring a new
    shape each time, so the GPU waited; flash attention needs no plan. SFT of the 8B-shaped benchmark on an H200:
    6,937 -> 8,779 tokens/s, medians of 3 runs (bench/results/sft_cudnn_attention_2026-12-02_h200.md)."""

    def __init__(self, *args, steps, **kwargs):
        self.steps = steps
        super().__init__(*args, **kwargs)
        self.loss_is_scaled_for_ga = True  # the weights sum to one over the step: no division by accumulation
        self.data_collator = WithWeights(self.data_collator, steps)
        if self.args.bf16:
            keep_input_dtypes(self.model)
        fuse_lora_updates(self.model)
        if torch.cuda.is_available():
            torch.backends.cuda.enable_cudnn_sdp(False)

    def compute_loss(self, model, inputs, *args, **kwargs):
        with torch.autocast(self.args.device.type, torch.bfloat16, enabled=self.args.bf16):
            return super().compute_loss(model, inputs, *args, **kwargs)

    def weighted(self, losses, weights):
        """The micro-batch's share of the step's loss: each example's loss by its weight. DDP averages the gradients
        of the processes, each of which holds its share of the step's weights."""
        return (losses.float() * weights.to(losses.device)).sum() * self.accelerator.num_processes

    def _get_train_sampler(self, train_dataset=None):
        return self.steps


def load_model(path, settings):
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if torch.cuda.is_available() and settings["bf16"] else torch.float32
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=settings["attention"])


WHAT = {
    "DPO": "A LoRA adapter of the student: DPO distillation from the in-character teacher (paper §3.1).",
    "SFT": "A LoRA adapter of the distilled model: SFT on its own self-reflection and self-interaction (paper §3.2). "
    "Load it on the distilled model.",
}


def save_adapter(trainer, partial, out, decisions, settings, card, stage):
    """Every process takes part in saving; the main one writes the job's record beside the adapter (its settings as
    resolved, its decisions and its logged metrics per step: loss, learning rate, DPO rewards...) and its model card
    (card: cards.write's, or none; stage: DPO or SFT), then renames the finished folder into place."""
    import shutil

    from octlib import cards
    from octlib.io import share

    trainer.save_model(partial)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        cards.save_training(partial, settings, decisions, trainer.state.log_history)
        if card:
            cards.write(partial, card, WHAT[stage], "peft", [(stage, partial)])
        share(partial)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(partial, out)
        print(f"adapter saved to {out}")
