"""The report's figures, each drawn from a summary table that this module computes from posterior.nc.

Each `*_table` function is the numbers; each `plot_*` function draws exactly those numbers, so tests
(and a modeller in Jupyter) can check a figure against the posterior it came from.

Blot bands are compared with the model on the model's own axis: a band's signal divided by its blot's
scale (`log_scale`, per blot x target, drawn per posterior draw), so replicate blots with different
exposures fall on one time course.
"""

from __future__ import annotations

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402

from pipeline.model import parameters  # noqa: E402
from pipeline import vocabulary as v  # noqa: E402

SAMPLE = ("chain", "draw")
AXES = {"lin": lambda x: x, "log": np.log, "log10": np.log10, "logit": lambda x: np.log(x) - np.log1p(-x)}
QUANTILES = (0.05, 0.5, 0.95)


# ---- posterior predictive time courses ---------------------------------------------------------------
def _band_scale_index(idata: az.InferenceData) -> np.ndarray:
    """[measurement] index into posterior.log_scale of each band's blot x target scale."""
    labels = list(idata.posterior["scale"].values)
    obs = idata.observed_data
    return np.array([labels.index(f"{b}|{t}") for b, t in zip(obs[v.BLOT_ID].values, obs[v.TARGET].values)])


def _rows(idata: az.InferenceData) -> pd.DataFrame:
    obs = idata.observed_data
    cond = idata.constant_data
    line = dict(zip(cond[v.DIM_CONDITION].values, cond[v.CELL_LINE].values))
    return pd.DataFrame({v.CELL_LINE: [line[c] for c in obs[v.CONDITION_ID].values],
                         v.CONDITION_ID: obs[v.CONDITION_ID].values, v.TARGET: obs[v.TARGET].values,
                         v.TIME_MIN: obs[v.TIME_MIN].values, v.BLOT_ID: obs[v.BLOT_ID].values})


def predictive_table(idata: az.InferenceData) -> pd.DataFrame:
    """Per cell line x condition x target x time: the posterior-predictive 5 %, 50 % and 95 % quantiles
    of a band on the model's axis (replicate signal / its blot's scale, all draws and replicate bands
    pooled)."""
    index = _band_scale_index(idata)
    scale = np.exp(idata.posterior["log_scale"].stack(sample=SAMPLE).transpose("sample", ...).values)
    rep = idata.posterior_predictive[v.Y].stack(sample=SAMPLE).transpose("sample", ...).values / scale[:, index]
    rows = _rows(idata)
    out = []
    keys = [v.CELL_LINE, v.CONDITION_ID, v.TARGET, v.TIME_MIN]
    for key, group in rows.groupby(keys, sort=True):
        lo, mid, hi = np.quantile(rep[:, group.index.to_numpy()].ravel(), QUANTILES)
        out.append(dict(zip(keys, key), low=lo, median=mid, high=hi))
    return pd.DataFrame(out)


def data_table(idata: az.InferenceData) -> pd.DataFrame:
    """Every band on the model's axis: signal / its blot's scale (posterior median of the scale)."""
    index = _band_scale_index(idata)
    log_scale = idata.posterior["log_scale"].median(SAMPLE).values
    rows = _rows(idata)
    rows["value"] = idata.observed_data[v.Y].values / np.exp(log_scale[index])
    return rows


def condition_labels(idata: az.InferenceData) -> dict[str, str]:
    """condition_id -> a short label of its treatment (stimulus, pretreatment, drug doses)."""
    cond = idata.constant_data
    out = {}
    for i, cid in enumerate(cond[v.DIM_CONDITION].values):
        drugs = [f"{d} {cond['dose_uM'].values[i, j]:g} µM" for j, d in enumerate(cond[v.DIM_DRUG].values)
                 if cond["dose_uM"].values[i, j] > 0]
        stim = f"{cond[v.STIMULUS].values[i]} {cond[v.STIMULUS_CONC].values[i]:g}"
        out[str(cid)] = f"{' + '.join(drugs) or 'no drug'}\n{stim}"
    return out


