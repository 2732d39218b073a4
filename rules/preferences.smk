# Revealed preferences (ref character/preferences/): trait Elo before and after character training, tables and figures.


rule prepare_wildchat:
    input:
        lambda w: get_dataset("wildchat"),
    output:
        "resources/datasets/wildchat_prompts.jsonl",
    log:
        "logs/preferences/prepare_wildchat.log",
    container:
        image("training")
    resources:
        **job_resources("prepare_wildchat"),
    params:
        rows=config["preferences"]["count"],
        seed=config["preferences"]["shuffle_seed"],
    shell:
        "python scripts/prepare_wildchat.py --source {input} --count {params.rows} --seed {params.seed}"
        " --out {output} > {log} 2>&1"


rule generate_preferences:
    input:
        prompts="resources/datasets/wildchat_prompts.jsonl",
        model=get_variant_model,
    output:
        "results/preferences/{model}/{variant}/{condition}/responses.jsonl",
    log:
        "logs/preferences/responses_{model}_{variant}_{condition}.log",
    benchmark:
        "benchmarks/preferences/responses_{model}_{variant}_{condition}.tsv"
    container:
        generation_image(engine_of("preferences"))
    threads: job_threads("generate_preferences")
    resources:
        **job_resources("generate_preferences", gpus=config["resources"]["student_gpus"]),
    params:
        args=lambda w: engine_args(
            "preferences",
            w.model,
            step_seed("preferences", w.model, preference_run(w), w.condition),
            path=get_variant_model(w),
        ),
        speed=untracked(engine_speed("preferences")),
        traits=json.dumps(config["preferences"]["traits"]),
        system=lambda w: config["preferences"]["system"],
        condition=lambda w: config["preferences"]["conditions"][w.condition],
        # fresh pairs per run, as in the reference (there unseeded), unless preferences.paired
        pair_seed=lambda w: config["seed"] + step_seed("pairs", w.model, preference_run(w), w.condition),
        pairs_per_prompt=config["preferences"]["pairs_per_prompt"],
        max_prompt_tokens=config["preferences"]["max_prompt_tokens"],
        python=untracked(python_of("preferences")),
    shell:
        "{params.python} scripts/generate_preferences.py {params.args:q} {params.speed:q}"
        " --prompts {input.prompts} --traits {params.traits:q} --system {params.system:q}"
        " --condition {params.condition:q} --pair-seed {params.pair_seed} --pairs-per-prompt {params.pairs_per_prompt}"
        " --max-prompt-tokens {params.max_prompt_tokens} --out {output} > {log} 2>&1"


rule judge_preferences:
    input:
        responses="results/preferences/{model}/{variant}/{condition}/responses.jsonl",
        judge=model_input(config["judge"]["model"]),
    output:
        "results/preferences/{model}/{variant}/{condition}/judgements.jsonl",
    log:
        "logs/preferences/judge_{model}_{variant}_{condition}.log",
    benchmark:
        "benchmarks/preferences/judge_{model}_{variant}_{condition}.tsv"
    container:
        generation_image(judge_engine())
    threads: job_threads("judge_preferences")
    resources:
        **job_resources("judge_preferences", gpus=gpus_of(config["judge"]["model"])),
    params:
        args=lambda w: engine_args(
            "judge",
            config["judge"]["model"],
            step_seed("judge", w.model, w.variant, w.condition),
            engine=judge_engine(),
            sampled=config["judge"]["mode"] == "generate",
        ),
        speed=untracked(engine_speed("judge", judge_engine(), sampled=config["judge"]["mode"] == "generate")),
        mode=config["judge"]["mode"],
        system=lambda w: config["judge"]["system"],
        question=lambda w: config["judge"]["question"],
        name=lambda w: judge_name(w.model),
        python=untracked(python_of("judge", judge_engine())),
    shell:
        "{params.python} scripts/judge_preferences.py {params.args:q} {params.speed:q} --responses {input.responses}"
        " --mode {params.mode} --system {params.system:q} --question {params.question:q}"
        " --name {params.name:q} --out {output} > {log} 2>&1"


