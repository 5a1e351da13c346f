# Stages: load and validate blot tables -> simulate -> fit -> diagnose -> report.
# Each rule is one `python -m pipeline ...` call; the same command runs by hand.
# Run: snakemake --cores 2 --configfile configs/<analysis>.yaml   (default: configs/example.yaml)
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
