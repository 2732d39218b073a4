"""Steering vectors at generation time (paper §4; ref character/robustness/generate/steered.py, repeng).

repeng's ControlModel adds coefficient x direction to the hidden state that each controlled decoder layer
outputs, at every position (left padding aside, which attention masks anyway). That is a constant added to
the residual stream, so it can live in the weights: the output bias of the layer's MLP down projection, whose
output the layer adds to the residual. fold() writes it there (Llama: `mlp_bias`; Qwen2, which has no MLP bias,
as the same network in Llama form), so that any engine, vLLM included, serves a steered model at full speed.
Architectures that normalise the MLP output before the residual (Gemma-3) cannot take it as a bias: hooks()
adds it at run time instead (the transformers engine).

A steering is a JSON file: {"vector": path of a safetensors file with one unit direction per controlled
layer ("layer.{i}"), "sha256": its digest, "layers": [...], "coefficient": c, ...}.
"""

import json
from pathlib import Path

FOLDABLE = ("LlamaForCausalLM", "Qwen2ForCausalLM")


def num_layers(config):
    text = getattr(config, "text_config", None) or config  # Gemma-3 keeps it in its text config
    return text.num_hidden_layers


def controlled_layers(config, span):
    """The reference's layers: range(int(low * L), int(high * L)) for span (low, high) = (0.125, 0.875)."""
    n = num_layers(config)
    return list(range(int(span[0] * n), int(span[1] * n)))


def decoder_layers(model):
    """The ModuleList of decoder blocks, wherever the architecture keeps it."""
    n = num_layers(model.config)
    for name, module in model.named_modules():
        if name.endswith("layers") and hasattr(module, "__len__") and len(module) == n:
            return module
    raise SystemExit(f"no list of {n} decoder layers in {type(model).__name__}")


def load(path):
    """A steering file's offsets: {layer: coefficient x direction} as float32 tensors."""
    import hashlib

    from safetensors.torch import load_file

    settings = json.loads(Path(path).read_text())
    vector = Path(settings["vector"])
    if hashlib.sha256(vector.read_bytes()).hexdigest() != settings["sha256"]:
        raise SystemExit(f"{vector} is not the vector {path} was made for (sha256 differs): rebuild {path}")
    directions = load_file(vector)
    return {layer: settings["coefficient"] * directions[f"layer.{layer}"].float() for layer in settings["layers"]}


def hooks(model, steering):
    """Add each layer's steering to its output hidden state at run time; returns the hook handles."""
    layers = decoder_layers(model)

    def hook(offset):
        def add(module, inputs, output):
            if isinstance(output, tuple):
                return (output[0] + offset.to(output[0].dtype),) + output[1:]
            return output + offset.to(output.dtype)

        return add

    return [layers[i].register_forward_hook(hook(v.to(next(model.parameters()).device))) for i, v in steering.items()]


def fold(model_dir, steering, out_dir):
    """Save model_dir with the steering written into MLP output biases, as a Llama model (exact, float32 sums
    rounded once to the model's dtype). Raises SystemExit for an architecture that cannot take it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    architecture = (config.architectures or ["?"])[0]
    if architecture not in FOLDABLE or getattr(config, "use_sliding_window", False):  # Llama has no sliding window
        raise SystemExit(
            f"a steering vector cannot be folded into {architecture} (of {model_dir}): give the model entry"
            " `steering_engine: hf`, which adds it at run time"
        )
    source = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    state = source.state_dict()
    dropped = ("architectures", "model_type", "auto_map", "use_sliding_window", "sliding_window", "max_window_layers")
    fields = {k: v for k, v in config.to_dict().items() if k not in (*dropped, "layer_types")}  # Qwen2's, unused
    fields.update(mlp_bias=True, attention_bias=architecture == "Qwen2ForCausalLM" or config.attention_bias)
    llama = LlamaConfig(**fields)
    llama.architectures = ["LlamaForCausalLM"]
    with torch.device("meta"):
        target = LlamaForCausalLM(llama)
    dtype = next(iter(state.values())).dtype
    for name, param in target.named_parameters():
        if name not in state:  # the new biases: zero, and the steering where there is some
            state[name] = torch.zeros(param.shape, dtype=dtype)
    for layer, offset in steering.items():
        key = f"model.layers.{layer}.mlp.down_proj.bias"
        state[key] = (state[key].float() + offset).to(dtype)
    target.load_state_dict(state, strict=True, assign=True)
    if llama.tie_word_embeddings:
        target.tie_weights()
    target.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    source.generation_config.save_pretrained(out_dir)
