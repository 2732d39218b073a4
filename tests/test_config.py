"""Config and constitution checks (rules/schemas) and the shipped constitutions."""

import json

import pytest
from conftest import ROOT
from octlib.validate import InputError, check, load_yaml

SCHEMAS = ROOT / "rules" / "schemas"
PAPER = ROOT.parent / "shared" / "paper" / "paper_data.json"
PERSONAS = [
    "sarcasm",
    "humor",
    "remorse",
    "goodness",
    "loving",
    "misalignment",
    "nonchalance",
    "impulsiveness",
    "sycophancy",
    "mathematical",
    "poeticism",
]


def test_paper_config_is_valid_and_defaults_are_filled():
    config = load_yaml(ROOT / "config.yaml")
    del config["fidelity"]
    check(config, SCHEMAS / "config.schema.yaml", "config.yaml")
    assert config["fidelity"]["sft_last_message_only"] is True
    assert config["dpo"]["beta"] == 0.1 and config["dpo"]["sq_coef"] == 0.001 and config["seed"] == 123456


def test_schema_errors_name_the_file_and_every_bad_field():
    config = load_yaml(ROOT / "config.yaml")
    config["dpo"]["beta"] = "high"
    config["interaction"]["sampling"]["top_p"] = 2
    with pytest.raises(InputError) as error:
        check(config, SCHEMAS / "config.schema.yaml", "my.yaml")
    lines = str(error.value).splitlines()
    assert "my.yaml: field 'dpo.beta': 'high' is not of type 'number'" in lines
    assert "my.yaml: field 'interaction.sampling.top_p': 2 is greater than the maximum of 1" in lines


def test_broken_yaml_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("traits: [unclosed\n")
    with pytest.raises(InputError, match="bad.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")


@pytest.mark.parametrize("persona", PERSONAS + ["template"])
def test_shipped_constitutions_are_valid(persona):
    check(load_yaml(ROOT / "constitutions" / f"{persona}.yaml"), SCHEMAS / "constitution.schema.yaml", persona)


def normalise(trait):
    return trait.replace("likeable", "likable").replace("activites", "activities").replace("’", "'")


def test_constitutions_hold_the_papers_traits_with_five_seed_questions_each():
    paper = json.loads(PAPER.read_text())["constitutions"]
    for persona in PERSONAS:
        constitution = load_yaml(ROOT / "constitutions" / f"{persona}.yaml")
        assert constitution["name"] == paper[persona]["paper_name"]
        ours = [t["trait"] for t in constitution["traits"]]
        # the reference code's text: Appendix H up to three spellings (reference.md §9.1 #19)
        assert [normalise(t) for t in ours] == [normalise(t) for t in paper[persona]["traits"]]
        assert all(len(t["questions"]) == 5 for t in constitution["traits"])
        assert constitution["released"]["url"].endswith(f"/constitutions/few-shot/{persona}.jsonl")
