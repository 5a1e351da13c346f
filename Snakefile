# Stages: load and validate blot tables -> simulate -> fit -> predict, design -> report.
# Each rule is one `python -m pipeline ...` call; the same command runs by hand.
# Run: snakemake --cores 2 --configfile configs/<analysis>.yaml   (default: configs/example.yaml)
import os

from snakemake.utils import validate


if not workflow.configfiles:  # no --configfile given: the bundled example (merging it would mix two analyses)

    configfile: "configs/example.yaml"



validate(config, "pipeline/schemas/config.schema.yaml")

CONFIG = workflow.configfiles[-1]  # the --configfile given (else the default above)
ANALYSIS = config["analysis"]
RESULTS = f"results/{ANALYSIS}"
LOGS = f"logs/{ANALYSIS}"


if "petab" in config:  # an imported PEtab problem: fit it as it is

    include: "workflow/petab.smk"

else:  # a blot dataset

    include: "workflow/blots.smk"


rule all:
    input:
        TARGETS,


rule report:  # the last stage of both kinds of analysis
    input:
        config=CONFIG,
        posterior=f"{RESULTS}/posterior.nc",
        table=TABLE,
        diagnostics=f"{RESULTS}/diagnostics.json",
        compare=COMPARE,
        decide=DECIDE,
    output:
        report=f"{RESULTS}/report.html",
        figures=directory(f"{RESULTS}/figures"),
        **REPORT_TABLES,
    params:
        analysis=ANALYSIS,
        results=lambda w, output: os.path.dirname(output.report),
    log:
        f"{LOGS}/report.log",
    conda:
        "environment.yml"
    shell:
        "python -m pipeline report {params.analysis} --config {input.config} --results {params.results} > {log} 2>&1"
