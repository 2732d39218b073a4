# Models and data sets: downloaded once into resources/ (on the login node) or built locally.


localrules:
    download_model,
    download_dataset,


rule download_model:
    output:
        directory("resources/models/{hub_model}"),
    log:
        "logs/models/download_{hub_model}.log",
    wildcard_constraints:
        hub_model=alternatives(models_of_kind("hf")),
    container:
        image("training")
    params:
        repo=lambda w: config["models"][w.hub_model]["hf"],
        revision=lambda w: config["models"][w.hub_model]["revision"],
    shell:
        "HF_HUB_OFFLINE=0 python scripts/fetch_model.py --repo {params.repo} --revision {params.revision}"
        " --out {output} > {log} 2>&1"


rule build_tiny_model:
    output:
        directory("resources/models/{tiny_model}"),
    log:
        "logs/models/build_{tiny_model}.log",
    wildcard_constraints:
        tiny_model=alternatives(models_of_kind("tiny")),
    container:
        image("training")
    resources:
        **job_resources("build_tiny_model"),
    params:
        flavour=lambda w: config["models"][w.tiny_model]["tiny"],
        seed=config["seed"],
    shell:
        "python scripts/build_tiny_model.py --flavour {params.flavour} --seed {params.seed} --out {output} > {log} 2>&1"


rule download_dataset:
    output:
        directory("resources/datasets/{dataset}"),
    log:
        "logs/models/download_{dataset}.log",
    wildcard_constraints:
        dataset="lima|wildchat|pure_dove",
    container:
        image("training")
    params:
        repo=lambda w: config[w.dataset]["hf"],
        revision=lambda w: config[w.dataset]["revision"],
    shell:
        "HF_HUB_OFFLINE=0 python scripts/fetch_model.py --repo-type dataset --repo {params.repo}"
        " --revision {params.revision} --out {output} > {log} 2>&1"


rule prepare_lima:
    input:
        lambda w: get_dataset("lima"),
    output:
        "resources/datasets/lima_prompts.jsonl",
    log:
        "logs/models/prepare_lima.log",
    container:
        image("training")
    resources:
        **job_resources("prepare_lima"),
    shell:
        "python scripts/prepare_lima.py --source {input} --out {output} > {log} 2>&1"


rule convert_gguf:
    input:
        lambda w: str(gguf_file(config["models"][w.gguf_model])),
    output:
        directory("resources/models/{gguf_model}"),
    log:
        "logs/models/convert_{gguf_model}.log",
    wildcard_constraints:
        gguf_model=alternatives(models_of_kind("gguf")),
    container:
        image("training")
    threads: job_threads("convert_gguf")
    resources:
        **job_resources("convert_gguf"),
    shell:
        "python scripts/convert_gguf.py --gguf {input} --dtype float32 --out {output} > {log} 2>&1"
