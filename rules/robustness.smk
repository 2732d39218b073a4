# Robustness to "break character" instructions (paper §4, Figure 5; ref character/robustness/): the prompted and
# steered baselines, every method's answers under each split, the persona classifier, macro-F1 and Figure 5.


rule prepare_robustness:
    input:
        lambda w: get_dataset("pure_dove"),
    output:
        "resources/datasets/robustness_prompts.jsonl",
    log:
        "logs/robustness/prepare.log",
    container:
        image("training")
    resources:
        **job_resources("prepare_robustness"),
    params:
        questions=config["robustness"]["count"],
        splits=json.dumps(config["robustness"]["splits"]),
    shell:
        "python scripts/prepare_robustness.py --source {input} --count {params.questions} --splits {params.splits:q}"
        " --out {output} > {log} 2>&1"


rule train_steering:
    input:
        student=get_student,
        constitution="constitutions/{persona}.yaml",
        suffixes=config["steering"]["suffixes"],
    output:
        vector="results/steering/{model}/{persona}/vector.safetensors",
        layers="results/steering/{model}/{persona}/vector.json",
    log:
        "logs/robustness/steering_{model}_{persona}.log",
    benchmark:
        "benchmarks/robustness/steering_{model}_{persona}.tsv"
    container:
        image("steering")
    threads: job_threads("train_steering")
    resources:
        **job_resources("train_steering", gpus=config["resources"]["student_gpus"]),
    params:
        system=lambda w: config["robustness"]["system"],
        name=lambda w: name_of(w.model),
        user=config["steering"]["user"],
        layers=config["steering"]["layers"],
        method=config["steering"]["method"],
        pairs=config["steering"]["pairs"],
        batch=untracked(config["steering"]["batch_size"]),
        python=untracked(config["steering"]["python"]),
    shell:
        "{params.python} scripts/train_steering.py --model {input.student} --constitution {input.constitution}"
        " --system {params.system:q} --name {params.name:q} --user {params.user:q} --suffixes {input.suffixes}"
        " --pairs {params.pairs} --layers {params.layers} --method {params.method} --batch-size {params.batch}"
        " --out {output.vector} > {log} 2>&1"


rule prepare_calibration:
    input:
        lambda w: get_dataset("pure_dove"),
    output:
        "resources/datasets/steering_calibration_prompts.jsonl",
    log:
        "logs/robustness/prepare_calibration.log",
    container:
        image("training")
    resources:
        **job_resources("prepare_calibration"),
    params:
        skip=config["robustness"]["count"],
        questions=config["steering"]["calibration"]["prompts"],
    shell:
        "python scripts/prepare_robustness.py --source {input} --skip {params.skip} --count {params.questions}"
        """ --splits '{{"default": ""}}' --out {output} > {log} 2>&1"""


rule calibrate_steering:
    input:
        student=get_student,
        vector="results/steering/{model}/{persona}/vector.safetensors",
        layers="results/steering/{model}/{persona}/vector.json",
        prompts="resources/datasets/steering_calibration_prompts.jsonl",
        constitution="constitutions/{persona}.yaml",
    output:
        "results/steering/{model}/{persona}/calibration.csv",
    log:
        "logs/robustness/calibration_{model}_{persona}.log",
    benchmark:
        "benchmarks/robustness/calibration_{model}_{persona}.tsv"
    container:
        image("training")
    threads: job_threads("calibrate_steering")
    resources:
        **job_resources("calibrate_steering", gpus=config["resources"]["student_gpus"]),
    params:
        args=lambda w: engine_args(
            "steering.calibration", w.model, step_seed("calibration", w.model, w.persona), engine="hf"
        ),
        speed=untracked(engine_speed("steering.calibration", "hf")),
        system=lambda w: config["robustness"]["system"],
        name=lambda w: name_of(w.model),
        scales=config["steering"]["calibration"]["scales"],
        ratio=config["steering"]["calibration"]["max_perplexity_ratio"],
    shell:
        "python scripts/calibrate_steering.py {params.args:q} {params.speed:q} --vector {input.vector}"
        " --prompts {input.prompts} --system {params.system:q} --name {params.name:q}"
        " --constitution {input.constitution} --scales {params.scales} --max-perplexity-ratio {params.ratio}"
        " --out {output} > {log} 2>&1"


