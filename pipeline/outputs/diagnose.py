"""Whether to trust a posterior fit (NUTS or ChEES): each convergence check as a number, a verdict and, when
it fails, what to do.

Thresholds follow Vehtari et al. 2021 (rank-normalised R-hat <= 1.01, bulk and tail ESS >= 100 per
chain) and Betancourt 2017 (E-BFMI >= 0.3, no divergences); solver failures are proposals rejected
because an ODE solve failed (`sample_stats.solver_failures`), and iterations that stop at the maximum
tree depth mean a NUTS trajectory was cut short (see `sampler.max_tree_depth`; ChEES builds no tree).
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np

OK, CAUTION, BAD = "ok", "caution", "bad"
RHAT_OK, RHAT_BAD = 1.01, 1.05
ESS_PER_CHAIN = 100
EBFMI_MIN = 0.3


@dataclass(frozen=True)
class Check:
    name: str
    value: str  # the number(s), as shown
    status: str  # OK, CAUTION or BAD
    message: str  # plain words: what it means and, if not OK, what to do


def checks(idata: az.InferenceData, diagnostics: dict, max_tree_depth: int) -> list[Check]:
    """Every check of one fit, from posterior.nc and diagnostics.json (the numbers of the fit stage)."""
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
    return out


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
