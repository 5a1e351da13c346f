"""Misfit shown, not hidden: a posterior-predictive check per read-out, and whether a mechanism shift rests
mainly on read-outs that the model does not fit.

A read-out is one condition x target (the condition fixes the cell line); its bands span time points,
replicates and blots.

**The check.** For a posterior draw theta (parameters, noise sigma and the blot scales, drawn jointly;
see pipeline.fit), the model's log mean of band i is mu_i = log s_{blot,target} + log h_i(theta), and

    T(y, theta) = sum over the read-out's bands of ((log y_i - mu_i) / sigma_target)^2,

the realized discrepancy of Gelman, Meng and Stern (1996) (log-normal noise; Student-t: below). It is a
standardised residual on the log scale, so it is blind to the blot's exposure (the drawn blot scale is
inside mu) and to the signal's units, and it sees both a read-out that sits above or below the model and
one whose time course has the wrong shape. The per-band log-likelihood in posterior.nc gives it exactly (normal noise on log y:
log_lik_i = -z_i^2/2 - log sigma - log(2 pi)/2 - log y_i), without re-solving the ODEs. Given theta, the
replicated bands are independent N(mu_i, sigma^2) on the log scale, so T(y_rep, theta) ~ chi2(n) with n
the read-out's bands, and the posterior-predictive p-value

    p = P(T(y_rep, theta) >= T(y, theta) | y) = mean over draws of chi2_sf(T(y, theta_s), n)

is computed without Monte Carlo noise from replicates (Rao-Blackwellised), so that p-values far below
1 / (number of draws) are still resolved (with 200 draws a simulated replicate cannot tell 1e-3 from 1e-6).

What a p-value means here: p < `MISFIT_P` (0.01) says the read-out's bands lie further from the fitted
model than its noise allows, in the read-out as a whole. Posterior-predictive p-values are conservative
(the data are used twice: the fit has already moved towards them, most of all when the read-out's own
bands determine its blot scale), so under a correct model they pile up around 0.5 rather than being
uniform; a flag is therefore strong evidence of misfit, and no flag is not proof of fit. Multiplicity:
with R read-outs about 0.01 R are flagged by chance even when the model is right; the report says so,
and adds Benjamini-Hochberg q-values (a read-out with q < 0.05 is beyond what chance explains among all
R). The flag itself stays unadjusted, because its use is a sensitivity analysis (below): deleting a few
read-outs too many costs little, missing a bad one can hide a spurious shift.

**Does a shift rest on them?** Case deletion by Pareto-smoothed importance sampling (Vehtari et al.
2024): reweighting the joint draws by w_s ∝ 1 / p(y_F | theta_s), y_F the flagged read-outs' bands,
turns them into draws of the posterior without y_F. Each shift's prob_shift (P(|log2 FC| > threshold))
and median log2 FC are recomputed under the weights. A mechanism is warned about when a parameter of it
had prob_shift >= 0.5 with all the data and either drops below 0.5 without the flagged read-outs, or its
median moves more than half-way towards 0. The Pareto k of the weights says whether to believe the
reweighting: k > 0.7 (`PARETO_K_MAX`) means the flagged bands carry much of what is known (about a
blot scale or a shift), the estimate is unreliable, and only a refit without them answers the question.

Under `model.noise: student_t` each band's |z| is first mapped to the chi2(1) quantile of the same tail
probability under t(noise_df) (`squared_residuals`), so T is chi2(n) given theta again and the same test
applies: a band that the robust noise explains as an outlier is not flagged for being one.
PEtab problems are not checked (their noise models and observables are the problem's own).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln

from pipeline import vocabulary as v

MISFIT_P = 0.01
FDR_Q = 0.05
PARETO_K_MAX = 0.7
SAMPLE = ("chain", "draw")
READOUT = [v.CELL_LINE, v.CONDITION_ID, v.TARGET]
NOISES = ("lognormal", "student_t")  # `model.noise`


# ---- pure array functions ------------------------------------------------------------------------------
def squared_residuals(log_lik: np.ndarray, log_y: np.ndarray, sigma: np.ndarray, noise: str = "lognormal",
                      df: float = 4.0) -> np.ndarray:
    """Per draw and band, the squared standardised residual as a chi2(1) variate: z^2 = ((log y - mu) /
    sigma)^2 under log-normal noise, read off the band's log-likelihood (a density of y: log_lik =
    log N(log y; mu, sigma) - log y). Under Student-t(df) noise, |z| is read off the same way and mapped to
    the chi2(1) quantile of equal tail probability, Phi^-1(P_t(|eps| > |z|) / 2)^2, so that it is again
    chi2(1) given theta (a band 6 sigma off is common under t(2), rare under a normal).
    log_lik, sigma: [S, N]; log_y: [N]."""
    base = log_lik + log_y + np.log(sigma)  # log density of the standardised residual
    if noise == "lognormal":
        return np.maximum(-2.0 * (base + 0.5 * np.log(2.0 * np.pi)), 0.0)  # round-off can give -1e-13
    if noise != "student_t":
        raise ValueError(f"noise {noise!r}: not one of {NOISES}")
    const = gammaln((df + 1) / 2) - gammaln(df / 2) - 0.5 * np.log(df * np.pi)
    z2 = np.maximum(df * np.expm1(-2.0 * (base - const) / (df + 1)), 0.0)
    tail = 2.0 * stats.t.sf(np.sqrt(z2), df)
    return stats.norm.isf(np.maximum(tail, 1e-300) / 2.0) ** 2


def ppp_values(z2: np.ndarray, readout: np.ndarray, n_readouts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per read-out: (posterior-predictive p-value, posterior mean of T(y, theta), number of bands).
    z2: [S, N]; readout: [N] ints in [0, n_readouts)."""
    t = np.zeros((z2.shape[0], n_readouts))
    np.add.at(t.T, readout, z2.T)
    n = np.bincount(readout, minlength=n_readouts)
    p = stats.chi2.sf(t, np.maximum(n, 1)).mean(axis=0)
    return p, t.mean(axis=0), n


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (the smallest FDR at which each p would be rejected)."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.minimum(q, 1.0)
    return out