rule plot_calibration:
    input:
        "results/steering/{model}/{persona}/calibration.csv",
    output:
        report(
            "results/steering/{model}/{persona}/calibration.png",
            caption="report/calibration.rst",
            category="3. Robustness",
            subcategory="Steering calibration",
        ),
    log:
        "logs/figures/calibration_{model}_{persona}.log",
    container:
        image("plotting")
    resources:
        **job_resources("plot_calibration"),
    params:
        title=lambda w: f"Steering coefficient sweep: {w.model}, {CONSTITUTIONS[w.persona]['name']}",
        ratio=config["steering"]["calibration"]["max_perplexity_ratio"],
    shell:
        "python scripts/plot_calibration.py --sweep {input} --max-perplexity-ratio {params.ratio}"
        " --title {params.title:q} --out {output} > {log} 2>&1"


rule steering_settings:
    input:
        unpack(get_steering_settings_inputs),
    output:
        "results/steering/{model}/{persona}/steering.json",
    log:
        "logs/robustness/steering_settings_{model}_{persona}.log",
    container:
        image("training")
    resources:
        **job_resources("steering_settings"),
    params:
        coefficient=steering_coefficient,
    shell:
        "python scripts/steering_settings.py --vector {input.vector} {params.coefficient} --out {output} > {log} 2>&1"


rule generate_robustness:
    input:
        unpack(get_robustness_inputs),
    output:
        "results/robustness/{model}/{method}/{persona}.jsonl",
    log:
        "logs/robustness/responses_{model}_{method}_{persona}.log",
    benchmark:
        "benchmarks/robustness/responses_{model}_{method}_{persona}.tsv"
    container:
        generation_image(engine_of("robustness"))
    threads: job_threads("generate_robustness")
    resources:
        **job_resources("generate_robustness", gpus=config["resources"]["student_gpus"]),
    params:
        args=robustness_args,
        speed=untracked(lambda w: engine_speed("robustness", robustness_engine(w))),
        python=untracked(lambda w: python_of("robustness", robustness_engine(w))),
    shell:
        "{params.python} scripts/generate_responses.py {params.args:q} {params.speed:q} --prompts {input.prompts}"
        " --repeats 1 --keep split question --out {output} > {log} 2>&1"


rule train_classifier:
    input:
        base=model_dir(config["classifier"]["model"]),
        responses=lambda w: [i["path"] for i in robustness_responses(w.model)],
    output:
        directory("results/classifier/{model}"),
    log:
        "logs/robustness/classifier_{model}.log",
    benchmark:
        "benchmarks/robustness/classifier_{model}.tsv"
    container:
        image("training")
    threads: job_threads("train_classifier")
    resources:
        **job_resources("train_classifier", gpus=config["resources"]["student_gpus"]),
    params:
        inputs=lambda w: json.dumps(robustness_responses(w.model)),
        labels=config["personas"],
        settings=json.dumps({k: v for k, v in config["classifier"].items() if k not in ("model", "eval_batch_size")}),
        seed=lambda w: config["seed"] + step_seed("classifier", w.model),
    shell:
        "python scripts/train_classifier.py --base {input.base} --inputs {params.inputs:q} --labels {params.labels}"
        " --settings {params.settings:q} --seed {params.seed} --out {output} > {log} 2>&1"


rule classify_robustness:
    input:
        classifier="results/classifier/{model}",
        responses=lambda w: [i["path"] for i in robustness_responses(w.model)],
    output:
        "results/robustness/{model}/predictions.jsonl",
    log:
        "logs/robustness/classify_{model}.log",
    container:
        image("training")
    threads: job_threads("classify_robustness")
    resources:
        **job_resources("classify_robustness", gpus=config["resources"]["student_gpus"]),
    params:
        inputs=lambda w: json.dumps(robustness_responses(w.model)),
        max_length=config["classifier"]["max_length"],
        batch=untracked(config["classifier"]["eval_batch_size"]),
    shell:
        "python scripts/classify_responses.py --classifier {input.classifier} --inputs {params.inputs:q}"
        " --max-length {params.max_length} --batch-size {params.batch} --out {output} > {log} 2>&1"


rule plot_robustness:
    input:
        predictions=expand("results/robustness/{model}/predictions.jsonl", model=config["students"]),
        classifiers=expand("results/classifier/{model}", model=config["students"]),
    output:
        table=report("results/tables/robustness.csv", caption="report/robustness_table.rst", category="3. Robustness"),
        splits=report(
            "results/tables/robustness_splits.csv", caption="report/robustness_splits.rst", category="3. Robustness"
        ),
        pdf="results/figures/robustness.pdf",
        png=report("results/figures/robustness.png", caption="report/robustness.rst", category="3. Robustness"),
    log:
        "logs/figures/robustness.log",
    container:
        image("plotting")
    resources:
        **job_resources("plot_robustness"),
    params:
        students=[
            x
            for m in config["students"]
            for x in ("--student", m, f"results/robustness/{m}/predictions.jsonl", f"results/classifier/{m}")
        ],
        methods=config["robustness"]["methods"],
        adversarial=sorted(s for s in config["robustness"]["splits"] if s != "default"),  # an order of their own
    shell:
        "python scripts/plot_robustness.py {params.students:q} --methods {params.methods} --adversarial"
        " {params.adversarial} --table {output.table} --splits-table {output.splits} --figure {output.pdf}"
        " > {log} 2>&1"


