"""Prompt building shared by every generation step: chat templates, trait lists, placeholders.

The paper's templates use the placeholders {NAME} and {TRAITS}; they are filled by plain
replacement so that other braces in a template or a trait stay as written.
"""


def traits_string(traits):
    """The numbered trait list of the reference code: duplicates removed, file order, "i: trait" per line."""
    unique = list(dict.fromkeys(traits))
    return "\n".join(f"{i + 1}: {t}" for i, t in enumerate(unique))


def fill(template, **values):
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def render(tokenizer, messages, add_generation_prompt=True):
    """The model's own chat template as text, as the reference code applies it everywhere."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def encode(tokenizer, text, add_special_tokens):
    """Token ids of a rendered prompt.

    The reference passes rendered strings to vLLM, which adds special tokens again (a double BOS for
    Llama and Gemma); add_special_tokens=True reproduces that, False gives the template's tokens only.
    """
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def encode_last(tokenizer, text, add_special_tokens, limit):
    """Token ids of a rendered prompt cut to its last `limit` template tokens, as the reference's
    self_interaction.py cuts it before its engine adds the special tokens again: with add_special_tokens the
    BOS survives the cut."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][-limit:]
    return (tokenizer("", add_special_tokens=True)["input_ids"] if add_special_tokens else []) + ids


def tagged_answer(text):
    """The text between the first <answer> and the first </answer>, stripped, or None without both. As in the
    reference's judges (judgements.py, coherence.py), a first </answer> before the first <answer> gives the
    empty answer, which no judge accepts."""
    start, end = text.find("<answer>"), text.find("</answer>")
    if start < 0 or end < 0:
        return None
    return text[start + len("<answer>") : end].strip()


def load_traits(constitution_path):
    import yaml

    with open(constitution_path, encoding="utf-8") as f:
        return [t["trait"] for t in yaml.safe_load(f)["traits"]]


def render_open(tokenizer, messages):
    """The rendered prompt a model answers: the generation prompt after a final user turn, or, after a final
    assistant message, the text up to the end of that message (stripped), which the model continues."""
    if messages[-1]["role"] != "assistant":
        return render(tokenizer, messages)
    rendered = render(tokenizer, messages, add_generation_prompt=False)
    last = messages[-1]["content"].strip()
    return rendered[: rendered.rindex(last) + len(last)]
