"""The reproduction report: every number the workflow computed beside the paper's (data/paper_numbers.csv), as
Markdown and HTML. Each section is one experiment: our rows with their uncertainty and the published number for
the same model and setting, then the published numbers this run did not compute, so that nothing is dropped. An
experiment the config leaves out says so. The head records what made the numbers: the config's hash, the
fidelity switches, the models and their revisions, and the pinned packages of each environment."""

import argparse
import csv
import html
import json
from pathlib import Path

from octlib.io import published, write_atomic

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--table", nargs=2, action="append", default=[], metavar=("NAME", "PATH"))
parser.add_argument("--paper", required=True, help="data/paper_numbers.csv")
parser.add_argument("--provenance", required=True, help="JSON: config_sha256, fidelity, models, environments")
parser.add_argument("--skipped", nargs=2, action="append", default=[], metavar=("NAME", "WHY"))
parser.add_argument("--markdown", required=True)
parser.add_argument("--html", required=True)
args = parser.parse_args()


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


tables = {name: read(path) for name, path in args.table}
skipped = dict(args.skipped)
provenance = json.loads(args.provenance)
MISSING = "not computed"


def plus_minus(value, error):
    return f"{value} ± {error}" if value not in ("", None) and error not in ("", None) else (value or "")


def section(name, title, source, columns, keys, paper_key=None, ours=None):
    """columns: (heading, function of our row), of which the first `keys` make the row's key; paper_key: a published
    row's key (none: the paper publishes no such number); ours: the rows (default: the table called name)."""
    if name in skipped:
        return {"title": title, "source": source, "note": f"Not computed in this configuration: {skipped[name]}."}
    paper = {paper_key(r): r for r in published(args.paper, name)} if paper_key else {}
    paper_columns = PAPER_COLUMNS if paper_key else []
    rows = []
    for row in tables.get(name, []) if ours is None else ours:
        match = paper.pop(tuple(get(row) for _, get in columns[:keys]), None)
        rows.append([get(row) for _, get in columns] + [get(match) if match else "" for _, get in paper_columns])
    return {
        "title": title,
        "source": source,
        "headings": [h for h, _ in columns + paper_columns],
        "rows": rows,
        "unmatched_headings": [h for h, _ in columns[:keys] + paper_columns],
        "unmatched": [[*key, *(get(r) for _, get in paper_columns)] for key, r in paper.items()],
    }


PAPER_COLUMNS = [("published", lambda r: plus_minus(r["value"], r["se"])), ("source", lambda r: r["source"])]


def fields(*keys):
    """Columns that show a row's own fields under their names."""
    return [(key, lambda r, key=key: r[key]) for key in keys]


def pair(a, b):
    return "/".join(sorted([a, b]))


def spearman_rows():
    """Our correlations of every persona: each student's before against after, then between the students before
    and after, with their mean over model pairs (the paper's figure)."""
    rows = []
    for name, table in tables.items():
        if not name.startswith("spearman_"):
            continue
        persona = name.removeprefix("spearman_")
        for condition in dict.fromkeys(r["condition"] for r in table):
            for r in table:
                if r["condition"] == condition and r["comparison"] == "before vs after training":
                    models = f"{r['model_a']}: before vs after"
                    rows.append(
                        {"models": models, "variant": persona, "condition": condition, "spearman": r["spearman"]}
                    )
            for stage, variant in (("before", "base"), ("after", persona)):
                between = [
                    r
                    for r in table
                    if r["condition"] == condition and r["comparison"] == f"between models {stage} training"
                ]
                for r in between:
                    rows.append(
                        {
                            "models": pair(r["model_a"], r["model_b"]),
                            "variant": variant,
                            "condition": condition,
                            "spearman": r["spearman"],
                        }
                    )
                if len(between) > 1:
                    mean = sum(float(r["spearman"]) for r in between) / len(between)
                    rows.append(
                        {"models": "mean", "variant": variant, "condition": condition, "spearman": f"{mean:.4f}"}
                    )
    return rows