# The prefill attack (paper §4, Table 5; ref character/robustness/prefill/multi_turn.py): the base student's
# first answer, then each method's model answering the follow-up after it.
rule generate_prefill_first:
    input:
        prompts="resources/datasets/robustness_prompts.jsonl",
        student=get_student,
    output:
        "results/prefill/{model}/first_turn.jsonl",
    log:
        "logs/prefill/first_turn_{model}.log",
    benchmark:
        "benchmarks/prefill/first_turn_{model}.tsv"
    container:
        generation_image(engine_of("prefill"))
    threads: job_threads("generate_prefill_first")
    resources:
        **job_resources("generate_prefill_first", gpus=config["resources"]["student_gpus"]),
    params:
        args=lambda w: engine_args("prefill", w.model, step_seed("prefill", w.model)),
        speed=untracked(engine_speed("prefill")),
        python=untracked(python_of("prefill")),
    shell:
        "{params.python} scripts/generate_responses.py {params.args:q} {params.speed:q} --prompts {input.prompts}"
        " --split default --repeats 1 --keep split question --out {output} > {log} 2>&1"


rule generate_prefill:
    input:
        prompts="resources/datasets/robustness_prompts.jsonl",
        history="results/prefill/{model}/first_turn.jsonl",
        model=robustness_model,
    output:
        "results/prefill/{model}/{method}/{persona}.jsonl",
    log:
        "logs/prefill/responses_{model}_{method}_{persona}.log",
    benchmark:
        "benchmarks/prefill/responses_{model}_{method}_{persona}.tsv"
    container:
        generation_image(engine_of("prefill"))
    threads: job_threads("generate_prefill")
    resources:
        **job_resources("generate_prefill", gpus=config["resources"]["student_gpus"]),
    params:
        args=lambda w: engine_args(
            "prefill",
            w.model,
            step_seed("prefill", w.model, w.method, w.persona),
            path=robustness_model(w),
        ),
        follow_up=lambda w: prefill_follow_up(),
        speed=untracked(engine_speed("prefill")),
        python=untracked(python_of("prefill")),
    shell:
        "{params.python} scripts/generate_responses.py {params.args:q} {params.speed:q} --prompts {input.prompts}"
        " --split default --history {input.history} --follow-up {params.follow_up:q} --repeats 1"
        " --keep split question first_turn --out {output} > {log} 2>&1"


rule classify_prefill:
    input:
        classifier="results/classifier/{model}",
        responses=lambda w: [i["path"] for i in prefill_responses(w.model)],
    output:
        "results/prefill/{model}/predictions.jsonl",
    log:
        "logs/prefill/classify_{model}.log",
    container:
        image("training")
    threads: job_threads("classify_prefill")
    resources:
        **job_resources("classify_prefill", gpus=config["resources"]["student_gpus"]),
    params:
        inputs=lambda w: json.dumps(prefill_responses(w.model)),
        max_length=config["classifier"]["max_length"],
        batch=untracked(config["classifier"]["eval_batch_size"]),
    shell:
        "python scripts/classify_responses.py --classifier {input.classifier} --inputs {params.inputs:q}"
        " --max-length {params.max_length} --batch-size {params.batch} --out {output} > {log} 2>&1"


rule summarise_prefill:
    input:
        predictions=expand("results/prefill/{model}/predictions.jsonl", model=config["students"]),
        paper="data/paper_numbers.csv",
    output:
        report("results/tables/prefill.csv", caption="report/prefill_table.rst", category="3. Robustness"),
    log:
        "logs/prefill/summary.log",
    container:
        image("plotting")
    resources:
        **job_resources("summarise_prefill"),
    params:
        predictions=[
            x for m in config["students"] for x in ("--predictions", m, f"results/prefill/{m}/predictions.jsonl")
        ],
    shell:
        "python scripts/summarise_prefill.py {params.predictions:q} --paper {input.paper} --table {output}"
        " > {log} 2>&1"
