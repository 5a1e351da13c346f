"""The solver layer's steady states against closed forms, values and gradients, for every pre-equilibration.

A <-> B (k1, k2) with a production/degradation pair C (s, d) and A + B conserved: from A(0) = a0(theta),
B(0) = b0, C(0) = 6 the steady state is A* = T k2 / (k1 + k2), B* = T k1 / (k1 + k2), C* = s / d with
T = a0 + b0. The moiety makes df/dy singular, so the gradient must keep what the initial state fixes.
C starts at its steady state (s / d = 6 at THETA), so the steady-state event fires at once: differentiating
through that integration gives dC*/d(s, d) = 0 (how Weber_BMC2015's gradient went wrong), not 1/d, -s/d^2.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipeline.model import solver

jax.config.update("jax_enable_x64", True)

THETA = jnp.array([0.7, 0.2, 3.0, 0.5, 2.0, 1.5])  # k1, k2, s, d, a0, b0


def vector_field(t, y, p):
    del t
    k1, k2, s, d = p[0], p[1], p[2], p[3]
    flux = k1 * y[0] - k2 * y[1]
    return jnp.array([-flux, flux, s - d * y[2]])


def closed_form(p):
    k1, k2, s, d, a0, b0 = p
    total = a0 + b0
    return jnp.array([total * k2 / (k1 + k2), total * k1 / (k1 + k2), s / d])


SETTINGS = {
    "event": solver.SolverSettings(preequilibration="event", rtol=1e-10, atol=1e-12),
    "event_defaults": solver.SolverSettings(preequilibration="event"),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_steady_state_and_its_gradient_match_the_closed_form_with_a_conserved_moiety(name):
    settings = SETTINGS[name]

    def steady(p):
        y, ok = solver.steady_state(vector_field, jnp.array([p[4], p[5], 6.0]), p[:4], settings)
        return y, ok

    y, ok = jax.jit(steady)(THETA)
    assert bool(ok)
    np.testing.assert_allclose(y, closed_form(THETA), rtol=1e-6)
    want = jax.jacfwd(closed_form)(THETA)
    got = jax.jit(jax.jacrev(lambda p: steady(p)[0]))(THETA)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    # under vmap, the batch's sets alike
    batch = jnp.stack([THETA, THETA * 1.1])
    got_b = jax.jit(jax.vmap(jax.jacrev(lambda p: steady(p)[0])))(batch)
    np.testing.assert_allclose(got_b[1], jax.jacfwd(closed_form)(batch[1]), rtol=1e-6, atol=1e-8)


def test_the_newton_steady_state_without_a_moiety_has_the_closed_form_gradient():
    settings = dataclasses.replace(solver.SolverSettings(), preequilibration="warmup")

    def steady(p):  # C alone: no conserved moiety, so warmup + Newton applies
        f = lambda t, y, q: vector_field(t, jnp.array([0.0, 0.0, y[0]]), q)[2:]  # noqa: E731
        return solver.steady_state(f, jnp.array([0.0]), p, settings)

    y, ok = steady(THETA[:4])
    assert bool(ok)
    np.testing.assert_allclose(y, [THETA[2] / THETA[3]], rtol=1e-8)
    got = jax.jacrev(lambda p: steady(p)[0])(THETA[:4])
    np.testing.assert_allclose(got[0], [0.0, 0.0, 1 / THETA[3], -THETA[2] / THETA[3] ** 2], rtol=1e-8, atol=1e-12)