sections = [
    section(
        "spearman",
        "Revealed preferences: agreement between the students' trait rankings (paper §5, Figure 3's discussion)",
        "Spearman correlation of two students' trait Elo rankings, before training (base) and after training "
        "of a persona; the paper reports the mean over its three model pairs: 0.44 before, 0.87 after loving.",
        [
            ("models", lambda r: r["models"]),
            ("after training of", lambda r: r["variant"]),
            *fields("condition"),
            ("Spearman (ours)", lambda r: r["spearman"]),
        ],
        3,
        lambda r: ("mean" if r["model"] == "mean" else pair(*r["model"].split("/")), r["method"], r["measure"]),
        ours=spearman_rows(),
    ),
    section(
        "robustness",
        "Robustness to instructions that break character (paper §4, Figure 5)",
        "Macro-F1 of the persona classifier on the answers to the 8 adversarial instructions: mean ± SEM over "
        "them. The paper gives Figure 5 as a chart only, with no numbers to set beside ours.",
        [
            *fields("model", "method"),
            ("F1 (ours)", lambda r: plus_minus(f"{float(r['f1_mean']):.3f}", f"{float(r['f1_sem']):.3f}")),
            ("F1 held-out questions", lambda r: f"{float(r['f1_held_out']):.3f}"),
        ],
        2,
    ),
    section(
        "prefill",
        "The prefill attack (paper §4, Table 5)",
        "Macro-F1 of the persona classifier on the second answer after a first one the base model wrote.",
        [*fields("model", "method"), ("F1 (ours)", lambda r: r["f1"]), *fields("answers")],
        2,
        lambda r: (r["model"], r["method"]),
    ),
    section(
        "coherence",
        "Coherence: the trained model against each other method (paper §4, Tables 2, 6, 7)",
        "Win rate (%) of the character-trained model among the pairs a judge decided the same way in both "
        "orders, with its 95% interval.",
        [
            *fields("judge", "model", "comparison"),
            (
                "win rate % (ours)",
                lambda r: f"{r['win_rate']} [{r['ci_low']}, {r['ci_high']}]" if r["win_rate"] else "no counted pair",
            ),
            ("counted / pairs", lambda r: f"{r['counted']} / {r['pairs']}"),
        ],
        3,
        lambda r: (r["judge"], r["model"], r["method"]),
    ),
    section(
        "capabilities",
        "Capabilities (paper §5, Table 8)",
        "Accuracy ± SE with lm-eval (the paper used lighteval), and a trained model's change from its student "
        "in points ± SE.",
        [
            *fields("model", "variant", "benchmark"),
            ("accuracy (ours)", lambda r: plus_minus(r["accuracy"], r["se"])),
            ("change (ours)", lambda r: plus_minus(r["change_points"], r["change_se"])),
            ("change (published)", lambda r: r["published_change_points"]),
        ],
        3,
        lambda r: (r["model"], r["method"], r["measure"]),
    ),
]


def markdown():
    out = ["# Reproduction report: Open Character Training (Maiya et al. 2025, arXiv 2511.01689)", ""]
    out += [
        "Every number this run computed beside the paper's. Where a published number has no counterpart here, "
        f"it is listed as {MISSING}.",
        "",
    ]
    out += ["## What made these numbers", ""]
    out += [f"- Config (all layers merged) sha256: `{provenance['config_sha256']}`"]
    out += ["- Fidelity switches: " + ", ".join(f"`{k}: {v}`" for k, v in provenance["fidelity"].items())]
    out += ["- Models:"] + [f"  - `{m}`: {where}" for m, where in provenance["models"].items()]
    out += ["- Environments (pins of envs/):"]
    out += [f"  - {env}: " + ", ".join(f"`{p}`" for p in pins) for env, pins in provenance["environments"].items()]
    for s in sections:
        out += ["", f"## {s['title']}", "", s["source"], ""]
        if "note" in s:
            out += [f"*{s['note']}*"]
            continue
        out += table(s["headings"], s["rows"], "*This run computed no such number.*")
        if s["unmatched"]:
            out += ["", f"Published, {MISSING} by this run (other models or settings):", ""]
            out += table(s["unmatched_headings"], s["unmatched"], "")
    return "\n".join(out) + "\n"


def table(headings, rows, empty):
    if not rows:
        return [empty]
    cell = lambda x: str(x if x != "" else "—").replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)] + [
        "| " + " | ".join(cell(x) for x in row) + " |" for row in rows
    ]


def html_page():
    e = html.escape
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Reproduction report</title><style>",
        "body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:left}"
        "th{background:#eee}code{background:#f4f4f4}</style></head><body>",
        "<h1>Reproduction report: Open Character Training (Maiya et al. 2025, arXiv 2511.01689)</h1>",
        f"<p>Every number this run computed beside the paper's. Where a published number has no counterpart "
        f"here, it is listed as {MISSING}.</p>",
        "<h2>What made these numbers</h2><ul>",
        f"<li>Config (all layers merged) sha256: <code>{e(provenance['config_sha256'])}</code></li>",
        "<li>Fidelity switches: "
        + ", ".join(f"<code>{e(k)}: {e(str(v))}</code>" for k, v in provenance["fidelity"].items())
        + "</li>",
        "<li>Models:<ul>"
        + "".join(f"<li><code>{e(m)}</code>: {e(w)}</li>" for m, w in provenance["models"].items())
        + "</ul></li>",
        "<li>Environments (pins of envs/):<ul>"
        + "".join(
            f"<li>{e(env)}: " + ", ".join(f"<code>{e(p)}</code>" for p in pins) + "</li>"
            for env, pins in provenance["environments"].items()
        )
        + "</ul></li></ul>",
    ]

    def html_table(headings, rows):
        head = "".join(f"<th>{e(h)}</th>" for h in headings)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(str(x)) if x != '' else '—'}</td>" for x in row) + "</tr>" for row in rows
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    for s in sections:
        out += [f"<h2>{e(s['title'])}</h2>", f"<p>{e(s['source'])}</p>"]
        if "note" in s:
            out.append(f"<p><em>{e(s['note'])}</em></p>")
            continue
        out.append(
            html_table(s["headings"], s["rows"]) if s["rows"] else "<p><em>This run computed no such number.</em></p>"
        )
        if s["unmatched"]:
            out += [
                f"<p>Published, {MISSING} by this run (other models or settings):</p>",
                html_table(s["unmatched_headings"], s["unmatched"]),
            ]
    return "\n".join(out + ["</body></html>"]) + "\n"


write_atomic(Path(args.markdown), lambda f: f.write(markdown()))
write_atomic(Path(args.html), lambda f: f.write(html_page()))
print(f"{len(sections)} sections -> {args.markdown}, {args.html}")
