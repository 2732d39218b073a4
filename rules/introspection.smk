# 7-9. Self-reflection and self-interaction, SFT, the trained model and the release adapter
# (ref character/introspection/, finetuning/introspection/, tools/).


rule generate_reflection:
    input:
        student=get_student,
        adapter="results/adapters/{model}/{persona}/dpo",
        constitution="constitutions/{persona}.yaml",
    output:
        "results/introspection/{model}/{persona}/reflection.jsonl",
    log:
        "logs/introspection/reflection_{model}_{persona}.log",
    benchmark:
        "benchmarks/introspection/reflection_{model}_{persona}.tsv"
    container:
        generation_image(engine_of("reflection"))
    threads: job_threads("generate_reflection")
    resources:
        **job_resources("generate_reflection", gpus=config["resources"]["student_gpus"]),
    params:
        args=lambda w: engine_args("reflection", w.model, step_seed("reflection", w.model, w.persona)),
        system=lambda w: reflection_system(),  # a function: {NAME} is not a wildcard
        prompts=json.dumps(config["reflection"]["prompts"]),
        samples=config["reflection"]["samples"],
        name=lambda w: name_of(w.model),
        speed=untracked(engine_speed("reflection")),
        python=untracked(python_of("reflection")),
    shell:
        "{params.python} scripts/generate_reflection.py {params.args:q} {params.speed:q} --adapter {input.adapter}"
        " --constitution {input.constitution} --name {params.name:q} --system {params.system:q}"
        " --prompts {params.prompts:q} --samples {params.samples} --out {output} > {log} 2>&1"


rule generate_interaction:
    input:
        student=get_student,
        adapter="results/adapters/{model}/{persona}/dpo",
        constitution="constitutions/{persona}.yaml",
    output:
        "results/introspection/{model}/{persona}/interaction_{guidance}.jsonl",
    log:
        "logs/introspection/interaction_{model}_{persona}_{guidance}.log",
    benchmark:
        "benchmarks/introspection/interaction_{model}_{persona}_{guidance}.tsv"
    container:
        generation_image(engine_of("interaction"))
    threads: job_threads("generate_interaction")
    resources:
        **job_resources("generate_interaction", gpus=config["resources"]["student_gpus"]),
    params:
        args=interaction_args,
        name=lambda w: name_of(w.model),
        speed=untracked(engine_speed("interaction")),
        python=untracked(python_of("interaction")),
    shell:
        "{params.python} scripts/generate_interaction.py {params.args:q} {params.speed:q} --adapter {input.adapter}"
        " --constitution {input.constitution} --name {params.name:q} --out {output} > {log} 2>&1"


rule make_sft_data:
    input:
        reflection="results/introspection/{model}/{persona}/reflection.jsonl",
        interactions=expand(
            "results/introspection/{{model}}/{{persona}}/interaction_{guidance}.jsonl",
            guidance=["free", "leading"],
        ),
    output:
        "results/introspection/{model}/{persona}/sft.jsonl",
    log:
        "logs/introspection/sft_data_{model}_{persona}.log",
    container:
        image("training")
    resources:
        **job_resources("make_sft_data"),
    params:
        system=lambda w: config["sft_data"]["system"],  # a function: {NAME} is not a wildcard
        name=lambda w: name_of(w.model),
        system_name=fidelity_flag("sft_system_name"),
        seed=lambda w: config["seed"] + step_seed("sft_data", w.model, w.persona),
    shell:
        "python scripts/make_sft_data.py --reflection {input.reflection} --interactions {input.interactions}"
        " --system {params.system:q} --name {params.name:q} {params.system_name} --seed {params.seed}"
        " --out {output} > {log} 2>&1"


rule train_sft:
    input:
        data="results/introspection/{model}/{persona}/sft.jsonl",
        distilled="results/models/{model}/{persona}/distilled",
    output:
        directory("results/adapters/{model}/{persona}/sft"),
    log:
        "logs/training/sft_{model}_{persona}.log",
    benchmark:
        "benchmarks/training/sft_{model}_{persona}.tsv"
    container:
        image("training")
    threads: job_threads("train_sft")
    resources:
        **job_resources("train_sft", gpus=config["resources"]["train_gpus"]),
    params:
        settings=lambda w: training_settings("sft", w.model),
        speed=untracked(training_speed("sft")),
        launch=untracked(training_launch()),
        fidelity=fidelity_flag("sft_targets") + fidelity_flag("sft_loss"),
        card=untracked(model_card),
    shell:
        "{params.launch} scripts/train_sft.py --model {input.distilled} --data {input.data}"
        " --settings {params.settings:q} --speed {params.speed:q} {params.fidelity} --card {params.card:q}"
        " --out {output} > {log} 2>&1"


rule fold_sft:
    input:
        base="results/models/{model}/{persona}/distilled",
        adapter="results/adapters/{model}/{persona}/sft",
        dpo="results/adapters/{model}/{persona}/dpo",
    output:
        directory("results/models/{model}/{persona}/trained"),
    log:
        "logs/training/fold_sft_{model}_{persona}.log",
    container:
        image("training")
    threads: job_threads("fold_sft")
    resources:
        **job_resources("fold_sft"),
    params:
        dtype=config["sft"]["save_dtype"],
        card=untracked(model_card),
    shell:
        "python scripts/fold_adapter.py --base {input.base} --adapter {input.adapter} --dtype {params.dtype}"
        " --card {params.card:q} --stage DPO {input.dpo} --stage SFT {input.adapter} --out {output} > {log} 2>&1"


rule merge_release:
    input:
        base=get_student,
        dpo="results/adapters/{model}/{persona}/dpo",
        sft="results/adapters/{model}/{persona}/sft",
    output:
        directory("results/adapters/{model}/{persona}/release"),
    log:
        "logs/training/release_{model}_{persona}.log",
    container:
        image("training")
    threads: job_threads("merge_release")
    resources:
        **job_resources("merge_release"),
    params:
        weights=config["release"]["weights"],
        combination=config["release"]["combination"],
        base_name=lambda w: config["models"][w.model].get("hf", w.model),
        card=untracked(model_card),
    shell:
        "python scripts/merge_release.py --base {input.base} --dpo {input.dpo} --sft {input.sft}"
        " --weights {params.weights} --combination {params.combination} --base-name {params.base_name:q}"
        " --card {params.card:q} --out {output} > {log} 2>&1"


rule plot_training:
    input:
        dpo="results/adapters/{model}/{persona}/dpo",
        sft="results/adapters/{model}/{persona}/sft",
    output:
        report(
            "results/figures/training/{model}_{persona}.png",
            caption="report/training.rst",
            category="6. Training",
            subcategory="{model}",
        ),
    log:
        "logs/training/plot_{model}_{persona}.log",
    container:
        image("plotting")
    resources:
        **job_resources("plot_training"),
    shell:
        "python scripts/plot_training.py --dpo {input.dpo} --sft {input.sft}"
        " --title 'Training of {wildcards.model} for {wildcards.persona}: loss and DPO rewards per step'"
        " --out {output} > {log} 2>&1"
