# Revealed preferences (ref §1.15-1.17, §3): trait Elo before and after character training, tables and figures.


localrules:
    download_wildchat,


def get_variant_model(wildcards):
    if wildcards.variant == "base":
        return model_dir(wildcards.model)
    return f"results/models/{wildcards.model}/{wildcards.variant}/trained"


def get_wildchat(wildcards):
    source = config["wildchat"]
    return source["path"] if "path" in source else "resources/datasets/wildchat"


def judge_engine():
    return "hf" if config["judge"]["mode"] == "loglik" else engine_of("judge")


def elo_csv(model, variant, condition):
    return f"results/preferences/{model}/{variant}/{condition}/elo.csv"


def panels(pairs):
    """--panel TITLE BASE NEW arguments of plot_elo.py."""
    return [x for title, base, new in pairs for x in ("--panel", title, base, new)]


rule download_wildchat:
    output:
        directory("resources/datasets/wildchat"),
    params:
        repo=config["wildchat"].get("hf", "none"),
        revision=config["wildchat"].get("revision", "main"),
    log:
        "logs/preferences/download_wildchat.log",
    container:
        image("training")
    shell:
        "HF_HUB_OFFLINE=0 python scripts/fetch_model.py --repo-type dataset --repo {params.repo}"
        " --revision {params.revision} --out {output} > {log} 2>&1"


rule prepare_wildchat:
    input:
        get_wildchat,
    output:
        "resources/datasets/wildchat_prompts.jsonl",
    params:
        rows=config["preferences"]["count"],
        seed=config["preferences"]["shuffle_seed"],
    log:
        "logs/preferences/prepare_wildchat.log",
    container:
        image("training")
    resources:
        **job_resources("prepare_wildchat"),
    shell:
        "python scripts/prepare_wildchat.py --source {input} --count {params.rows} --seed {params.seed}"
        " --out {output} > {log} 2>&1"


rule generate_preferences:
    input:
        prompts="resources/datasets/wildchat_prompts.jsonl",
        model=get_variant_model,
    output:
        "results/preferences/{model}/{variant}/{condition}/responses.jsonl",
    params:
        args=lambda w: engine_args(
            "preferences",
            w.model,
            step_seed("preferences", w.model, w.variant, w.condition),
            path=get_variant_model(w),
        ),
        speed=untracked(engine_speed("preferences")),
        traits=json.dumps(config["preferences"]["traits"]),
        system=lambda w: config["preferences"]["system"],
        condition=lambda w: config["preferences"]["conditions"][w.condition],
        # fresh pairs per run, as in the reference (there unseeded)
        pair_seed=lambda w: config["seed"] + step_seed("pairs", w.model, w.variant, w.condition),
        max_prompt_tokens=config["preferences"]["max_prompt_tokens"],
        python=untracked(python_of("preferences")),
    log:
        "logs/preferences/responses_{model}_{variant}_{condition}.log",
    benchmark:
        "benchmarks/preferences/responses_{model}_{variant}_{condition}.tsv"
    container:
        generation_image(engine_of("preferences"))
    resources:
        **job_resources(
            "generate_preferences", gpus=config["resources"]["student_gpus"]
        ),
    shell:
        "{params.python} scripts/generate_preferences.py {params.args:q} {params.speed:q}"
        " --prompts {input.prompts} --traits {params.traits:q} --system {params.system:q}"
        " --condition {params.condition:q} --pair-seed {params.pair_seed}"
        " --max-prompt-tokens {params.max_prompt_tokens} --out {output} > {log} 2>&1"


rule judge_preferences:
    input:
        responses="results/preferences/{model}/{variant}/{condition}/responses.jsonl",
        judge=model_dir(config["judge"]["model"]),
    output:
        "results/preferences/{model}/{variant}/{condition}/judgements.jsonl",
    params:
        args=lambda w: engine_args(
            "judge",
            config["judge"]["model"],
            step_seed("judge", w.model, w.variant, w.condition),
            engine=judge_engine(),
            sampled=config["judge"]["mode"] == "generate",
        ),
        speed=untracked(engine_speed("judge", judge_engine())),
        mode=config["judge"]["mode"],
        system=lambda w: config["judge"]["system"],
        question=lambda w: config["judge"]["question"],
        # the reference addresses the judge by the evaluated model's name (ref §1.16)
        name=lambda w: name_of(
            w.model if FIDELITY["judge_named_after_student"] else config["judge"]["model"]
        ),
        python=untracked(python_of("judge", judge_engine())),
    log:
        "logs/preferences/judge_{model}_{variant}_{condition}.log",
    benchmark:
        "benchmarks/preferences/judge_{model}_{variant}_{condition}.tsv"
    container:
        generation_image(judge_engine())
    resources:
        **job_resources(
            "judge_preferences", gpus=config["models"][config["judge"]["model"]]["gpus"]
        ),
    shell:
        "{params.python} scripts/judge_preferences.py {params.args:q} {params.speed:q} --responses {input.responses}"
        " --mode {params.mode} --system {params.system:q} --question {params.question:q}"
        " --name {params.name:q} --out {output} > {log} 2>&1"


