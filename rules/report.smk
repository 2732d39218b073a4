# The reproduction report: every number the workflow computes beside the paper's (scripts/report_reproduction.py).


rule report_reproduction:
    input:
        tables=[path for _, path in report_tables()],
        paper="data/paper_numbers.csv",
    output:
        markdown="results/report/reproduction.md",
        html=report("results/report/reproduction.html", caption="report/reproduction.rst", category="1. Reproduction"),
    log:
        "logs/report/reproduction.log",
    container:
        image("plotting")
    resources:
        **job_resources("report_reproduction"),
    params:
        tables=[x for table in report_tables() for x in ("--table", *table)],
        skipped=report_skipped(),
        provenance=untracked(provenance()),
    shell:
        "python scripts/report_reproduction.py {params.tables:q} {params.skipped:q} --paper {input.paper}"
        " --provenance {params.provenance:q} --markdown {output.markdown} --html {output.html} > {log} 2>&1"
