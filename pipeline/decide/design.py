"""The `design` stage: which blot to run next, ranked by what it would tell about the mechanism.

A candidate experiment is one new blot: a treatment (from `treatments.candidates`), one target, the parental
(reference) line and one resistant line side by side at the given times, each lane in `replicates`. Its bands
are y = s h(theta) exp(eps), eps ~ N(0, sigma_target^2), with s the new blot's unknown scale.

What it should tell apart: for each posterior draw, the set of mechanisms that shifted in the resistant line
(every mechanism with a parameter beyond |log2 FC| > `summary.threshold_log2`; "none" when there is none). The
draws' label M is the question, and the experiment's value is the mutual information I(y; M) in bits, by
nested Monte Carlo over the posterior draws theta_1..theta_N (Ryan 2003; the inner sum reuses the draws):

    I ~ 1/N sum_i [ log p(y_i | M = m_i) - log p(y_i) ],  y_i ~ p(y | theta_i),
    p(y | M = m) ~ mean over draws j with label m of p(y | theta_j),   p(y) ~ mean over all j,

with p(y | theta_j) the blot likelihood with the scale integrated out (`observation.marginal_log_likelihood`,
one scale group). Each term is at most -log P(M = m_i), so 0 <= I <= H(M): an experiment cannot carry more
than the question holds, and a posterior already sure of the mechanism gives every experiment ~0 bits.
Besides I: the expected posterior probability of the true label after the experiment (`p_true_after`, from
`p_true_now` = sum_m P(m)^2), and the pair of labels (each with P >= 5 %) that it separates best, by its
expected log10 Bayes factor in favour of the true one. Experiments are ranked by I (to 0.01 bit), then by that
Bayes factor (`ordered`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr
from jax.scipy.special import logsumexp

from pipeline import fit, vocabulary as v
from pipeline.decide import predict, treatments as tr
from pipeline.inference import engine
from pipeline.model import solver

DESIGN_COLUMNS = ["cell_line", "rank", "treatment", "target", "times_min", "replicates", "expected_info_bits",
                  "p_true_now", "p_true_after", "tells_apart", "log10_bayes_factor"]
MIN_LABEL_P = 0.05  # labels below this posterior probability are not named in `tells_apart`
NONE = "none"


def labels(log2_fc: np.ndarray, mechanisms, threshold: float) -> list[str]:
    """Per draw, the mechanisms with a parameter beyond the threshold, joined by '+' ('none' if none).

    log2_fc: [draws, shift parameters] of one line; mechanisms: the mechanism of each shift parameter."""
    out = []
    for row in np.abs(np.asarray(log2_fc)) > threshold:
        called = list(dict.fromkeys(m for m, hit in zip(mechanisms, row) if hit))
        out.append("+".join(called) or NONE)
    return out


def _scores(log_h, sigma, label, n_labels: int, key):
    """(bits, p_true_after, mean log BF matrix [n_labels, n_labels]) of one experiment.

    log_h: [N, B] the model's log values of its bands per draw; sigma: [N]; label: [N] ints in [0, n_labels)."""
    n, b = log_h.shape
    log_y = log_h + sigma[:, None] * jax.random.normal(key, log_h.shape)  # the scale cancels: none drawn
    r = log_y[:, None, :] - log_h[None, :, :]  # [i, j, band]
    dev = r - jnp.mean(r, axis=-1, keepdims=True)
    s2 = sigma[None, :] ** 2
    ll = -0.5 * jnp.sum(dev**2, axis=-1) / s2 - 0.5 * (b - 1) * jnp.log(2 * jnp.pi * s2) - 0.5 * math.log(b)
    onehot = jax.nn.one_hot(label, n_labels)  # [j, m]
    counts = jnp.sum(onehot, axis=0)
    log_cond = logsumexp(ll[:, :, None], axis=1, b=onehot[None]) - jnp.log(jnp.maximum(counts, 1.0))  # [i, m]
    log_cond = jnp.where(counts > 0, log_cond, -jnp.inf)
    log_marg = logsumexp(ll, axis=1) - math.log(n)
    own = jnp.take_along_axis(log_cond, label[:, None], axis=1)[:, 0]
    bits = jnp.mean(own - log_marg) / math.log(2.0)
    p_after = jnp.mean(jnp.exp(own + jnp.log(counts[label] / n) - log_marg))
    # expected log Bayes factor of the true label a over another b, over the draws of a: [a, b]
    bf = (own[:, None] - log_cond)  # [i, m]
    bf_mean = (onehot.T @ jnp.where(jnp.isfinite(bf), bf, 0.0)) / jnp.maximum(counts[:, None], 1.0)
    return bits, p_after, bf_mean


