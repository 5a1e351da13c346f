# The stages of a blot dataset (`dataset:` in the config): ingest -> simulate -> fit_map -> fit_nuts.
DATASET = config["dataset"]


TARGETS = [f"{RESULTS}/data.nc", f"{RESULTS}/simulation.nc", f"{RESULTS}/posterior.nc", f"{RESULTS}/shifts.csv"]  # rule all in the Snakefile


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
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline fit-map {input.config} --data {input.data} --out {output} > {log} 2>&1"


rule fit_nuts:
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
        f"{LOGS}/fit_nuts.log",
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline fit-nuts {input.config} --data {input.data} --map {input.map} "
        "--posterior {output.posterior} --shifts {output.shifts} --diagnostics {output.diagnostics} > {log} 2>&1"
