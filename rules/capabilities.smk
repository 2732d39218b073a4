# Capability benchmarks (paper §5, Table 8): each student and its trained models, one job per benchmark.


localrules:
    download_benchmark,


rule download_benchmark:
    output:
        directory("resources/benchmarks/{benchmark_data}"),
    log:
        "logs/capabilities/download_{benchmark_data}.log",
    wildcard_constraints:
        benchmark_data=alternatives(d for d, s in config["capabilities"]["datasets"].items() if "path" not in s),
    container:
        image("training")
    params:
        repo=lambda w: config["capabilities"]["datasets"][w.benchmark_data]["hf"],
        revision=lambda w: config["capabilities"]["datasets"][w.benchmark_data]["revision"],
    shell:
        "HF_HUB_OFFLINE=0 python scripts/fetch_model.py --repo-type dataset --repo {params.repo}"
        " --revision {params.revision} --out {output} > {log} 2>&1"


rule evaluate_capabilities:
    input:
        model=capability_model,
        data=lambda w: benchmark_data(w.benchmark),
    output:
        "results/capabilities/{model}/{variant}/{benchmark}.json",
    log:
        "logs/capabilities/{model}_{variant}_{benchmark}.log",
    benchmark:
        "benchmarks/capabilities/{model}_{variant}_{benchmark}.tsv"
    container:
        image("capabilities")
    threads: job_threads("evaluate_capabilities")
    resources:
        **job_resources("evaluate_capabilities", gpus=config["resources"]["student_gpus"]),
    params:
        tasks=lambda w: config["capabilities"]["benchmarks"][w.benchmark]["tasks"],
        fewshot=lambda w: config["capabilities"]["benchmarks"][w.benchmark]["fewshot"],
        settings=capability_settings(),
        seed=config["seed"],
        speed=untracked(["--batch-size", config["capabilities"]["batch_size"]]),
        python=untracked(config["capabilities"]["python"]),
    shell:
        "{params.python} scripts/evaluate_capabilities.py --model {input.model} --data {input.data}"
        " --tasks {params.tasks} --fewshot {params.fewshot} {params.settings:q} --seed {params.seed}"
        " {params.speed:q} --out {output} > {log} 2>&1"


rule summarise_capabilities:
    input:
        results=[r[-1] for r in capability_results()],
        paper="data/paper_numbers.csv",
    output:
        table=report(
            "results/tables/capabilities.csv", caption="report/capabilities_table.rst", category="5. Capabilities"
        ),
        pdf="results/figures/capabilities.pdf",
        png=report("results/figures/capabilities.png", caption="report/capabilities.rst", category="5. Capabilities"),
    log:
        "logs/capabilities/summarise.log",
    container:
        image("plotting")
    resources:
        **job_resources("summarise_capabilities"),
    params:
        results=[x for r in capability_results() for x in ("--result", *r)],
    shell:
        "python scripts/summarise_capabilities.py {params.results:q} --paper {input.paper}"
        " --table {output.table} --figure {output.pdf} > {log} 2>&1"