def rank(log_h: np.ndarray, sigma: np.ndarray, draw_labels: list[str], key) -> pd.DataFrame:
    """Score experiments: log_h [experiments, N draws, B bands], sigma [N] (noise of each experiment's target,
    per draw: pass [E, N] to vary it by experiment), labels per draw. One row per experiment, in input order."""
    names = list(dict.fromkeys(draw_labels))
    label = jnp.asarray([names.index(x) for x in draw_labels])
    p = np.bincount(np.asarray(label), minlength=len(names)) / len(draw_labels)
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), log_h.shape[:2])
    keys = jax.random.split(key, len(log_h))
    score = jax.jit(lambda a: jax.lax.map(lambda e: _scores(e[0], e[1], label, len(names), e[2]), a))
    bits, p_after, bf = (np.asarray(x) for x in score((jnp.asarray(log_h), jnp.asarray(sig), keys)))  # one at a time
    major = [i for i in np.argsort(-p) if p[i] >= MIN_LABEL_P]
    rows = []
    for e in range(len(log_h)):
        pair, lbf = "", math.nan
        if len(major) >= 2:  # the best-separated pair of likely labels: the smaller of the two directions
            best = max(((a, b) for i, a in enumerate(major) for b in major[i + 1:]),
                       key=lambda ab: min(bf[e, ab[0], ab[1]], bf[e, ab[1], ab[0]]))
            pair = f"{names[best[0]]} vs {names[best[1]]}"
            lbf = float(min(bf[e, best[0], best[1]], bf[e, best[1], best[0]]) / math.log(10.0))
        elif major:
            pair = f"nothing: {names[major[0]]} already holds {p[major[0]]:.0%} of the posterior"
        rows.append({"expected_info_bits": float(bits[e]), "p_true_now": float(np.sum(p**2)),
                     "p_true_after": float(p_after[e]), "tells_apart": pair, "log10_bayes_factor": lbf})
    return pd.DataFrame(rows)


def ordered(scores: pd.DataFrame) -> pd.DataFrame:
    """Experiments best first, with their `rank`: by expected information (to 0.01 bit), then by the expected
    log10 Bayes factor. Many experiments can each settle a two-way question (I = H(M)); the Bayes factor then
    says which settles it with the most evidence to spare (against noise, or a model that is off)."""
    key = scores.assign(_bits=scores["expected_info_bits"].round(2), _bf=scores["log10_bayes_factor"].fillna(0.0))
    out = key.sort_values(["_bits", "_bf"], ascending=False, kind="stable").drop(columns=["_bits", "_bf"])
    return out.assign(rank=np.arange(1, len(out) + 1)).reset_index(drop=True)


def experiment_log_h(obs: np.ndarray, line: int, reference: int, replicates: int) -> np.ndarray:
    """[treatments, targets, draws, bands]: log model values of each experiment's bands (reference line then
    the resistant line, each time point, each replicate) from obs [draws, lines, treatments, times, targets]."""
    two = obs[:, [reference, line]]  # [D, 2, C, T, G]
    x = np.log(np.maximum(two, 1e-12)).transpose(2, 4, 0, 1, 3)  # [C, G, D, 2, T]
    x = x.reshape(x.shape[:3] + (-1,))
    return np.repeat(x, replicates, axis=-1)


