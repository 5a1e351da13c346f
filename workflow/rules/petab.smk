# The stages of an imported PEtab problem (`petab:` in the config): petab_fit_map -> petab_fit -> petab_report.



rule petab_fit_map:
    wildcard_constraints:
        analysis=PETAB_NAMES,
    input:
        config=stage_config("fit_map"),
        problem=lambda w: CONFIGS[w.analysis]["petab"],
    output:
        "results/{analysis}/map.json",
    log:
        "logs/{analysis}/fit_map.log",
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0,
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline fit-map {input.config} --out {output} > {log} 2>&1"


rule petab_fit:
    wildcard_constraints:
        analysis=PETAB_NAMES,
    input:
        config=stage_config("fit"),
        problem=lambda w: CONFIGS[w.analysis]["petab"],
        map="results/{analysis}/map.json",
    output:
        posterior="results/{analysis}/posterior.nc",
        parameters="results/{analysis}/parameters.csv",
        plot="results/{analysis}/predictive.png",
        diagnostics="results/{analysis}/diagnostics.json",
    threads: lambda w: CONFIGS[w.analysis]["sampler"]["chains"]
    log:
        "logs/{analysis}/fit.log",
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=0,
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline fit {input.config} --map {input.map} --posterior {output.posterior} "
        "--shifts {output.parameters} --plot {output.plot} --diagnostics {output.diagnostics} --workers {threads} "
        "> {log} 2>&1"


rule petab_report:
    wildcard_constraints:
        analysis=PETAB_NAMES,
    input:
        config=stage_config("report"),
        posterior="results/{analysis}/posterior.nc",
        table="results/{analysis}/parameters.csv",
        diagnostics="results/{analysis}/diagnostics.json",
    output:
        report="results/{analysis}/report.html",
        figures=directory("results/{analysis}/figures"),
    log:
        "logs/{analysis}/report.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline report {wildcards.analysis} --config {input.config} "
        '--results "$(dirname {output.report})" > {log} 2>&1'
