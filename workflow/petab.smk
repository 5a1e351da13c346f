# The stages of an imported PEtab problem (`petab:` in the config): fit_map -> fit -> report.
PROBLEM = config["petab"]
COMPARE = []
DECIDE = []  # predict and design need a blot dataset
REPORT_TABLES = {}  # written by the report rule besides the page
TABLE = f"{RESULTS}/parameters.csv"  # the report's table


TARGETS = [f"{RESULTS}/posterior.nc", f"{RESULTS}/predictive.png", f"{RESULTS}/report.html"]  # rule all in the Snakefile


rule fit_map:
    input:
        config=CONFIG,
        problem=PROBLEM,
    output:
        f"{RESULTS}/map.json",
    log:
        f"{LOGS}/fit_map.log",
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline fit-map {input.config} --out {output} > {log} 2>&1"


rule fit:
    input:
        config=CONFIG,
        problem=PROBLEM,
        map=f"{RESULTS}/map.json",
    output:
        posterior=f"{RESULTS}/posterior.nc",
        parameters=f"{RESULTS}/parameters.csv",
        plot=f"{RESULTS}/predictive.png",
        diagnostics=f"{RESULTS}/diagnostics.json",
    threads: 2  # chain_method: processes runs a chain per core
    log:
        f"{LOGS}/fit.log",
    conda:
        "../environment.yml"
    shell:
        "python -m pipeline fit {input.config} --map {input.map} --posterior {output.posterior} "
        "--shifts {output.parameters} --plot {output.plot} --diagnostics {output.diagnostics} > {log} 2>&1"
