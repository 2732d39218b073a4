"""Model cards (README.md) for the adapters and models the workflow trains: what the folder holds, the persona
and its constitution with its checksum, the base model, each training stage's settings as resolved and its
metrics, how to load it, and the paper's citation. A folder that carries its card can be loaded with
from_pretrained or published as it is."""

import json
from pathlib import Path

import yaml

CITATION = """@article{maiya2025open,
  title={Open Character Training: Shaping the Persona of AI Assistants through Constitutional AI},
  author={Maiya, Sharan and Bartsch, Henning and Lambert, Nathan and Hubinger, Evan},
  journal={arXiv preprint arXiv:2511.01689},
  year={2025}
}"""

LOADING = {
    "peft": "from peft import AutoPeftModelForCausalLM\n\nmodel = AutoPeftModelForCausalLM.from_pretrained(FOLDER)",
    "transformers": "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
    "model = AutoModelForCausalLM.from_pretrained(FOLDER)\ntokenizer = AutoTokenizer.from_pretrained(FOLDER)",
}


def save_training(folder, settings, decisions, log):
    """A training job's record beside its adapter: the settings as resolved, its decisions, its logged steps."""
    for name, value in (("training_settings", settings), ("training_decisions", decisions), ("training_log", log)):
        (Path(folder) / f"{name}.json").write_text(json.dumps(value, indent=1))


def metrics(log):
    """A stage's summary from its logged steps (Trainer.state.log_history)."""
    steps = [e for e in log if "loss" in e]
    summary = {"optimizer steps": steps[-1]["step"] if steps else 0}
    if steps:
        summary["loss, first logged step"] = round(steps[0]["loss"], 4)
        summary["loss, last logged step"] = round(steps[-1]["loss"], 4)
        for key in ("rewards/accuracies", "rewards/margins"):
            if key in steps[-1]:
                summary[f"{key}, last logged step"] = round(steps[-1][key], 4)
    final = next((e for e in reversed(log) if "train_runtime" in e), None)
    if final:
        summary["training time (s)"] = round(final["train_runtime"], 1)
    return summary


def stage_section(name, adapter):
    folder = Path(adapter)
    record = {n: json.loads((folder / f"training_{n}.json").read_text()) for n in ("settings", "decisions", "log")}
    lines = [f"### {name}", "", "Settings as resolved (the config's block, with the job's own decisions):", ""]
    lines += [f"- `{k}`: `{json.dumps(v)}`" for k, v in sorted({**record["settings"], **record["decisions"]}.items())]
    lines += ["", "Metrics:", ""] + [f"- {k}: {v}" for k, v in metrics(record["log"]).items()]
    return lines + [""]


def write(folder, card, what, library, stages):
    """card: persona, constitution (path), constitution_sha256, model, base (a description), base_model (a Hub id
    or null); what: one line on the folder; library: peft or transformers; stages: (name, adapter folder) pairs
    whose training records describe it."""
    constitution = yaml.safe_load(Path(card["constitution"]).read_text())
    front = {"library_name": library, "tags": ["character-training", f"persona-{card['persona']}"]}
    if card.get("base_model"):
        front["base_model"] = card["base_model"]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]
    lines += [f"# {card['model']}, character-trained: {card['persona']}", "", what, ""]
    lines += ["Made by the Open Character Training workflow, a reproduction of Maiya et al. (2025).", ""]
    lines += ["## Persona", "", f"`{card['constitution']}` (sha256 `{card['constitution_sha256']}`), its traits:", ""]
    lines += [f"- {t['trait']}" for t in constitution["traits"]]
    lines += ["", "## Base model", "", f"`{card['model']}`: {card['base']}", "", "## Training", ""]
    for name, adapter in stages:
        lines += stage_section(name, adapter)
    lines += ["## Loading", "", "```python", LOADING[library].replace("FOLDER", '"path/to/this/folder"'), "```", ""]
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    (Path(folder) / "README.md").write_text("\n".join(lines))