def deletion_weights(log_lik_deleted: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance weights that remove some bands from the posterior, and their Pareto k.
    log_lik_deleted: [chain, draw] the summed log-likelihood of the removed bands per draw.
    Returns (normalised weights [chain * draw], k)."""
    lw = -np.asarray(log_lik_deleted, float)
    ratio = np.exp(lw - lw.max())
    reff = float(np.clip(az.ess(ratio[None] if ratio.ndim == 1 else ratio, method="mean") / ratio.size, 0.01, 1.0)) \
        if ratio.std() > 0 else 1.0
    smoothed, k = az.psislw(lw.ravel(), reff=reff)
    w = np.exp(smoothed - smoothed.max())
    return w / w.sum(), float(k)


def weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x)
    cum = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cum, 0.5 * cum[-1])])


# ---- on posterior.nc -------------------------------------------------------------------------------------
def band_readouts(idata: az.InferenceData) -> tuple[pd.DataFrame, np.ndarray]:
    """(one row per read-out: cell_line, condition_id, target, in the order of the data; [N] the read-out
    index of each band)."""
    obs, cond = idata.observed_data, idata.constant_data
    line = dict(zip(cond[v.DIM_CONDITION].values, cond[v.CELL_LINE].values))
    bands = pd.DataFrame({v.CELL_LINE: [str(line[c]) for c in obs[v.CONDITION_ID].values],
                          v.CONDITION_ID: obs[v.CONDITION_ID].values.astype(str),
                          v.TARGET: obs[v.TARGET].values.astype(str)})
    index = bands.groupby(READOUT, sort=False).ngroup().to_numpy()
    table = bands.drop_duplicates(READOUT).reset_index(drop=True)
    return table, index


def _flat(da) -> np.ndarray:
    return da.stack(sample=SAMPLE).transpose("sample", ...).values


COLUMNS = READOUT + ["bands", "t_observed", "p_value", "q_value", "flagged", "pareto_k"]  # misfit.csv


def check(idata: az.InferenceData, threshold: float = MISFIT_P, noise: str = "lognormal",
          df: float = 4.0) -> pd.DataFrame | None:
    """The posterior-predictive check of every read-out (module docstring), the table misfit.csv holds:
    cell_line, condition_id, target, bands, t_observed (posterior mean of T), p_value, q_value (BH),
    flagged (p < threshold), pareto_k (of deleting this read-out alone: > 0.7, it is influential).
    Flagged read-outs first, by p. noise, df: the fit's `model.noise` and `model.noise_df`; None for a
    noise model this check does not know."""
    if noise not in NOISES:
        return None
    table, index = band_readouts(idata)
    log_y = np.log(idata.observed_data[v.Y].values)
    log_lik = _flat(idata.log_likelihood[v.Y])
    sigma = _flat(idata.posterior["sigma"].sel({v.TARGET: idata.observed_data[v.TARGET]}))
    p, t, n = ppp_values(squared_residuals(log_lik, log_y, sigma, noise, df), index, len(table))
    table["bands"], table["t_observed"], table["p_value"] = n, t, p
    table["q_value"] = bh_qvalues(p)
    table["flagged"] = p < threshold
    ll = idata.log_likelihood[v.Y].values  # [chain, draw, N]
    table["pareto_k"] = [deletion_weights(ll[..., index == r].sum(-1))[1] if f else np.nan
                         for r, f in enumerate(table["flagged"])]
    return table.sort_values(["flagged", "p_value"], ascending=[False, True], kind="stable")


def flagged_bands(idata: az.InferenceData, table: pd.DataFrame) -> np.ndarray:
    """[N] True for the bands of the read-outs that `table` (from `check`) flags."""
    readouts, index = band_readouts(idata)
    keys = set(map(tuple, table.loc[table["flagged"], READOUT].to_numpy()))
    return np.isin(index, [r for r, key in enumerate(map(tuple, readouts[READOUT].to_numpy())) if key in keys])


def shift_sensitivity(idata: az.InferenceData, table: pd.DataFrame, threshold_log2: float) -> tuple[pd.DataFrame, float]:
    """(per resistant line x shift parameter: mechanism, prob_shift and median log2 FC with all the data
    and without the flagged read-outs (PSIS case deletion), warn; the Pareto k of the weights).
    Needs at least one flagged read-out."""
    ll = idata.log_likelihood[v.Y].values
    w, k = deletion_weights(ll[..., flagged_bands(idata, table)].sum(-1))
    fc = idata.posterior["log2_fc"]
    draws = fc.stack(sample=SAMPLE).transpose("sample", ...).values  # [S, line, param]
    uniform = np.full(len(w), 1.0 / len(w))
    rows = []
    for i, line in enumerate(fc["cell_line"].values):
        for j, param in enumerate(fc["shift_parameter"].values):
            x = draws[:, i, j]
            big = np.abs(x) > threshold_log2
            m_all, m_del = weighted_median(x, uniform), weighted_median(x, w)
            p_all, p_del = float(big.mean()), float(np.sum(w * big))
            moved = np.sign(m_all) * m_del < 0.5 * abs(m_all)
            rows.append({v.CELL_LINE: str(line), "mechanism": str(fc["mechanism"].values[j]), "parameter": str(param),
                         "prob_shift": p_all, "prob_shift_without": p_del, "median_log2_fc": m_all,
                         "median_log2_fc_without": m_del, "warn": bool(p_all >= 0.5 and (p_del < 0.5 or moved))})
    return pd.DataFrame(rows), k


def warnings(sensitivity: pd.DataFrame, n_flagged: int) -> list[str]:
    """One plain sentence per warned mechanism (line x mechanism): what it means and what to do."""
    out = []
    for (line, mech), rows in sensitivity[sensitivity["warn"]].groupby([v.CELL_LINE, "mechanism"], sort=False):
        what = "; ".join(f"{r.parameter}: prob_shift {r.prob_shift:.2f} with all data, {r.prob_shift_without:.2f} "
                         f"without them, median log2 FC {r.median_log2_fc:+.2f} -> {r.median_log2_fc_without:+.2f}"
                         for r in rows.itertuples())
        out.append(f"{line}, {mech}: the shift rests mainly on the {n_flagged} flagged read-out(s) ({what}). "
                   "The evidence for this mechanism comes from bands the model does not fit: check those blots "
                   "(quantification, lane and condition annotation, saturation); refit with `model.noise: student_t` "
                   "(robust band noise, so a few bad bands weigh less) or with a model variant that can produce "
                   "those time courses (`variants`), and compare; or refit without those bands.")
    return out


def reliability(k: float) -> str:
    """A sentence on whether the reweighting without the flagged read-outs can be believed."""
    if k > PARETO_K_MAX:
        return (f"Pareto k = {k:.2f} > {PARETO_K_MAX}: the reweighting without the flagged read-outs is unreliable "
                "(they carry much of what is known about some parameter or blot scale), so the numbers above are "
                "indicative only; a refit without those bands is the reliable answer.")
    return f"Pareto k = {k:.2f} <= {PARETO_K_MAX}: the reweighting is reliable."
