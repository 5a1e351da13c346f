"""Whether to trust a posterior fit (NUTS or ChEES): each convergence check as a number, a verdict and, when
it fails, what to do.

Thresholds follow Vehtari et al. 2021 (rank-normalised R-hat <= 1.01, bulk and tail ESS >= 100 per
chain) and Betancourt 2017 (E-BFMI >= 0.3, no divergences); solver failures are proposals rejected
because an ODE solve failed (`sample_stats.solver_failures`), and iterations that stop at the maximum
tree depth mean a NUTS trajectory was cut short (see `sampler.max_tree_depth`; ChEES builds no tree).
Chains whose 90 % intervals of one coordinate do not overlap sit in separate modes: the check names where,
and whether the shift calls (prob_shift > CALL) depend on the mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np

OK, CAUTION, BAD = "ok", "caution", "bad"
RHAT_OK, RHAT_BAD = 1.01, 1.05
ESS_PER_CHAIN = 100
EBFMI_MIN = 0.3
MODE_MIN_DRAWS = 50  # fewer draws per chain give too rough a 90 % interval to tell modes apart
CALL = 0.9  # the prob_shift of a called shift


@dataclass(frozen=True)
class Check:
    name: str
    value: str  # the number(s), as shown
    status: str  # OK, CAUTION or BAD
    message: str  # plain words: what it means and, if not OK, what to do


def checks(idata: az.InferenceData, diagnostics: dict, max_tree_depth: int, threshold_log2: float = 1.0) -> list[Check]:
    """Every check of one fit, from posterior.nc and diagnostics.json (the numbers of the fit stage);
    threshold_log2: the |log2 FC| a shift must pass to count (`summary.threshold_log2`)."""
    chains, draws = diagnostics["chains"], diagnostics["draws"]
    out = []
    rhat = diagnostics["max_rhat"]
    if rhat is None:
        out.append(Check("R-hat", "n/a (1 chain)", CAUTION, "R-hat needs 2 chains or more: set sampler.chains to 4."))
    else:
        status = OK if rhat <= RHAT_OK else CAUTION if rhat <= RHAT_BAD else BAD
        msg = {OK: "The chains agree with each other.",
               CAUTION: "The chains agree only roughly: run longer chains (sampler.warmup, sampler.samples) before "
                        "reading small differences.",
               BAD: "The chains disagree: they explore different regions, so the posterior summary is not "
                    "reliable. Run longer warmup and more draws; if it persists, look at the rank plot for "
                    "the parameter that is stuck and consider fixing it (model.fixed) or a tighter prior."}[status]
        out.append(Check("R-hat (max)", f"{rhat:.3f}", status, msg))
    need = ESS_PER_CHAIN * chains
    for kind in ("bulk", "tail"):
        ess = diagnostics[f"min_ess_{kind}"]
        status = OK if ess >= need else CAUTION if ess >= need / 4 else BAD
        what = "medians and means" if kind == "bulk" else "the 90 % intervals"
        msg = (f"Enough independent draws for {what}." if status == OK else
               f"Fewer than {need} effective draws ({ESS_PER_CHAIN} per chain): {what} are noisy. Run more "
               f"draws (sampler.samples; about {int(np.ceil(need / max(ess, 1) * draws))} per chain would do).")
        out.append(Check(f"ESS {kind} (min)", f"{ess:.0f}", status, msg))
    total = chains * draws
    div, fail = diagnostics["divergences"], diagnostics["solver_failures"]
    out.append(_count("Divergences", div, total, "No divergent transitions.",
                      f"{div} of {total} transitions diverged: the sampler met curvature it could not follow, so "
                      "the posterior there may be missed. Raise sampler.target_accept (0.95, 0.99); if they remain, "
                      "the model is poorly identified along some direction (see the pair plot)."))
    out.append(_count("Solver failures (sampling)", fail, total, "Every ODE solve succeeded.",
                      f"{fail} proposals were rejected because the ODE solve failed. A few are harmless; many bias "
                      "the posterior away from stiff regions. Raise solver.max_steps or loosen solver.rtol; if the "
                      "failures are where the data point, the model variant may be wrong there."))
    ebfmi = az.bfmi(idata.sample_stats["energy"].values)
    low = float(np.min(ebfmi))
    status = OK if low >= EBFMI_MIN else BAD
    msg = ("The momentum resampling explores the energy levels well." if status == OK else
           f"E-BFMI below {EBFMI_MIN}: the sampler moves slowly between energy levels, typical of heavy "
           "tails or a funnel. Run longer warmup; if it persists, reparametrise or tighten the prior on "
           "the parameters with the widest posteriors.")
    out.append(Check("E-BFMI (min over chains)", ", ".join(f"{x:.2f}" for x in ebfmi), status, msg))
    if "tree_depth" in idata.sample_stats:  # NUTS (ChEES builds no tree: its trajectory length is adapted)
        out.append(_depth(idata.sample_stats["tree_depth"].values, diagnostics, max_tree_depth))
    if "posterior" in idata and idata.posterior.sizes["chain"] > 1 and idata.posterior.sizes["draw"] >= MODE_MIN_DRAWS:
        out.append(modes(idata, threshold_log2))
    return out


def modes(idata: az.InferenceData, threshold_log2: float) -> Check:
    """Whether two chains hold separate regions of one coordinate (disjoint 5-95 % intervals) and, if so, which
    coordinates (the widest gaps first, relative to the pooled 90 % width) and each chain's shift calls."""
    post = idata.posterior
    gaps = []  # (relative gap, label, chain medians)
    for label, name, idx in coordinates(post, skip=2):
        x = post[name].values[(slice(None), slice(None), *idx)]  # [chain, draw]
        lo, hi = np.quantile(x, [0.05, 0.95], axis=1)
        if lo.max() > hi.min():
            gaps.append(((lo.max() - hi.min()) / (np.quantile(x, 0.95) - np.quantile(x, 0.05)), label,
                         np.median(x, axis=1)))
    if not gaps:
        return Check("Chains in separate modes", "none", OK, "Every chain covers the same region of every coordinate.")
    gaps.sort(key=lambda g: -g[0])
    where = "; ".join(f"{label} (chain medians {', '.join(f'{m:.3g}' for m in med)})" for _, label, med in gaps[:3])
    more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
    lp = (" Mean log density per chain: " + ", ".join(f"{v:.1f}" for v in idata.sample_stats["lp"].mean("draw").values)
          + "." if "sample_stats" in idata and "lp" in idata.sample_stats else "")
    calls = _calls(post, threshold_log2)
    if calls is None:
        attribution = ""
    elif len(set(calls)) == 1:
        attribution = (f" The shift calls (prob_shift > {CALL}) are the same in every chain ({calls[0] or 'none'}): "
                       "the attribution does not depend on the mode, the sizes and intervals do.")
    else:
        attribution = (" The shift calls depend on the mode: " + "; ".join(
            f"chain {c}: {call or 'none'}" for c, call in enumerate(calls)) + ". Do not read the shifts table yet.")
    return Check("Chains in separate modes", f"{len(gaps)} coordinates", BAD,
                 f"The chains' 90 % intervals do not overlap for {where}{more}: the posterior has separate modes "
                 f"that the chains do not cross.{lp}{attribution} The data do not decide between the modes: add "
                 "the condition that separates these parameters (`pipeline design` ranks candidate blots), or fix one "
                 "of them (model.fixed) from other evidence; more chains from more MAP starts "
                 "(sampler.chains, sampler.init_tolerance) show how many modes there are.")


