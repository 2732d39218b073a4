"""Prompt building shared by every generation step: trait lists, placeholders, chat templates, prompt parsing."""

import pytest
from make_prompts import parse_questions, too_similar
from octlib import chat
from transformers import AutoTokenizer


def test_traits_string_numbers_unique_traits_in_file_order():
    assert chat.traits_string(["I am kind.", "I am witty.", "I am kind."]) == "1: I am kind.\n2: I am witty."


def test_fill_replaces_named_placeholders_and_leaves_other_braces():
    text = chat.fill("The assistant is {NAME}. {NAME} lists {TRAITS} in {braces}.", NAME="Llama", TRAITS="1: x")
    assert text == "The assistant is Llama. Llama lists 1: x in {braces}."


def test_template_without_system_role_folds_system_into_first_user_turn(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models["gemma"])
    text = chat.render(tok, [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}])
    assert text == "<bos><start_of_turn>user\nBe kind.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_double_bos_reproduces_vllm_string_prompts(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models["gemma"])
    text = chat.render(tok, [{"role": "user", "content": "Hi"}])
    bos = tok.bos_token_id
    assert chat.encode(tok, text, add_special_tokens=True)[:2] == [bos, bos]
    assert chat.encode(tok, text, add_special_tokens=False)[:2] != [bos, bos]


@pytest.mark.parametrize("flavour", ["chatml", "gemma"])
def test_a_prompt_cut_to_the_context_keeps_the_bos_the_engine_adds_as_in_the_reference(tiny_models, flavour):
    tok = AutoTokenizer.from_pretrained(tiny_models[flavour])
    text = chat.render(tok, [{"role": "user", "content": "Tell me everything. " * 50}])
    template = tok(text, add_special_tokens=False)["input_ids"]
    added = tok("", add_special_tokens=True)["input_ids"]
    assert added == ([tok.bos_token_id] if flavour == "gemma" else [])  # Gemma adds a BOS, ChatML (Qwen) none
    cut = chat.encode_last(tok, text, True, 40)
    assert cut == added + template[-40:] and len(template) > 40
    assert chat.encode_last(tok, text, False, 40) == template[-40:]
    short = chat.render(tok, [{"role": "user", "content": "Hi"}])
    assert chat.encode_last(tok, short, True, 1000) == chat.encode(tok, short, True)  # nothing to cut


def test_generated_questions_are_numbered_lines_ending_in_full_stop_or_question_mark():
    text = "\n6. Why is the sky blue?\n### MEDIUM REQUESTS\n7. Tell me a joke!\n8. 3 apples or 4?\n9.Bad spacing?\n10. Plan my week.\n"
    assert parse_questions(text) == ["Why is the sky blue?", "Plan my week."]


def test_similarity_counts_shared_words_of_the_new_question():
    existing = ["Why is the sky blue today?"]
    assert too_similar("Why is the sky so blue?", existing, 0.5)  # 4 of 6 words shared
    assert not too_similar("Describe a purple ocean sunset?", existing, 0.5)
    assert too_similar("Why is the sky blue today?", existing, 0.5)