def plot_predictive(idata: az.InferenceData, cell_line: str, pred: pd.DataFrame | None = None,
                    data: pd.DataFrame | None = None):
    """One cell line: a panel per target (rows) x condition (columns); the posterior-predictive median
    and 90 % band over time, the blot bands (one marker colour per blot) on top."""
    pred = predictive_table(idata) if pred is None else pred
    data = data_table(idata) if data is None else data
    pred, data = pred[pred[v.CELL_LINE] == cell_line], data[data[v.CELL_LINE] == cell_line]
    conditions, targets = list(dict.fromkeys(pred[v.CONDITION_ID])), list(dict.fromkeys(pred[v.TARGET]))
    labels = condition_labels(idata)
    blots = sorted(data[v.BLOT_ID].unique())
    colours = {b: plt.cm.tab10(i % 10) for i, b in enumerate(blots)}
    fig, axes = plt.subplots(len(targets), len(conditions), figsize=(2.4 * len(conditions) + 1, 1.9 * len(targets)),
                             sharex=True, sharey="row", squeeze=False)
    for r, target in enumerate(targets):
        for c, cid in enumerate(conditions):
            ax = axes[r, c]
            p = pred[(pred[v.CONDITION_ID] == cid) & (pred[v.TARGET] == target)].sort_values(v.TIME_MIN)
            t = p[v.TIME_MIN].to_numpy() / 60.0
            ax.fill_between(t, p["low"], p["high"], color="0.8", lw=0, label="90 % predictive")
            ax.plot(t, p["median"], color="k", lw=1.2, label="median", gid=f"median|{cid}|{target}")
            d = data[(data[v.CONDITION_ID] == cid) & (data[v.TARGET] == target)]
            for blot, bands in d.groupby(v.BLOT_ID):
                ax.plot(bands[v.TIME_MIN] / 60.0, bands["value"], "o", ms=3, color=colours[blot], label=blot)
            if r == 0:
                ax.set_title(labels.get(cid, cid), fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{target}\n(model units)", fontsize=7)
            if r == len(targets) - 1:
                ax.set_xlabel("time (h)", fontsize=7)
            ax.tick_params(labelsize=6)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles[:2] + handles[2:3], names[:2] + ["bands (a colour per blot)"][:len(handles[2:3])],
               loc="upper right", fontsize=6, frameon=False)
    fig.suptitle(f"{cell_line}: posterior predictive (median, 90 %) and blot bands / blot scale", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    return fig


# ---- mechanism shifts --------------------------------------------------------------------------------
def plot_shifts(shifts: pd.DataFrame, threshold_log2: float):
    """Forest plot: per resistant line, the median and 90 % interval of each mechanism parameter's log2
    fold change (the rows of shifts.csv), with prob_shift = P(|log2 FC| > threshold) written beside it."""
    lines = sorted(shifts[v.CELL_LINE].unique())
    n = max(len(shifts[shifts[v.CELL_LINE] == line]) for line in lines)
    fig, axes = plt.subplots(1, len(lines), figsize=(5.2 * len(lines), 0.45 * n + 1.4), squeeze=False)
    for ax, line in zip(axes[0], lines):
        rows = shifts[shifts[v.CELL_LINE] == line].iloc[::-1]
        y = np.arange(len(rows))
        ax.hlines(y, rows["ci90_low"], rows["ci90_high"], color="tab:blue", lw=2)
        ax.plot(rows["median_log2_fc"], y, "o", color="tab:blue", gid=f"median|{line}")
        for yi, (_, r) in zip(y, rows.iterrows()):
            ax.annotate(f"P = {r['prob_shift']:.2f}", (1.01, yi), xycoords=("axes fraction", "data"), fontsize=7,
                        va="center")
        ax.set_yticks(y, [f"{m}\n({p})" for m, p in zip(rows["mechanism"], rows["parameter"])], fontsize=7)
        for x in (-threshold_log2, threshold_log2):
            ax.axvline(x, color="0.6", ls=":", lw=1)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_xlabel(f"log2 fold change vs reference (90 % interval); dotted: ±{threshold_log2:g}", fontsize=8)
        ax.set_title(line, fontsize=9)
    fig.tight_layout()
    return fig


# ---- what to do next (pipeline.decide) --------------------------------------------------------------------
TOP = 12  # treatments / experiments shown per resistant line


def plot_reversal(table: pd.DataFrame, n: int = TOP):
    """Per resistant line x read-out x time (reversal.csv): the n treatments most likely to reverse resistance,
    their resistant / parental ratio (median, 90 % interval, log scale) and prob_reversal beside it."""
    keys = list(table.groupby(["cell_line", "readout", "time_min"], sort=True).groups)
    cols = min(len(keys), 2)
    rows_n = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6.4 * cols, (0.3 * n + 1.3) * rows_n), squeeze=False)
    for ax, (line, readout, time) in zip(axes.flat, keys):
        rows = table[(table.cell_line == line) & (table.readout == readout) & (table.time_min == time)]
        rows = rows.sort_values(["prob_reversal", "median_ratio"], ascending=[False, True]).head(n).iloc[::-1]
        y = np.arange(len(rows))
        ax.hlines(y, rows["ci90_low"], rows["ci90_high"], color="tab:green", lw=2)
        ax.plot(rows["median_ratio"], y, "o", color="tab:green", gid=f"median|{line}|{readout}|{time:g}")
        for yi, p in zip(y, rows["prob_reversal"]):
            ax.annotate(f"P = {p:.2f}", (1.01, yi), xycoords=("axes fraction", "data"), fontsize=7, va="center")
        ax.set_yticks(y, rows["treatment"], fontsize=7)
        ax.set_xscale("log")
        ax.axvline(1.0, color="0.3", lw=0.8)
        ax.set_xlabel(f"{readout} at {time:g} min: {line} / {rows['reference'].iloc[0]}", fontsize=8)
        ax.set_title(f"{line}: {readout}, {time:g} min", fontsize=9)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_design(table: pd.DataFrame, n: int = TOP):
    """Per resistant line (design.csv): the n best next blots by expected information about the mechanism."""
    lines = sorted(table["cell_line"].unique())
    fig, axes = plt.subplots(1, len(lines), figsize=(6.4 * len(lines), 0.3 * n + 1.5), squeeze=False)
    for ax, line in zip(axes[0], lines):
        rows = table[table.cell_line == line].sort_values("rank").head(n).iloc[::-1]
        y = np.arange(len(rows))
        ax.barh(y, rows["expected_info_bits"], color="tab:purple", gid=f"bits|{line}")
        ax.set_yticks(y, [f"{t}: {g}" for t, g in zip(rows["treatment"], rows["target"])], fontsize=7)
        ax.set_xlabel(f"expected information about the mechanism (bits); parental and {line} at "
                      f"{rows['times_min'].iloc[0]} min", fontsize=8)
        ax.set_title(f"{line}: next blot", fontsize=9)
    fig.tight_layout()
    return fig


