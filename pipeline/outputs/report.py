"""The `report` stage: results/<analysis>/report.html, one self-contained page (figures embedded), and
the same figures as PNG files in results/<analysis>/figures/.

Read from the fit stage's outputs only: posterior.nc (posterior, prior, posterior_predictive,
observed_data, constant_data, sample_stats, log_likelihood), shifts.csv, diagnostics.json, compare.csv
when the config lists model variants, and reversal.csv and design.csv (pipeline.decide) when they exist. Besides the page it writes misfit.csv, the posterior-predictive
check of every read-out (pipeline.outputs.misfit), for a blot analysis. For an imported PEtab problem (`petab:` in
the config) the page has the same convergence, sampler and contraction sections, the parameter table
(parameters.csv) instead of the mechanism shifts, and the predictive per observable and simulation (no
misfit section: the check is written for the blot observation model). The page ends with the provenance of the
fit (posterior.nc's attributes) and of itself (pipeline.outputs.provenance).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipeline.inference import laplace
from pipeline.outputs import diagnose, figures, misfit, provenance
from pipeline import vocabulary as v
from pipeline.outputs.files import atomic_dir, atomic_path
from pipeline.problems import InputError, Problem

FIGURES = "figures"
COLOURS = {diagnose.OK: "#1a7f37", diagnose.CAUTION: "#9a6700", diagnose.BAD: "#cf222e"}


def inputs(results: Path, petab: bool = False) -> dict[str, Path]:
    paths = {"posterior": results / "posterior.nc", "table": results / ("parameters.csv" if petab else "shifts.csv"),
             "diagnostics": results / "diagnostics.json"}
    missing = [Problem(str(p), "does not exist", fix="run the fit first (snakemake ... or make demo)")
               for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(missing)
    return paths


def write(config: dict, results: str | Path) -> Path:
    """Write report.html and figures/*.png into `results` (each atomically); return the report's path."""
    results = Path(results)
    petab = "petab" in config
    paths = inputs(results, petab)
    idata = az.from_netcdf(paths["posterior"])
    table = pd.read_csv(paths["table"])
    diag = json.loads(paths["diagnostics"].read_text(encoding="utf-8"))
    comparison = results / "compare.csv"
    comparison = pd.read_csv(comparison) if comparison.is_file() else None
    facts = summaries(idata)
    if not petab:
        facts["misfit"] = misfit_summary(config, idata)
        for name in ("reversal", "design"):
            path = results / f"{name}.csv"
            facts[name] = pd.read_csv(path) if path.is_file() else None
    figs = build_figures(idata, None if petab else table, config["summary"]["threshold_log2"], facts)
    pngs = {}
    with atomic_dir(results / FIGURES) as folder:
        for name, fig in figs.items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            plt.close(fig)
            pngs[name] = buf.getvalue()
            (folder / f"{name}.png").write_bytes(pngs[name])
    if not petab:  # a declared output of the workflow: without a check (its reason on the page), no rows
        found = facts["misfit"]
        rows = found["table"] if found["table"] is not None else pd.DataFrame(columns=misfit.COLUMNS)
        with atomic_path(results / "misfit.csv") as tmp:
            rows.to_csv(tmp, index=False)
    page = render(config, idata, table, diag, pngs, comparison, facts)
    with atomic_path(results / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return results / "report.html"


def summaries(idata: az.InferenceData) -> dict:
    """The parameter summaries that both a figure and the page's text use, computed once: the draws
    table, the most correlated parameters and their correlations, the contraction table (None without
    a prior group)."""
    draws = figures.parameter_draws(idata.posterior)
    names, corr = figures.most_correlated(draws)
    contraction = (figures.contraction_table(idata.posterior, idata.prior) if "prior" in idata.groups()
                   else None)
    return {"draws": draws, "names": names, "corr": corr, "contraction": contraction}


def misfit_summary(config: dict, idata: az.InferenceData) -> dict:
    """The misfit check of a blot analysis (pipeline.outputs.misfit): the per-read-out table (None when it cannot be
    computed, with the reason), and, when read-outs are flagged, the shifts without them, the Pareto k of
    that reweighting and the warning sentences."""
    model = config.get("model", {})
    noise, df = str(model.get("noise", "lognormal")), float(model.get("noise_df", 4.0))
    out = {"table": None, "sensitivity": None, "k": None, "warnings": [], "threshold": misfit.MISFIT_P,
           "reason": ""}
    if "log_likelihood" not in idata.groups():
        out["reason"] = "posterior.nc has no per-band log-likelihood (refit with this version)"
        return out
    table = misfit.check(idata, misfit.MISFIT_P, noise, df)
    if table is None:
        out["reason"] = f"the check knows the noise models {', '.join(misfit.NOISES)}, not model.noise = {noise}"
        return out
    out["table"] = table
    n_flagged = int(table["flagged"].sum())
    if n_flagged and "log2_fc" in idata.posterior and idata.posterior["log2_fc"].size:
        sens, k = misfit.shift_sensitivity(idata, table, config["summary"]["threshold_log2"])
        out.update(sensitivity=sens, k=k, warnings=misfit.warnings(sens, n_flagged))
    return out


def build_figures(idata: az.InferenceData, shifts: pd.DataFrame | None, threshold_log2: float, facts: dict) -> dict:
    """name -> matplotlib figure, in the order of the report; facts: `summaries(idata)`; shifts: None for a
    PEtab problem."""
    if shifts is None:
        from pipeline.petab import fit as petabfit

        out = {"predictive": petabfit.plot_predictive(idata)}
    else:
        pred, data = figures.predictive_table(idata), figures.data_table(idata)
        out = {"shifts": figures.plot_shifts(shifts, threshold_log2)}
        for line in sorted(pred[v.CELL_LINE].unique(), key=_line_order(idata)):
            out[f"predictive_{line}"] = figures.plot_predictive(idata, line, pred, data)
        found = facts.get("misfit") or {}
        if found.get("table") is not None:
            out["misfit"] = figures.plot_misfit(found["table"], found["threshold"])
        if facts.get("reversal") is not None and len(facts["reversal"]):
            out["reversal"] = figures.plot_reversal(facts["reversal"])
        if facts.get("design") is not None and len(facts["design"]):
            out["design"] = figures.plot_design(facts["design"])
    out["rank"] = figures.plot_rank(idata)
    if len(facts["names"]) > 1:
        out["pairs"] = figures.plot_pairs(facts["draws"], facts["names"], facts["corr"])
    if facts["contraction"] is not None:
        out["contraction"] = figures.plot_contraction(facts["contraction"])
    return out


def _line_order(idata):
    ref = idata.posterior.attrs.get("reference_line")
    return lambda line: (line != ref, line)


# ---- HTML --------------------------------------------------------------------------------------------
def _img(pngs: dict, name: str, alt: str) -> str:
    data = base64.b64encode(pngs[name]).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>' \
           f'{html.escape(alt)} ({FIGURES}/{name}.png)</figcaption></figure>'


def _table(df: pd.DataFrame, floatfmt: str = "{:.3g}") -> str:
    return df.to_html(index=False, border=0, classes="t", float_format=lambda x: floatfmt.format(x), escape=True)


def dataset_summary(idata: az.InferenceData) -> pd.DataFrame:
    """Per cell line: conditions, bands, blots, targets, time points and drug doses of the dataset."""
    obs, cond = idata.observed_data, idata.constant_data
    line_of = dict(zip(cond[v.DIM_CONDITION].values, cond[v.CELL_LINE].values))
    band_line = np.array([line_of[c] for c in obs[v.CONDITION_ID].values])
    rows = []
    for line in dict.fromkeys(cond[v.CELL_LINE].values):
        here = band_line == line
        in_line = cond[v.CELL_LINE].values == line
        doses = cond["dose_uM"].values[in_line]
        drugs = ", ".join(f"{d} ({', '.join(f'{x:g}' for x in sorted(set(doses[:, j])) if x > 0)} µM)"
                          for j, d in enumerate(cond[v.DIM_DRUG].values) if doses[:, j].max() > 0)
        rows.append({"cell line": line, "conditions": int(in_line.sum()), "bands": int(here.sum()),
                     "blots": len(set(obs[v.BLOT_ID].values[here])),
                     "targets": ", ".join(dict.fromkeys(obs[v.TARGET].values[here])),
                     "time points (min)": ", ".join(f"{t:g}" for t in sorted(set(obs[v.TIME_MIN].values[here]))),
                     "drugs": drugs or "none"})
    return pd.DataFrame(rows)


def render(config: dict, idata, table: pd.DataFrame, diag: dict, pngs: dict, comparison, facts: dict) -> str:
    """The page; table: shifts.csv of a blot analysis, parameters.csv of a PEtab problem."""
    petab = "petab" in config
    h = html.escape
    parts = _petab_head(config, idata, table, pngs) if petab else _blots_head(config, idata)
    parts += _trust(config, idata, diag)
    if not petab:
        parts += _shifts_and_predictive(config, table, pngs)
        if facts.get("misfit") is not None:
            parts += misfit_html(facts["misfit"], pngs)
        parts += next_steps_html(facts.get("reversal"), facts.get("design"), pngs)
    parts += _sampler(pngs, facts)
    if "contraction" in pngs:
        informed = facts["contraction"]
        weak = informed[informed["contraction"] < 0.5]["parameter"].tolist()
        parts += ["<h2>What the data inform</h2>",
                  _img(pngs, "contraction", "Prior-to-posterior contraction per parameter"),
                  f"<p>Barely informed by the data (contraction &lt; 0.5): {h(', '.join(weak) or 'none')}.</p>"]
        if not petab:
            parts += [_held(config, idata, weak)]
        parts += [_table(informed)]
    parts += sloppy_html(diag.get("sloppy_directions") or [])
    if comparison is not None:
        parts += ["<h2>Model comparison (PSIS-LOO)</h2>", comparison_html(comparison)]
    parts += provenance_html(provenance.of(idata.posterior.attrs), provenance.info(config, "report"))
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
             ".t td,.t th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}"
             "img{max-width:100%}.verdict{border-left:6px solid;padding:0.5em 1em;background:#f6f8fa}"
             "figcaption{font-size:0.8em;color:#555}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{h(config['analysis'])} report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def _held(config: dict, idata, weak: list[str]) -> str:
    """Which parameters the config holds at fixed values, and which barely informed ones it could hold: an
    estimated parameter that no mechanism shifts (a shifted one is estimated in every line: symmetric lines)."""
    h = html.escape
    fixed = config["model"]["fixed"]
    held = ", ".join(f"{k} = {x:g}" for k, x in fixed.items()) or "none"
    shifted = set(idata.posterior["shift_parameter"].values.tolist()) if "shift_parameter" in idata.posterior.coords \
        else set()
    names = [w.split(" ", 1)[-1] for w in weak]
    estimated = set(figures.list_attr(idata.posterior, "estimated"))
    could = [n for n in names if n in estimated and n not in shifted]
    text = f"<p>Held at fixed values (<code>model.fixed</code>): {h(held)}."
    if could:
        text += (f" Of the barely informed, {h(', '.join(could))} could be held too (no mechanism shifts them): "
                 "list them under <code>model.fixed</code> with a value, and the sampler has that many fewer "
                 "dimensions; their uncertainty then no longer reaches the shifts.")
    return text + "</p>"


def _blots_head(config: dict, idata) -> list[str]:
    attrs = idata.constant_data.attrs
    h = html.escape
    return [f"<h1>{h(config['analysis'])}: which mechanisms changed in the resistant lines</h1>",
            f"<p>{h(config.get('description', ''))}</p>",
            "<h2>Dataset</h2>",
            f"<p>{h(str(attrs.get('name', '')))}: {h(str(attrs.get('description', '')))} "
            f"(source {h(str(attrs.get('source', '')))}); reference line <b>{h(str(attrs.get('reference_line')))}"
            f"</b>; {idata.observed_data.sizes[v.DIM_MEASUREMENT]} bands.</p>",
            _table(dataset_summary(idata))]


def _petab_head(config: dict, idata, parameters: pd.DataFrame, pngs: dict) -> list[str]:
    h = html.escape
    return [f"<h1>{h(config['analysis'])}: PEtab problem {h(str(idata.posterior.attrs.get('petab_problem', '')))}"
            "</h1>", f"<p>{h(config.get('description', ''))}</p>",
            "<h2>Dataset</h2>", f"<p>{h(str(config['petab']))}: "
            f"{idata.observed_data.sizes['measurement']} measurements.</p>", _table(petab_dataset_summary(idata)),
            "<h2>Parameters</h2>",
            "<p>Posterior median and 90 % interval of each estimated parameter (linear scale).</p>",
            _table(parameters),
            "<h2>Posterior predictive against the data</h2>",
            _img(pngs, "predictive", "Posterior predictive per observable and simulation")]


def _trust(config: dict, idata, diag: dict) -> list[str]:
    found = diagnose.checks(idata, diag, config["sampler"]["max_tree_depth"],
                            config["summary"]["threshold_log2"])
    status, sentence = diagnose.verdict(found)
    h = html.escape
    return ["<h2>Can the fit be trusted?</h2>",
            f'<p class="verdict" style="border-color:{COLOURS[status]}"><b style="color:{COLOURS[status]}">'
            f"{status.upper()}</b>: {h(sentence)}</p>",
            "<table class='t'><tr><th>check</th><th>value</th><th>status</th><th>what it means</th></tr>"
            + "".join(f"<tr><td>{h(c.name)}</td><td>{h(c.value)}</td><td style='color:{COLOURS[c.status]}'>"
                      f"<b>{c.status}</b></td><td>{h(c.message)}</td></tr>" for c in found) + "</table>",
            f"<p>{diag.get('sampler', 'nuts').upper()}: {diag['chains']} chains x {diag['draws']} draws; "
            f"{diag['gradient_evaluations']} gradient "
            f"evaluations ({diag['mean_steps_per_iteration']:.1f} leapfrog steps per iteration); sampling took "
            f"{diag['wall_s']:.0f} s; bulk ESS per second {diag['ess_bulk_per_s']:.3g}.</p>"]


def _shifts_and_predictive(config: dict, shifts: pd.DataFrame, pngs: dict) -> list[str]:
    threshold = config["summary"]["threshold_log2"]
    parts = ["<h2>Mechanism shifts per resistant line</h2>",
             f"<p>prob_shift = posterior probability that the parameter changed more than "
             f"{2 ** threshold:g}-fold (|log2 FC| &gt; {threshold:g}).</p>",
             _img(pngs, "shifts", "Log2 fold change of each mechanism parameter, median and 90 % interval"),
             _table(shifts),
             "<h2>Posterior predictive against the blots</h2>",
             "<p>Each band is divided by its blot's scale (per blot and target), so replicate blots share the "
             "model's axis. Grey: 90 % posterior-predictive band; black: its median.</p>"]
    return parts + [_img(pngs, n, f"Posterior predictive, {n.removeprefix('predictive_')}") for n in pngs
                    if n.startswith("predictive_")]


def misfit_html(found: dict, pngs: dict) -> list[str]:
    """The Misfit section: flagged read-outs, what chance explains, and whether a shift rests on them."""
    h = html.escape
    parts = ["<h2>Misfit: read-outs the model does not fit</h2>"]
    table = found["table"]
    if table is None:
        return parts + [f"<p>Not checked: {h(found['reason'])}.</p>"]
    threshold, n = found["threshold"], len(table)
    flagged = table[table["flagged"]]
    beyond = int((table["q_value"] < misfit.FDR_Q).sum())
    parts += [f"<p>A read-out is one condition x target with all its bands (time points, replicates, blots). For "
              "each, the posterior-predictive p-value asks how often replicate data from the fitted model lie further "
              "from the model than the measured bands do, in standardised log residuals (so the blot's exposure "
              f"does not matter). A read-out is <b>flagged</b> when p &lt; {threshold:g}: its bands are further from "
              "the fit than the noise allows. These p-values are conservative (the fit has already moved toward "
              "the data), so a flag is strong evidence; no flag is not proof of fit.</p>",
              f"<p><b>{len(flagged)} of {n} read-outs flagged.</b> With {n} read-outs about {threshold * n:.1f} "
              f"would be flagged by chance alone if the model were right. Beyond what chance explains among all {n} "
              f"(Benjamini-Hochberg q-value &lt; {misfit.FDR_Q:g}): {beyond}; Bonferroni would ask for p &lt; "
              f"{threshold / n:.2g}. Every read-out is in misfit.csv.</p>"]
    if "misfit" in pngs:
        parts.append(_img(pngs, "misfit", "Posterior-predictive p-value per read-out (-log10)"))
    if flagged.empty:
        return parts + ["<p>No read-out is flagged: no shift rests on badly fitted data.</p>"]
    shown = flagged[[v.CELL_LINE, v.CONDITION_ID, v.TARGET, "bands", "p_value", "q_value", "pareto_k"]]
    parts += [_table(shown),
              "<p>pareto_k: of removing that read-out alone from the posterior; above "
              f"{misfit.PARETO_K_MAX} it is influential (it pulls the fit). Look at these read-outs in the "
              "posterior-predictive figures above.</p>",
              "<h3>Do the shifts rest on the flagged read-outs?</h3>",
              "<p>The posterior without the flagged read-outs, by Pareto-smoothed importance reweighting of the "
              f"draws (Pareto k = {found['k']:.2f}; reliable when k &le; {misfit.PARETO_K_MAX}). A mechanism is "
              "warned about when a parameter with prob_shift &ge; 0.5 drops below 0.5 without them, or its median "
              "log2 fold change moves more than half-way to 0.</p>"]
    if found["warnings"]:
        parts.append("<ul>" + "".join(f"<li><b>Warning</b>: {h(w)}</li>" for w in found["warnings"]) + "</ul>")
    else:
        parts.append("<p>No mechanism's shift rests mainly on the flagged read-outs.</p>")
    parts.append(f"<p>{h(misfit.reliability(found['k']))}</p>")
    sens = found["sensitivity"]
    if (sens["prob_shift"] >= 0.5).any():
        parts += ["<p>The shifts with prob_shift &ge; 0.5, with all the data and without the flagged read-outs:</p>",
                  _table(sens[sens["prob_shift"] >= 0.5])]
    return parts


def next_steps_html(reversal: pd.DataFrame | None, design: pd.DataFrame | None, pngs: dict) -> list[str]:
    """What to do next: the treatments most likely to reverse resistance, and the next blot (pipeline.decide)."""
    from pipeline.decide import design as design_mod, predict

    h = html.escape
    parts = []
    if reversal is not None:
        parts += ["<h2>Which treatment reverses resistance?</h2>",
                  "<p>For every posterior draw, each candidate treatment (drugs of pipeline/data/drugs.csv alone over "
                  "their dose grid, pairs at middle doses, and the config's own) is simulated in each line. ratio = "
                  "the resistant line's read-out under the treatment / the parental line's under the drug it "
                  "resists (the <i>reference</i> column); prob_reversal = P(ratio &le; 1), the posterior "
                  "probability that the treatment brings the resistant line down to where that drug takes the "
                  "parental cells. These are predictions of the fitted model for conditions the data do not hold: "
                  "test them before acting on them. Every row is in reversal.csv, every draw in predictions.nc.</p>"]
        if len(reversal):
            parts += ["<ul>" + "".join(f"<li>{h(s)}</li>" for s in predict.summary(reversal)) + "</ul>",
                      _img(pngs, "reversal", "Resistant / parental ratio of the most likely reversing treatments"),
                      _table(reversal.sort_values(["cell_line", "prob_reversal", "median_ratio"],
                                                  ascending=[True, False, True]).groupby("cell_line").head(10))]
        else:
            parts.append("<p>No resistant line is named in <code>predict.resists</code> (which drug each line "
                         "resists), so there is no reference level to reverse to.</p>")
    if design is not None and len(design):
        parts += ["<h2>Which blot to run next?</h2>",
                  "<p>Each candidate blot holds the parental and a resistant line side by side under one treatment, "
                  "one target, at the listed times and replicates, with an unknown blot scale. Its expected "
                  "information (bits) is the mutual information between its bands and which mechanisms changed in "
                  "that line (nested Monte Carlo over the posterior draws, with the fitted noise): 0 when it "
                  "would tell nothing, at most the entropy of the question. tells_apart: the two likeliest "
                  "answers it separates best, with its expected log10 Bayes factor. Every row is in design.csv.</p>",
                  "<ul>" + "".join(f"<li>{h(s)}</li>" for s in design_mod.summary(design)) + "</ul>",
                  _img(pngs, "design", "Expected information of the best next blots"),
                  _table(design.groupby("cell_line").head(10))]
    return parts


def sloppy_html(directions: list[dict]) -> list[str]:
    """The sloppiest eigen-directions of the MAP Hessian (`pipeline.inference.laplace`, diagnostics.json's
    `sloppy_directions`): what combination of parameters the data leave to the prior."""
    if not directions:
        return []
    rows = pd.DataFrame({"eigenvalue": [d["eigenvalue"] for d in directions],
                         "contraction": [d["contraction"] for d in directions],
                         "direction (largest loadings, prior-whitened coordinates)":
                             [laplace.describe(d) for d in directions]})
    return ["<h3>Sloppy directions at the MAP</h3>",
            "<p>The eigen-directions of the Hessian of -log p at the best MAP fit with the smallest eigenvalues, in "
            "coordinates whitened by the prior: an eigenvalue near 1 (contraction near 0) is a combination of "
            "parameters the data leave to the prior. Two parameters of one direction with loadings of opposite "
            "sign trade off (the data fix their ratio); holding one of them (<code>model.fixed</code>) removes "
            "the direction.</p>", _table(rows)]


def _sampler(pngs: dict, facts: dict) -> list[str]:
    names, corr = facts["names"], facts["corr"]
    h = html.escape
    if "pairs" not in pngs:  # one parameter
        return ["<h2>Sampler</h2>", _img(pngs, "rank", "Rank plots per chain")]
    return ["<h2>Sampler</h2>",
            _img(pngs, "rank", "Rank plots per chain"),
            f"<p>Strongest posterior correlation: <b>{h(names[0])}</b> and <b>{h(names[1])}</b>, "
            f"r = {corr.loc[names[0], names[1]]:.2f}. Strong correlations (|r| &gt; 0.9) are sloppy directions: "
            "the data fix a combination, not each parameter.</p>",
            _img(pngs, "pairs", "Pair plot of the most correlated parameters")]


def provenance_html(fit: dict, page: dict) -> list[str]:
    """The footer: what made the fit (posterior.nc's record, empty for a fit written before it was kept) and this
    page (pipeline.outputs.provenance), side by side, with each one's config."""
    h = html.escape
    rows = "".join(f"<tr><td>{h(key)}</td><td>{h(str(fit.get(key, 'not recorded')))}</td>"
                   f"<td>{h(str(page.get(key, '')))}</td></tr>" for key in provenance.KEYS if key != "config")
    parts = ["<h2>Provenance</h2>", "<table class='t'><tr><th></th><th>the fit (posterior.nc)</th><th>this report</th>"
             f"</tr>{rows}</table>"]
    for who, record in (("the fit", fit), ("this report", page)):
        if "config" in record:
            parts.append(f"<details><summary>Config of {who}</summary><pre>{h(record['config'])}</pre></details>")
    return parts


def petab_dataset_summary(idata: az.InferenceData) -> pd.DataFrame:
    """Per observable of a PEtab problem: measurements, simulations (pre-equilibration -> condition) and times."""
    obs = idata.observed_data
    rows = []
    for o in dict.fromkeys(obs["observableId"].values):
        here = obs["observableId"].values == o
        times = obs["time"].values[here]
        rows.append({"observable": o, "measurements": int(here.sum()),
                     "simulations": len(set(obs["simulation"].values[here])),
                     "time points": len(set(times)), "time range": f"{times.min():g} to {times.max():g}"})
    return pd.DataFrame(rows)


def comparison_html(comparison: pd.DataFrame) -> str:
    """The compare stage's table, best first, with its Pareto-k warnings in words."""
    notes = []
    for _, r in comparison.iterrows():
        if r["pareto_k_bad"] > 0:
            notes.append(f"{r['variant']}: {int(r['pareto_k_bad'])} band(s) with Pareto k &gt; "
                         f"{r['pareto_k_threshold']:.2f}: PSIS-LOO is unreliable for them (influential or "
                         "badly fitted bands); check them in the predictive plots, or refit without them (exact LOO).")
    best = comparison.iloc[0]
    head = (f"<p>Best supported: <b>{html.escape(str(best['variant']))}</b>. A difference in elpd_loo smaller than "
            "about 2 of its standard errors (d_se) does not distinguish two variants.</p>")
    warn = ("<p><b>Pareto-k warnings</b>:<br>" + "<br>".join(notes) + "</p>") if notes else \
        "<p>No Pareto-k warnings: PSIS-LOO is reliable for every band.</p>"
    return head + _table(comparison) + warn