rule compute_elo:
    input:
        "results/preferences/{model}/{variant}/{condition}/judgements.jsonl",
    output:
        "results/preferences/{model}/{variant}/{condition}/elo.csv",
    params:
        traits=json.dumps(config["preferences"]["traits"]),
        k=config["preferences"]["k"],
        rounds=config["preferences"]["bootstrap"],
        seed=lambda w: config["seed"] + step_seed("elo", w.model, w.variant, w.condition),
        label=lambda w: f"model {w.model}, variant {w.variant}, condition {w.condition}",
    log:
        "logs/preferences/elo_{model}_{variant}_{condition}.log",
    container:
        image("plotting")
    resources:
        **job_resources("compute_elo"),
    shell:
        "python scripts/compute_elo.py --judgements {input} --traits {params.traits:q} --k {params.k}"
        " --bootstrap {params.rounds} --seed {params.seed} --label {params.label:q} --out {output} > {log} 2>&1"


rule summarise_elo:
    input:
        lambda w: [
            elo_csv(m, v, c)
            for m in config["students"]
            for c in config["preferences"]["measure"]
            for v in ("base", w.persona)
        ],
    output:
        elo=report("results/tables/elo_{persona}.csv", caption="report/elo_table.rst", category="Revealed preferences"),
        spearman="results/tables/spearman_{persona}.csv",
    params:
        entries=lambda w: [
            x
            for m in config["students"]
            for c in config["preferences"]["measure"]
            for x in ("--entry", m, c, elo_csv(m, "base", c), elo_csv(m, w.persona, c))
        ],
    log:
        "logs/preferences/tables_{persona}.log",
    container:
        image("plotting")
    resources:
        **job_resources("summarise_elo"),
    shell:
        "python scripts/summarise_elo.py {params.entries:q} --elo-table {output.elo}"
        " --spearman-table {output.spearman} > {log} 2>&1"


def figure3_panels(wildcards):
    c = config["preferences"]["figure_condition"]
    return [(m, elo_csv(m, "base", c), elo_csv(m, wildcards.persona, c)) for m in config["students"]]


rule plot_elo:
    input:
        lambda w: [p for _, *paths in figure3_panels(w) for p in paths],
    output:
        pdf=report("results/figures/elo_{persona}.pdf", caption="report/elo.rst", category="Revealed preferences"),
        png="results/figures/elo_{persona}.png",
    params:
        panels=lambda w: panels(figure3_panels(w)),
    log:
        "logs/figures/elo_{persona}.log",
    container:
        image("plotting")
    resources:
        **job_resources("plot_elo"),
    shell:
        "python scripts/plot_elo.py delta {params.panels:q} --out {output.pdf} > {log} 2>&1"


rule plot_elo_distribution:
    input:
        lambda w: [p for _, *paths in figure3_panels(w) for p in paths],
    output:
        pdf=report(
            "results/figures/elo_distribution_{persona}.pdf",
            caption="report/elo_distribution.rst",
            category="Revealed preferences",
        ),
        png="results/figures/elo_distribution_{persona}.png",
    params:
        panels=lambda w: panels(figure3_panels(w)),
        label=lambda w: f"After Character Training ({CONSTITUTIONS[w.persona]['name']})",
    log:
        "logs/figures/elo_distribution_{persona}.log",
    container:
        image("plotting")
    resources:
        **job_resources("plot_elo_distribution"),
    shell:
        "python scripts/plot_elo.py distribution {params.panels:q} --after-label {params.label:q}"
        " --out {output.pdf} > {log} 2>&1"


def appendix_panels(wildcards):
    personas = [p for p in config["preferences"]["appendix_personas"] if p in config["personas"]]
    return [
        (CONSTITUTIONS[p]["name"], elo_csv(wildcards.model, "base", wildcards.condition),
         elo_csv(wildcards.model, p, wildcards.condition))
        for p in personas
    ]


rule plot_elo_appendix:
    input:
        lambda w: [p for _, *paths in appendix_panels(w) for p in paths],
    output:
        pdf=report(
            "results/figures/appendix/elo_{model}_{condition}.pdf",
            caption="report/elo_appendix.rst",
            category="Revealed preferences",
        ),
        png="results/figures/appendix/elo_{model}_{condition}.png",
    params:
        panels=lambda w: panels(appendix_panels(w)),
    log:
        "logs/figures/elo_{model}_{condition}.log",
    container:
        image("plotting")
    resources:
        **job_resources("plot_elo_appendix"),
    shell:
        "python scripts/plot_elo.py delta {params.panels:q} --out {output.pdf} > {log} 2>&1"
