# Coherence (paper §4, Tables 2, 6, 7, Appendix D; ref character/coherence/coherence.py): a judge compares the
# trained model's answers to the default split's questions with another method's, in both orders.


rule judge_coherence:
    input:
        first="results/robustness/{model}/{comparison}/{persona}.jsonl",
        second="results/robustness/{model}/trained/{persona}.jsonl",
        constitution="constitutions/{persona}.yaml",
        judge=lambda w: model_input(w.judge),
    output:
        "results/coherence/{judge}/{model}/{comparison}/{persona}.jsonl",
    log:
        "logs/coherence/{judge}_{model}_{comparison}_{persona}.log",
    benchmark:
        "benchmarks/coherence/{judge}_{model}_{comparison}_{persona}.tsv"
    container:
        generation_image("vllm" if "vllm" in map(coherence_engine, config["coherence"]["judges"]) else "hf")
    threads: job_threads("judge_coherence")
    resources:
        **job_resources("judge_coherence", gpus=lambda w: gpus_of(w.judge)),
    params:
        args=lambda w: engine_args(
            "coherence",
            w.judge,
            step_seed("coherence", w.judge, w.model, w.comparison, w.persona),
            engine=coherence_engine(w.judge),
            sampled=config["coherence"]["mode"] == "generate",
        ),
        speed=untracked(
            lambda w: engine_speed(
                "coherence", coherence_engine(w.judge), config["coherence"]["mode"] == "generate", w.judge
            )
        ),
        prompt=lambda w: config["coherence"]["prompts"][FIDELITY["coherence_judging"]],
        mode=config["coherence"]["mode"],
        python=untracked(lambda w: python_of("coherence", coherence_engine(w.judge))),
    shell:
        "{params.python} scripts/judge_coherence.py {params.args:q} {params.speed:q} --first {input.first}"
        " --second {input.second} --constitution {input.constitution} --prompt {params.prompt:q}"
        " --mode {params.mode} --out {output} > {log} 2>&1"


rule summarise_coherence:
    input:
        judged=[j[-1] for j in coherence_judgements()],
        paper="data/paper_numbers.csv",
    output:
        table=report("results/tables/coherence.csv", caption="report/coherence_table.rst", category="4. Coherence"),
        pdf="results/figures/coherence.pdf",
        png=report("results/figures/coherence.png", caption="report/coherence.rst", category="4. Coherence"),
    log:
        "logs/coherence/summary.log",
    container:
        image("plotting")
    resources:
        **job_resources("summarise_coherence"),
    params:
        judged=[x for j in coherence_judgements() for x in ("--judged", *j)],
        statistic="personas" if FIDELITY["coherence_judging"] == "code" else "prompts",
    shell:
        "python scripts/summarise_coherence.py {params.judged:q} --statistic {params.statistic}"
        " --paper {input.paper} --table {output.table} --figure {output.pdf} > {log} 2>&1"
