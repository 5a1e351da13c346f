# The stages of a blot dataset (`dataset:` in the config): ingest -> simulate -> fit_map -> fit
# (-> the same two per model variant -> compare) -> predict, design -> report.
DATASET = config["dataset"]
VARIANTS = [x["name"] for x in config.get("variants", [])]
COMPARE = [f"{RESULTS}/compare.csv"] if VARIANTS else []
REPORT_TABLES = {"misfit": f"{RESULTS}/misfit.csv"}  # written by the report rule
TABLE = f"{RESULTS}/shifts.csv"  # the report's table
DECIDE = [f"{RESULTS}/reversal.csv", f"{RESULTS}/design.csv"]  # read by the report


TARGETS = [f"{RESULTS}/data.nc", f"{RESULTS}/simulation.nc", f"{RESULTS}/posterior.nc", f"{RESULTS}/shifts.csv",
           f"{RESULTS}/report.html"] + COMPARE + DECIDE  # rule all in the Snakefile


rule ingest:
    input:
        meta=f"{DATASET}/dataset.yaml",
        conditions=f"{DATASET}/conditions.csv",
        measurements=f"{DATASET}/measurements.csv",
    output:
        f"{RESULTS}/data.nc",
    log:
        f"{LOGS}/ingest.log",
    conda:
        "../environment.yml"
    shell:
        'python -m pipeline ingest "$(dirname {input.meta})" --out {output} > {log} 2>&1'


rule simulate:
    input:
        config=CONFIG,
        data=f"{RESULTS}/data.nc",
    output:
        traj=f"{RESULTS}/simulation.nc",
        plot=f"{RESULTS}/simulation.png",
    log:
        f"{LOGS}/simulate.log",
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline simulate {input.config} --data {input.data} --out {output.traj} --plot {output.plot} > {log} 2>&1"


rule fit_map:
    input:
        config=CONFIG,
        data=f"{RESULTS}/data.nc",
    output:
        f"{RESULTS}/map.json",
    log:
        f"{LOGS}/fit_map.log",
    params:
        variant="base",
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline fit-map {input.config} --variant {params.variant} --data {input.data} --out {output} "
        "> {log} 2>&1"


rule fit:
    input:
        config=CONFIG,
        data=f"{RESULTS}/data.nc",
        map=f"{RESULTS}/map.json",
    output:
        posterior=f"{RESULTS}/posterior.nc",
        shifts=f"{RESULTS}/shifts.csv",
        diagnostics=f"{RESULTS}/diagnostics.json",
    threads: 2  # chain_method: processes runs a chain per core
    log:
        f"{LOGS}/fit.log",
    params:
        variant="base",
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline fit {input.config} --variant {params.variant} --data {input.data} --map {input.map} "
        "--posterior {output.posterior} --shifts {output.shifts} --diagnostics {output.diagnostics} > {log} 2>&1"


rule predict:
    input:
        config=CONFIG,
        data=f"{RESULTS}/data.nc",
        posterior=f"{RESULTS}/posterior.nc",
    output:
        predictions=f"{RESULTS}/predictions.nc",
        reversal=f"{RESULTS}/reversal.csv",
    log:
        f"{LOGS}/predict.log",
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline predict {input.config} --data {input.data} --posterior {input.posterior} "
        "--out {output.predictions} --reversal {output.reversal} > {log} 2>&1"


rule design:
    input:
        config=CONFIG,
        data=f"{RESULTS}/data.nc",
        posterior=f"{RESULTS}/posterior.nc",
    output:
        f"{RESULTS}/design.csv",
    log:
        f"{LOGS}/design.log",
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline design {input.config} --data {input.data} --posterior {input.posterior} --out {output} "
        "> {log} 2>&1"


# A model variant (`variants` in the config) is fitted as the base is, into results/<analysis>/variants/<name>/.
use rule fit_map as fit_map_variant with:
    output:
        f"{RESULTS}/variants/{{variant}}/map.json",
    params:
        variant=lambda w: w.variant,
    log:
        f"{LOGS}/variants/{{variant}}/fit_map.log",


use rule fit as fit_variant with:
    input:
        config=CONFIG,
        data=f"{RESULTS}/data.nc",
        map=f"{RESULTS}/variants/{{variant}}/map.json",
    output:
        posterior=f"{RESULTS}/variants/{{variant}}/posterior.nc",
        shifts=f"{RESULTS}/variants/{{variant}}/shifts.csv",
        diagnostics=f"{RESULTS}/variants/{{variant}}/diagnostics.json",
    params:
        variant=lambda w: w.variant,
    log:
        f"{LOGS}/variants/{{variant}}/fit.log",


rule compare:
    input:
        base=f"{RESULTS}/posterior.nc",
        variants=expand(f"{RESULTS}/variants/{{variant}}/posterior.nc", variant=VARIANTS),
    output:
        f"{RESULTS}/compare.csv",
    params:
        pairs=" ".join([f"base={RESULTS}/posterior.nc"] + [f"{n}={RESULTS}/variants/{n}/posterior.nc" for n in VARIANTS]),
    log:
        f"{LOGS}/compare.log",
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline compare {params.pairs} --out {output} > {log} 2>&1"
