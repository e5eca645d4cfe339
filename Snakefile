from snakemake.utils import min_version, validate

min_version("8.19.3")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/environment.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs(),
