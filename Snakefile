# Open Character Training (Maiya, Bartsch, Lambert, Hubinger 2025, arXiv 2511.01689) as a workflow:
# constitutions -> prompts -> teacher/student responses -> DPO -> introspection -> SFT -> trained models.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "rules/report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/prompts.smk"
include: "rules/distillation.smk"
include: "rules/introspection.smk"
include: "rules/preferences.smk"
include: "rules/robustness.smk"
include: "rules/coherence.smk"
include: "rules/capabilities.smk"
include: "rules/report.smk"


rule all:
    input:
        get_final_targets(),
