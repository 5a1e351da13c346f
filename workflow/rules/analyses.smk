# The local rules of the run as a whole: each stage's config file, and the table across the analyses of a sheet.


wildcard_constraints:
    analysis=_names(CONFIGS),
    stage="|".join(STAGE_SECTIONS),


rule stage_config:
    output:
        "results/{analysis}/config/{stage}.yaml",
    params:
        sections=lambda w: stage_sections(w.analysis, w.stage),
    log:
        "logs/{analysis}/config/{stage}.log",
    localrule: True
    run:
        write_config(RAW[wildcards.analysis], output[0], log[0])


use rule stage_config as variant_stage_config with:
    output:
        "results/{analysis}/variants/{variant}/config/{stage}.yaml",
    params:
        sections=lambda w: stage_sections(w.analysis, w.stage, w.variant),
    log:
        "logs/{analysis}/variants/{variant}/config/{stage}.log",


rule summarise_analyses:  # one table of the top mechanisms of every blot analysis of the sheet
    input:
        expand("results/{analysis}/shifts.csv", analysis=BLOTS),
    output:
        "results/analyses.csv",
    params:
        pairs=" ".join(f"{a}=results/{a}/shifts.csv" for a in BLOTS),
    log:
        "logs/summarise_analyses.log",
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline summarise-analyses {params.pairs} --out {output} > {log} 2>&1"
