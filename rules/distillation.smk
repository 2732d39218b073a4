# 2-6. Teacher and student responses, DPO pairs, DPO training, the distilled model
# (ref character/distillation/, finetuning/distillation/, tools/fold_all.py).


rule generate_chosen:
    input:
        prompts=get_chosen_prompts,
        teacher=model_input(config["teacher"]),
        constitution="constitutions/{persona}.yaml",
    output:
        "results/distillation/{persona}/chosen.jsonl",
    log:
        "logs/distillation/chosen_{persona}.log",
    benchmark:
        "benchmarks/distillation/chosen_{persona}.tsv"
    container:
        generation_image(engine_of("chosen"))
    threads: job_threads("generate_chosen")
    resources:
        **job_resources("generate_chosen", gpus=gpus_of(config["teacher"])),
    params:
        args=chosen_args,
        speed=untracked(engine_speed("chosen")),
        python=untracked(python_of("chosen")),
    shell:
        "{params.python} scripts/generate_responses.py {params.args:q} {params.speed:q} --prompts {input.prompts}"
        " --constitution {input.constitution} --out {output} > {log} 2>&1"


rule generate_rejected:
    input:
        chosen="results/distillation/{persona}/chosen.jsonl",
        student=get_student,
    output:
        "results/distillation/{model}/{persona}/rejected.jsonl",
    log:
        "logs/distillation/rejected_{model}_{persona}.log",
    benchmark:
        "benchmarks/distillation/rejected_{model}_{persona}.tsv"
    container:
        generation_image(engine_of("rejected"))
    threads: job_threads("generate_rejected")
    resources:
        **job_resources("generate_rejected", gpus=config["resources"]["student_gpus"]),
    params:
        args=lambda w: engine_args("rejected", w.model, step_seed("rejected", w.model, w.persona)),
        speed=untracked(engine_speed("rejected")),
        python=untracked(python_of("rejected")),
    shell:
        "{params.python} scripts/generate_responses.py {params.args:q} {params.speed:q} --prompts {input.chosen}"
        " --repeats 1 --out {output} > {log} 2>&1"


rule make_dpo_pairs:
    input:
        chosen="results/distillation/{persona}/chosen.jsonl",
        rejected="results/distillation/{model}/{persona}/rejected.jsonl",
        student=get_student,
    output:
        "results/distillation/{model}/{persona}/pairs.jsonl",
    log:
        "logs/distillation/pairs_{model}_{persona}.log",
    container:
        image("training")
    resources:
        **job_resources("make_dpo_pairs"),
    params:
        teacher_name=config["models"][config["teacher"]]["name"],
        student_name=lambda w: name_of(w.model),
        max_tokens=config["pairs"]["max_tokens"],
        complete=("--require-complete" if config["pairs"]["require_complete"] else "--no-require-complete"),
    shell:
        "python scripts/make_dpo_pairs.py --chosen {input.chosen} --rejected {input.rejected}"
        " --tokenizer {input.student} --teacher-name {params.teacher_name:q} --student-name {params.student_name:q}"
        " --max-tokens {params.max_tokens} {params.complete} --out {output} > {log} 2>&1"


rule train_dpo:
    input:
        pairs="results/distillation/{model}/{persona}/pairs.jsonl",
        student=get_student,
    output:
        directory("results/adapters/{model}/{persona}/dpo"),
    log:
        "logs/training/dpo_{model}_{persona}.log",
    benchmark:
        "benchmarks/training/dpo_{model}_{persona}.tsv"
    container:
        image("training")
    threads: job_threads("train_dpo")
    resources:
        **job_resources("train_dpo", gpus=config["resources"]["train_gpus"]),
    params:
        settings=lambda w: training_settings("dpo", w.model),
        speed=untracked(training_speed("dpo")),
        launch=untracked(training_launch()),
        card=untracked(model_card),
    shell:
        "{params.launch} scripts/train_dpo.py --model {input.student} --pairs {input.pairs}"
        " --settings {params.settings:q} --speed {params.speed:q} --card {params.card:q} --out {output} > {log} 2>&1"


rule fold_dpo:
    input:
        base=get_student,
        adapter="results/adapters/{model}/{persona}/dpo",
    output:
        directory("results/models/{model}/{persona}/distilled"),
    log:
        "logs/training/fold_dpo_{model}_{persona}.log",
    container:
        image("training")
    threads: job_threads("fold_dpo")
    resources:
        **job_resources("fold_dpo"),
    params:
        dtype=config["dpo"]["save_dtype"],
        card=untracked(model_card),
    shell:
        "python scripts/fold_adapter.py --base {input.base} --adapter {input.adapter} --dtype {params.dtype}"
        " --card {params.card:q} --stage DPO {input.adapter} --out {output} > {log} 2>&1"
