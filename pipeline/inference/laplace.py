"""What the data inform, read off the MAP's Laplace approximation before any sampling (`map.json`'s `laplace`).

The Hessian H of -log p at the best MAP fit is the precision of the Laplace approximation. In coordinates
whitened by the prior (w_i = u_i / prior sd_i, the prior's variance of each coordinate from the
model's `prior_variance`, so any prior works), the eigenvalues lambda of D H D (D = diag(prior sd))
say how much the data add along each eigen-direction: lambda ~ 1 is the prior's curvature alone (a Gaussian
prior), lambda >> 1 a direction the data pin down. Per direction the contraction 1 - 1/lambda is the share of
its prior variance the data remove; the smallest eigenvalues are the sloppy directions (Gutenkunst et al.
2007), and their largest loadings name the parameters that trade off along them (a scale times an amount, two
rates in series). Per coordinate the contraction is 1 - var_Laplace / var_prior, with eigenvalues below 1
raised to 1 (a direction is never wider than its prior; a negative or zero curvature, as at the Laplace
shift prior's kink, reads as uninformed), the same floor as the sampler's starting mass matrix
(`optimize.inverse_mass`).

It is an approximation at one point: the posterior's contraction in the report (`figures.contraction_table`)
is the measured one. Its use is to decide before sampling which parameters to hold (`model.fixed`): an
estimated parameter with contraction ~0 costs the sampler a dimension and tells nothing.
"""

from __future__ import annotations

import numpy as np

DIRECTIONS = 5  # the sloppiest eigen-directions kept
LOADINGS = 3  # the largest loadings named per direction
MIN_LOADING = 0.2  # (of a unit eigenvector) below this a coordinate is not named
WEAK = 0.5  # coordinate contraction below this: barely informed (as the report's posterior contraction)


def analyse(hess, coords, prior_var, directions: int = DIRECTIONS, loadings: int = LOADINGS) -> dict:
    """{"contraction": {coord: c}, "weak": [coords with c < WEAK], "sloppy_directions": [{"eigenvalue",
    "contraction", "loadings": {coord: x}}], smallest eigenvalue first}; {} when the Hessian is not finite."""
    hess, prior_var = np.asarray(hess, dtype=float), np.asarray(prior_var, dtype=float)
    if hess.size == 0 or not np.all(np.isfinite(hess)):
        return {}
    sd = np.sqrt(np.where(prior_var > 0, prior_var, 1.0))
    vals, vecs = np.linalg.eigh(sd[:, None] * hess * sd[None, :])
    cov_w = (vecs / np.maximum(vals, 1.0)) @ vecs.T  # whitened Laplace covariance; prior: the identity
    contraction = 1.0 - np.diag(cov_w)
    out = {"contraction": {c: round(float(x), 4) for c, x in zip(coords, contraction)},
           "weak": [c for c, x in zip(coords, contraction) if x < WEAK], "sloppy_directions": []}
    for i in range(min(directions, len(vals))):  # eigh: ascending eigenvalues, the sloppiest first
        vec = vecs[:, i] * np.sign(vecs[np.argmax(np.abs(vecs[:, i])), i])  # largest loading positive
        top = [j for j in np.argsort(-np.abs(vec))[:loadings] if abs(vec[j]) >= MIN_LOADING]
        out["sloppy_directions"].append({"eigenvalue": float(vals[i]),
                                         "contraction": round(float(max(0.0, 1.0 - 1.0 / max(vals[i], 1.0))), 4),
                                         "loadings": {coords[j]: round(float(vec[j]), 3) for j in top}})
    return out


def describe(direction: dict) -> str:
    """'0.71 k_T - 0.70 kd_T' for a sloppy direction's loadings."""
    terms = [f"{'-' if x < 0 else '+'} {abs(x):.2f} {name}" for name, x in direction["loadings"].items()]
    return " ".join(terms).removeprefix("+ ")