def coordinates(ds, skip: int = 0):
    """(label, variable, index) of every scalar of a Dataset past its first `skip` dimensions (2 for draws:
    chain and draw), labelled like "shift[resistant,k_T0]"."""
    for name, var in ds.data_vars.items():
        coords = [var[d].values for d in var.dims[skip:]]
        for idx in np.ndindex(var.shape[skip:]):
            label = ",".join(str(c[i]) for c, i in zip(coords, idx))
            yield (f"{name}[{label}]" if label else name), name, idx


def _calls(post, threshold_log2: float) -> list[str] | None:
    """Per chain, the shifts it calls (prob_shift > CALL within the chain), as text; None without shifts."""
    if "log2_fc" not in post:
        return None
    fc = post["log2_fc"].transpose("chain", "draw", "cell_line", "shift_parameter")
    p = (np.abs(fc.values) > threshold_log2).mean(axis=1)
    return [", ".join(f"{line} {param}" for i, line in enumerate(fc["cell_line"].values)
                      for j, param in enumerate(fc["shift_parameter"].values) if p[c, i, j] > CALL)
            for c in range(p.shape[0])]


def _depth(depth: np.ndarray, diagnostics: dict, max_tree_depth: int) -> Check:
    """NUTS iterations whose tree reached the maximum depth."""
    frac = float(np.mean(depth >= max_tree_depth))
    status = OK if frac == 0 else CAUTION if frac < 0.1 else BAD
    msg = ("No trajectory was cut at the maximum tree depth." if frac == 0 else
           f"{100 * frac:.0f} % of iterations stopped at the maximum tree depth ({max_tree_depth}): the sampler "
           "was cut short and explores slowly. Raise sampler.max_tree_depth, or look at the pair plot for "
           "strongly correlated parameters (sloppy directions) and fix one of them.")
    return Check("Iterations at max tree depth", f"{100 * frac:.0f} % "
                 f"(mean {diagnostics['mean_steps_per_iteration']:.0f} steps)", status, msg)


def _count(name: str, n: int, total: int, fine: str, advice: str) -> Check:
    """A count of bad iterations: none is ok, up to 1 % caution, more is bad."""
    status = OK if n == 0 else CAUTION if n <= 0.01 * total else BAD
    return Check(name, f"{n} of {total}", status, fine if n == 0 else advice)


def verdict(found: list[Check]) -> tuple[str, str]:
    """(status, one sentence) for the whole fit."""
    if any(c.status == BAD for c in found):
        names = ", ".join(c.name for c in found if c.status == BAD)
        return BAD, f"Do not trust this fit yet: {names} failed. See what to do below, then rerun the fit stage."
    if any(c.status == CAUTION for c in found):
        names = ", ".join(c.name for c in found if c.status == CAUTION)
        return CAUTION, (f"The fit is usable with care: {names} are borderline, so treat small differences and "
                         "interval ends as approximate.")
    return OK, "The fit passed every convergence check."
