# The stages of a blot dataset (`dataset:` in the config): ingest -> simulate -> fit_map -> fit -> summarise
# (-> fit_map and fit per model variant -> compare) -> predict, design -> report.
# The fit rules state what they need (threads, mem_mb, runtime in minutes, gpu); profiles/ sets them per machine.



rule ingest:
    wildcard_constraints:
        analysis=BLOT_NAMES,
    input:
        unpack(dataset_files),
    output:
        "results/{analysis}/data.nc",
    log:
        "logs/{analysis}/ingest.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    shell:
        'python -m pipeline ingest "$(dirname {input.meta})" --out {output} > {log} 2>&1'


rule simulate:
    wildcard_constraints:
        analysis=BLOT_NAMES,
    input:
        config=stage_config("simulate"),
        data="results/{analysis}/data.nc",
    output:
        traj="results/{analysis}/simulation.nc",
        plot="results/{analysis}/simulation.png",
    log:
        "logs/{analysis}/simulate.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline simulate {input.config} --data {input.data} --out {output.traj} --plot {output.plot} "
        "> {log} 2>&1"


rule fit_map:
    wildcard_constraints:
        analysis=BLOT_NAMES,
    input:
        config=stage_config("fit_map"),
        data="results/{analysis}/data.nc",
    output:
        "results/{analysis}/map.json",
    log:
        "logs/{analysis}/fit_map.log",
    params:
        variant="base",
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0,
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline fit-map {input.config} --variant {params.variant} --data {input.data} --out {output} "
        "> {log} 2>&1"


rule fit:
    wildcard_constraints:
        analysis=BLOT_NAMES,
    input:
        config=stage_config("fit"),
        data="results/{analysis}/data.nc",
        map="results/{analysis}/map.json",
    output:
        posterior="results/{analysis}/posterior.nc",
        diagnostics="results/{analysis}/diagnostics.json",
    threads: chain_threads
    log:
        "logs/{analysis}/fit.log",
    params:
        variant="base",
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=0,
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline fit {input.config} --variant {params.variant} --data {input.data} --map {input.map} "
        "--posterior {output.posterior} --diagnostics {output.diagnostics} --workers {threads} > {log} 2>&1"


rule summarise:
    wildcard_constraints:
        analysis=BLOT_NAMES,
    input:
        config=stage_config("summarise"),
        posterior="results/{analysis}/posterior.nc",
    output:
        "results/{analysis}/shifts.csv",
    log:
        "logs/{analysis}/summarise.log",
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline summarise {input.config} --posterior {input.posterior} --out {output} > {log} 2>&1"


rule predict:
    wildcard_constraints:
        analysis=BLOT_NAMES,
    input:
        config=stage_config("predict"),
        data="results/{analysis}/data.nc",
        posterior="results/{analysis}/posterior.nc",
    output:
        predictions="results/{analysis}/predictions.nc",
        reversal="results/{analysis}/reversal.csv",
    log:
        "logs/{analysis}/predict.log",
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=0,
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline predict {input.config} --data {input.data} --posterior {input.posterior} "
        "--out {output.predictions} --reversal {output.reversal} > {log} 2>&1"


rule design:
    wildcard_constraints:
        analysis=BLOT_NAMES,
    input:
        config=stage_config("design"),
        data="results/{analysis}/data.nc",
        posterior="results/{analysis}/posterior.nc",
    output:
        "results/{analysis}/design.csv",
    log:
        "logs/{analysis}/design.log",
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=0,
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline design {input.config} --data {input.data} --posterior {input.posterior} --out {output} "
        "> {log} 2>&1"


# A model variant (`variants` in the config) is fitted as the base is, into results/<analysis>/variants/<name>/.
use rule fit_map as fit_map_variant with:
    input:
        config=stage_config("fit_map", variant=True),
        data="results/{analysis}/data.nc",
    output:
        "results/{analysis}/variants/{variant}/map.json",
    params:
        variant=lambda w: w.variant,
    log:
        "logs/{analysis}/variants/{variant}/fit_map.log",


use rule fit as fit_variant with:
    input:
        config=stage_config("fit", variant=True),
        data="results/{analysis}/data.nc",
        map="results/{analysis}/variants/{variant}/map.json",
    output:
        posterior="results/{analysis}/variants/{variant}/posterior.nc",
        diagnostics="results/{analysis}/variants/{variant}/diagnostics.json",
    params:
        variant=lambda w: w.variant,
    log:
        "logs/{analysis}/variants/{variant}/fit.log",


rule compare:
    wildcard_constraints:
        analysis=BLOT_NAMES,
    input:
        base="results/{analysis}/posterior.nc",
        variants=lambda w: expand("results/{{analysis}}/variants/{variant}/posterior.nc", variant=variants(w.analysis)),
    output:
        "results/{analysis}/compare.csv",
    params:
        pairs=lambda w: " ".join([f"base=results/{w.analysis}/posterior.nc"]
                                 + [f"{n}=results/{w.analysis}/variants/{n}/posterior.nc" for n in variants(w.analysis)]),
    log:
        "logs/{analysis}/compare.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "python -m pipeline compare {params.pairs} --out {output} > {log} 2>&1"


rule report:
    wildcard_constraints:
        analysis=BLOT_NAMES,
    input:
        config=stage_config("report"),
        posterior="results/{analysis}/posterior.nc",
        table="results/{analysis}/shifts.csv",
        diagnostics="results/{analysis}/diagnostics.json",
        compare=lambda w: compare_inputs(w.analysis),
        decide=lambda w: decide_outputs(w.analysis),
    output:
        report="results/{analysis}/report.html",
        figures=directory("results/{analysis}/figures"),
        misfit="results/{analysis}/misfit.csv",
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
