# 1. Constitution-relevant prompts (ref character/distillation/gen_prompts.py).


localrules:
    fetch_released_prompts,


rule fetch_released_prompts:
    output:
        "resources/released/{persona}.jsonl",
    log:
        "logs/prompts/fetch_{persona}.log",
    container:
        image("training")
    params:
        # the repository carries the paper's files (data/released/): read offline, checked the same way
        url=lambda w: released_copy(w.persona) or CONSTITUTIONS[w.persona]["released"]["url"],
        sha256=lambda w: CONSTITUTIONS[w.persona]["released"]["sha256"],
    shell:
        "python scripts/fetch_file.py --url {params.url:q} --sha256 {params.sha256} --out {output} > {log} 2>&1"


rule make_prompts:
    input:
        unpack(get_prompt_sources),
        constitution="constitutions/{persona}.yaml",
    output:
        "results/prompts/{persona}.jsonl",
    log:
        "logs/prompts/{persona}.log",
    benchmark:
        "benchmarks/prompts/{persona}.tsv"
    container:
        generation_image(engine_of("prompts"))
    threads: job_threads("make_prompts")
    resources:
        **job_resources(
            "make_prompts",
            gpus=lambda w: (0 if uses_released(w.persona) else gpus_of(config["generator"])),
        ),
    params:
        args=prompt_args,
        speed=untracked(lambda w: engine_speed("prompts") if generates_prompts(w.persona) else []),
        python=untracked(lambda w: python_of("prompts") if generates_prompts(w.persona) else "python"),
    shell:
        "{params.python} scripts/make_prompts.py --constitution {input.constitution} {params.args:q}"
        " {params.speed:q} --out {output} > {log} 2>&1"
