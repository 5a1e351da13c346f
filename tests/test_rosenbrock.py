"""Rodas5P (pipeline/model/rosenbrock.py) against analytic solutions of stiff problems."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from pipeline.model.rosenbrock import Rodas5P

jax.config.update("jax_enable_x64", True)


def _solve(vf, y0, t1, ts, rtol, solver=None, dt0=None, args=None):
    controller = (diffrax.ConstantStepSize() if dt0 is not None
                  else diffrax.PIDController(rtol=rtol, atol=rtol * 1e-3))
    return diffrax.diffeqsolve(diffrax.ODETerm(vf), solver or Rodas5P(), 0.0, t1, dt0, jnp.asarray(y0), args=args,
                               saveat=diffrax.SaveAt(ts=jnp.asarray(ts)), stepsize_controller=controller,
                               max_steps=100_000)


@pytest.mark.parametrize("rtol, bound", [(1e-4, 3e-2), (1e-6, 1e-4), (1e-8, 1e-6)])
def test_prothero_robinson_stiff_and_time_dependent(rtol, bound):
    """y' = -lam (y - sin t) + cos t, y(0) = 0: y = sin t, stiffness 1e4, a vector field that depends on t
    (the df/dt term of the stages), read out by the dense output between steps."""
    lam = 1e4
    ts = np.linspace(0.0, 10.0, 37)
    sol = _solve(lambda t, y, a: -lam * (y - jnp.sin(t)) + jnp.cos(t), [0.0], 10.0, ts, rtol)
    err = np.max(np.abs(np.asarray(sol.ys[:, 0]) - np.sin(ts)))
    assert err < bound
    kvaerno = _solve(lambda t, y, a: -lam * (y - jnp.sin(t)) + jnp.cos(t), [0.0], 10.0, ts, rtol,
                     solver=diffrax.Kvaerno5())
    assert int(sol.stats["num_steps"]) < int(kvaerno.stats["num_steps"])  # why it is the default


def test_linear_stiff_system_matches_the_matrix_exponential():
    """y' = A y with eigenvalues from -1e-2 to -1e5 (non-normal): y(t) = expm(A t) y0."""
    rng = np.random.default_rng(0)
    v = np.eye(6) + 0.3 * rng.normal(size=(6, 6))
    a = v @ np.diag([-1e-2, -0.3, -5.0, -80.0, -2e3, -1e5]) @ np.linalg.inv(v)
    y0 = rng.normal(size=6)
    ts = np.array([0.0, 0.01, 0.5, 3.0, 40.0, 200.0])
    sol = _solve(lambda t, y, m: m @ y, y0, ts[-1], ts, 1e-9, solver=Rodas5P(autonomous=True), args=jnp.asarray(a))
    want = np.stack([scipy.linalg.expm(a * t) @ y0 for t in ts])
    np.testing.assert_allclose(np.asarray(sol.ys), want, rtol=1e-6, atol=1e-9 * np.max(np.abs(y0)))


def test_fifth_order_convergence_and_fourth_order_dense_output():
    """Fixed steps on y' = -y^2 (y = 1/(1+t)): halving h cuts the end error ~2^5, the dense output's >= 2^4."""
    ts = np.array([0.37, 1.0])
    errs = []
    for n in (10, 20, 40):
        sol = _solve(lambda t, y, a: -y ** 2, [1.0], 1.0, ts, None, solver=Rodas5P(autonomous=True), dt0=1.0 / n)
        errs.append(np.abs(np.asarray(sol.ys[:, 0]) - 1.0 / (1.0 + ts)))
    errs = np.array(errs)
    end_order = np.log2(errs[:-1, 1] / errs[1:, 1])
    dense_order = np.log2(errs[:-1, 0] / errs[1:, 0])
    assert np.all(end_order > 4.6), end_order
    assert np.all(dense_order > 3.5), dense_order


def test_finished_solves_in_a_vmap_keep_the_gradient_finite():
    """vmap steps a finished solve with a zero-length step alongside unfinished ones; that step must not put
    inf or NaN into the gradient (the division by h of the stages)."""
    def end(k, t1):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, a: -a * y), Rodas5P(autonomous=True), 0.0, t1, None,
                                  jnp.array([1.0]), args=k, saveat=diffrax.SaveAt(t1=True),
                                  stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10))
        return sol.ys[-1, 0]

    t1 = jnp.array([0.1, 1.0, 4.0])
    grads = jax.vmap(jax.grad(end), in_axes=(None, 0))(2.0, t1)
    np.testing.assert_allclose(np.asarray(grads), -np.asarray(t1) * np.exp(-2.0 * np.asarray(t1)), rtol=1e-6)