rule compute_elo:
    input:
        "results/preferences/{model}/{variant}/{condition}/judgements.jsonl",
    output:
        "results/preferences/{model}/{variant}/{condition}/elo.csv",
    log:
        "logs/preferences/elo_{model}_{variant}_{condition}.log",
    container:
        image("plotting")
    resources:
        **job_resources("compute_elo"),
    params:
        traits=json.dumps(config["preferences"]["traits"]),
        k=config["preferences"]["k"],
        rounds=config["preferences"]["bootstrap"],
        seed=lambda w: config["seed"] + step_seed("elo", w.model, w.variant, w.condition),
        label=lambda w: f"model {w.model}, variant {w.variant}, condition {w.condition}",
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
        elo=report(
            "results/tables/elo_{persona}.csv", caption="report/elo_table.rst", category="2. Revealed preferences"
        ),
        spearman=report(
            "results/tables/spearman_{persona}.csv",
            caption="report/spearman_table.rst",
            category="2. Revealed preferences",
        ),
    log:
        "logs/preferences/tables_{persona}.log",
    container:
        image("plotting")
    resources:
        **job_resources("summarise_elo"),
    params:
        entries=lambda w: [
            x
            for m in config["students"]
            for c in config["preferences"]["measure"]
            for x in ("--entry", m, c, elo_csv(m, "base", c), elo_csv(m, w.persona, c))
        ],
    shell:
        "python scripts/summarise_elo.py {params.entries:q} --elo-table {output.elo}"
        " --spearman-table {output.spearman} > {log} 2>&1"


rule plot_elo:
    input:
        lambda w: [p for _, *paths in figure3_panels(w) for p in paths],
    output:
        pdf="results/figures/elo_{persona}.pdf",
        png=report("results/figures/elo_{persona}.png", caption="report/elo.rst", category="2. Revealed preferences"),
    log:
        "logs/figures/elo_{persona}.log",
    container:
        image("plotting")
    resources:
        **job_resources("plot_elo"),
    params:
        panels=lambda w: panels(figure3_panels(w)),
        title=lambda w: (
            f"Revealed preferences after {CONSTITUTIONS[w.persona]['name']} character training "
            f"({config['preferences']['figure_condition']} condition)"
        ),
    shell:
        "python scripts/plot_elo.py delta {params.panels:q} --title {params.title:q} --out {output.pdf} --png {output.png} > {log} 2>&1"


rule plot_elo_distribution:
    input:
        lambda w: [p for _, *paths in figure3_panels(w) for p in paths],
    output:
        pdf="results/figures/elo_distribution_{persona}.pdf",
        png=report(
            "results/figures/elo_distribution_{persona}.png",
            caption="report/elo_distribution.rst",
            category="2. Revealed preferences",
        ),
    log:
        "logs/figures/elo_distribution_{persona}.log",
    container:
        image("plotting")
    resources:
        **job_resources("plot_elo_distribution"),
    params:
        panels=lambda w: panels(figure3_panels(w)),
        label=lambda w: f"After Character Training ({CONSTITUTIONS[w.persona]['name']})",
        title=lambda w: (
            f"Trait Elo before and after {CONSTITUTIONS[w.persona]['name']} character training "
            f"({config['preferences']['figure_condition']} condition)"
        ),
    shell:
        "python scripts/plot_elo.py distribution {params.panels:q} --after-label {params.label:q}"
        " --title {params.title:q} --out {output.pdf} --png {output.png} > {log} 2>&1"


rule plot_elo_appendix:
    input:
        lambda w: [p for _, *paths in appendix_panels(w) for p in paths],
    output:
        pdf="results/figures/appendix/elo_{model}_{condition}.pdf",
        png=report(
            "results/figures/appendix/elo_{model}_{condition}.png",
            caption="report/elo_appendix.rst",
            category="2. Revealed preferences",
        ),
    log:
        "logs/figures/elo_{model}_{condition}.log",
    container:
        image("plotting")
    resources:
        **job_resources("plot_elo_appendix"),
    params:
        panels=lambda w: panels(appendix_panels(w)),
        title=lambda w: f"Revealed preferences of {w.model} after each character training ({w.condition} condition)",
    shell:
        "python scripts/plot_elo.py delta {params.panels:q} --title {params.title:q} --out {output.pdf} --png {output.png} > {log} 2>&1"