def run(config: dict, ds: xr.Dataset, posterior: xr.Dataset, log=print) -> pd.DataFrame:
    """design.csv: per resistant line, the `design.top` experiments by expected information."""
    cfg, pcfg = config["design"], config["predict"]
    m = fit.model(config, ds)
    lines = list(m.lines)
    values = predict.draw_values(m, posterior, cfg["draws"])
    flat = posterior.stack(sample=("chain", "draw"))
    idx = predict.thin(flat.sizes["sample"], cfg["draws"])
    candidates = tr.candidates(pcfg)
    targets = list(cfg["targets"] or [t for t in v.TARGETS if t in set(ds[v.TARGET].values)])
    times = np.sort(np.asarray(cfg["times_min"] or np.unique(ds[v.TIME_MIN].values), dtype=float))
    stimulus, pre = predict.protocol(pcfg, ds)
    log(f"design: {len(values)} draws x {len(lines)} lines x {len(candidates)} treatments x {len(targets)} targets, "
        f"{len(times)} times x {cfg['replicates']} replicates per lane")
    obs, ok = predict.simulate_draws(values, candidates, times, stimulus, pre, solver.SolverSettings(**config["solver"]))
    obs = obs[..., [v.TARGETS.index(t) for t in targets]]
    sig_all = flat["sigma"].transpose("sample", v.TARGET).values[idx]  # [D, dataset targets]
    sig_targets = list(flat[v.TARGET].values)
    sigma = np.stack([sig_all[:, sig_targets.index(t)] if t in sig_targets else sig_all.mean(axis=1)
                      for t in targets])  # [G, D]
    threshold = config["summary"]["threshold_log2"]
    fc = flat["log2_fc"].transpose("sample", "cell_line", "shift_parameter")
    mechanisms = [str(x) for x in fc["mechanism"].values]
    good = ok.all(axis=(1, 2))  # draws whose every solve succeeded
    tables = []
    for li, line in enumerate(lines[1:], start=1):
        draw_labels = labels(fc.sel(cell_line=line).values[idx][good], mechanisms, threshold)
        log_h = experiment_log_h(obs[good], li, 0, cfg["replicates"])  # [C, G, D, B]
        c, g = log_h.shape[:2]
        key = jax.random.fold_in(engine.key(config, engine.STAGE_DESIGN), li)
        scores = rank(log_h.reshape((c * g,) + log_h.shape[2:]), np.repeat(sigma[None, :, good], c, 0).reshape(c * g, -1),
                      draw_labels, key)
        scores.insert(0, "cell_line", line)
        scores.insert(1, "treatment", np.repeat([tr.name(t) for t in candidates], g))
        scores.insert(2, "target", np.tile(targets, c))
        scores.insert(3, "times_min", ";".join(f"{t:g}" for t in times))
        scores.insert(4, "replicates", cfg["replicates"])
        tables.append(ordered(scores).head(cfg["top"]))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=DESIGN_COLUMNS)
    return table[DESIGN_COLUMNS]


def summary(table: pd.DataFrame) -> list[str]:
    """A sentence per resistant line: the next blot to run and what it would settle."""
    out = []
    for line, rows in table.groupby("cell_line", sort=True):
        r = rows.sort_values("rank").iloc[0]
        evidence = "" if pd.isna(r["log10_bayes_factor"]) else f", expected log10 Bayes factor {r['log10_bayes_factor']:.1f}"
        out.append(f"{line}: next blot {r['treatment']}, {r['target']} at {r['times_min']} min (parental and {line} "
                   f"side by side, {r['replicates']} replicates): {r['expected_info_bits']:.2f} bits about which "
                   f"mechanism changed ({r['tells_apart']}{evidence}); P(true mechanism) {r['p_true_now']:.2f} now, "
                   f"{r['p_true_after']:.2f} expected after")
    return out