# ---- misfit per read-out --------------------------------------------------------------------------------
def plot_misfit(table: pd.DataFrame, threshold: float):
    """-log10 of each read-out's posterior-predictive p-value (`misfit.check`'s table), a column of points
    per cell line; the flag threshold dashed and its Bonferroni version (threshold / read-outs) dotted;
    flagged read-outs red and labelled (condition, target)."""
    lines = sorted(table[v.CELL_LINE].unique())
    fig, ax = plt.subplots(figsize=(1.6 * len(lines) + 3.5, 3.6))
    score = -np.log10(np.maximum(table["p_value"].to_numpy(float), 1e-300))
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(table))
    x = np.array([lines.index(line) for line in table[v.CELL_LINE]]) + jitter
    flagged = table["flagged"].to_numpy(bool)
    ax.plot(x[~flagged], score[~flagged], "o", ms=4, color="0.5", gid="readouts")
    ax.plot(x[flagged], score[flagged], "o", ms=5, color="tab:red", gid="flagged")
    for xi, yi, (_, r) in zip(x[flagged], score[flagged], table[flagged].iterrows()):
        ax.annotate(f"{r[v.CONDITION_ID]}\n{r[v.TARGET]}", (xi, yi), fontsize=6, xytext=(4, 0),
                    textcoords="offset points", va="center")
    ax.axhline(-np.log10(threshold), color="tab:red", ls="--", lw=1, label=f"p = {threshold:g} (flag)")
    ax.axhline(-np.log10(threshold / len(table)), color="0.3", ls=":", lw=1,
               label=f"p = {threshold:g} / {len(table)} (Bonferroni)")
    ax.set_xticks(range(len(lines)), lines, fontsize=8)
    ax.set_xlim(-0.5, len(lines) - 0.2)
    ax.set_ylim(0, 1.12 * max(float(score.max()), -np.log10(threshold / len(table))) + 0.3)
    ax.set_ylabel("-log10 posterior-predictive p", fontsize=8)
    ax.set_title("Misfit per read-out (condition x target): higher is worse", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# ---- parameters: one flat table of draws ---------------------------------------------------------------
def list_attr(group: xr.Dataset, name: str) -> list[str]:
    """A list-of-strings attribute (e.g. `estimated`); netCDF gives a one-element list back as a string."""
    return [str(x) for x in np.atleast_1d(group.attrs.get(name, []))]


def parameter_draws(group: xr.Dataset) -> pd.DataFrame:
    """Draws of every reported parameter as columns, on the axis the prior is symmetric on: log of the
    estimated parameters (logit of fractions; a PEtab problem's parameters on their own parameter scale,
    attrs `parameter_scale`), log2 fold changes, log of the noise sigma per target.
    Works on the `posterior` and the `prior` group alike."""
    cols = {}
    flat = group.stack(sample=SAMPLE)
    estimated = list_attr(group, "estimated") or [n for n in group.data_vars if group[n].dims == SAMPLE]
    petab_scale = dict(zip(estimated, list_attr(group, "parameter_scale")))
    for name in estimated:
        x = flat[name].values
        scale = petab_scale.get(name) or ("logit" if parameters.is_fraction(name) else "log")
        cols[name if scale == "lin" else f"{scale} {name}"] = AXES[scale](x)
    if "log2_fc" in group:
        fc = flat["log2_fc"]
        for line in fc["cell_line"].values:
            for p in fc["shift_parameter"].values:
                cols[f"log2_fc {line}:{p}"] = fc.sel(cell_line=line, shift_parameter=p).values
    if "sigma" in group:
        for t in flat[v.TARGET].values:
            cols[f"log sigma {t}"] = np.log(flat["sigma"].sel({v.TARGET: t}).values)
    return pd.DataFrame(cols)


def contraction_table(posterior: xr.Dataset, prior: xr.Dataset) -> pd.DataFrame:
    """Per parameter: prior and posterior sd and the contraction 1 - var(posterior) / var(prior)
    (1: the data determine it; 0: the data say nothing about it)."""
    prior = prior.assign_attrs({k: posterior.attrs[k] for k in ("estimated", "parameter_scale") if k in posterior.attrs})
    post, pri = parameter_draws(posterior), parameter_draws(prior)
    sd_post, sd_prior = post.std(ddof=1), pri[post.columns].std(ddof=1)
    return pd.DataFrame({"parameter": post.columns, "prior_sd": sd_prior.values, "posterior_sd": sd_post.values,
                         "contraction": 1.0 - (sd_post.values / sd_prior.values) ** 2})


def plot_contraction(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    ax.barh(y, table["contraction"], color="tab:green", gid="contraction")
    ax.set_yticks(y, table["parameter"], fontsize=7)
    ax.set_xlim(min(0.0, float(table["contraction"].min())) - 0.05, 1.05)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel("contraction = 1 - posterior variance / prior variance", fontsize=8)
    ax.set_title("What the data inform (1: determined by the data; 0: prior only)", fontsize=9)
    fig.tight_layout()
    return fig


def most_correlated(draws: pd.DataFrame, k: int = 4) -> tuple[list[str], pd.DataFrame]:
    """(the k parameters of the strongest posterior correlations, ranked, the correlation matrix):
    the pair with the largest |correlation| first, then the parameters most correlated with those."""
    corr = draws.corr()
    if len(corr) < 2:
        return list(corr.columns), corr
    a = np.abs(corr.to_numpy())
    np.fill_diagonal(a, -1.0)
    i, j = np.unravel_index(np.argmax(a), a.shape)
    chosen = [corr.columns[i], corr.columns[j]]
    while len(chosen) < min(k, len(corr)):
        rest = [c for c in corr.columns if c not in chosen]
        chosen.append(max(rest, key=lambda c: np.abs(corr.loc[c, chosen]).max()))
    return chosen, corr


def plot_pairs(draws: pd.DataFrame, names: list[str], corr: pd.DataFrame):
    n = len(names)
    fig, axes = plt.subplots(n, n, figsize=(1.9 * n + 0.6, 1.9 * n + 0.4), squeeze=False)
    for r, a in enumerate(names):
        for c, b in enumerate(names):
            ax = axes[r, c]
            if r == c:
                ax.hist(draws[a], bins=25, color="0.6")
            elif r > c:
                ax.plot(draws[b], draws[a], ".", ms=2, alpha=0.5, color="tab:blue")
            else:
                ax.axis("off")
                ax.text(0.5, 0.5, f"r = {corr.loc[a, b]:.2f}", ha="center", va="center", fontsize=9,
                        transform=ax.transAxes, gid=f"r|{a}|{b}")
            if c == 0:
                ax.set_ylabel(a, fontsize=6)
            if r == n - 1:
                ax.set_xlabel(b, fontsize=6)
            ax.tick_params(labelsize=5)
    fig.suptitle("The most correlated parameters (posterior draws)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_rank(idata: az.InferenceData):
    """Rank plots per chain (uniform when the chains mix) of the estimated parameters and the shifts."""
    names = list_attr(idata.posterior, "estimated") + [n for n in ("log2_fc", "sigma")
                                                                 if n in idata.posterior]
    axes = az.plot_rank(idata, var_names=names, kind="vlines", show=False)
    fig = np.ravel(axes)[0].figure
    fig.suptitle("Rank plots: each chain's ranks should look uniform", fontsize=9)
    fig.tight_layout()
    return fig
