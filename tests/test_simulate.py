"""The JAX/diffrax network against an independent scipy Radau reference, finite differences and the steady state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference_model as ref
from pipeline.model import network, parameters, simulate, solver
from pipeline.vocabulary import TARGETS

TIGHT = solver.SolverSettings(rtol=1e-10, atol=1e-12, max_steps=200_000)
TIMES = np.array([0.0, 5.0, 15.0, 60.0, 240.0, 1440.0])
# (line, stimulus, doses uM, pretreatment min): drugs of every class, every stimulus, drug-only and co-added
CASES = [
    (0, "IGF1", {}, 0.0),
    (0, "IGF1", {"MK2206": 1.0}, 60.0),
    (0, "IGF1", {"ipatasertib": 1.0}, 60.0),
    (0, "FBS", {"everolimus": 0.1}, 0.0),
    (1, "EGF", {"AZD8055": 0.1, "trametinib": 0.01}, 30.0),
    (1, "insulin", {"alpelisib": 1.0, "AZD1208": 1.0, "RapaLink1": 0.01}, 120.0),
    (1, "none", {"MK2206": 3.0}, 0.0),
    (1, "IGF1", {"ipatasertib": 3.0, "AZD1208": 3.0}, 60.0),
]
SHIFTED = {"IC50_MK2206": 6.0, "X": 1.0, "g_F": 10.0, "rho_PTEN": 0.3, "phi_b": 0.4, "alpha_mTOR": 2.0}


def line_values():
    return [parameters.nominal(), {**parameters.nominal(), **SHIFTED}]


def _run(settings):
    values = jnp.stack([jnp.asarray(parameters.as_array(v)) for v in line_values()])
    conds = simulate.conditions(line=[c[0] for c in CASES], stimulus=[c[1] for c in CASES],
                                doses_uM=[c[2] for c in CASES], pretreatment_min=[c[3] for c in CASES])
    times = np.tile(TIMES, (len(CASES), 1))
    return jax.jit(lambda v: simulate.simulate(v, conds, times, settings))(values)


@pytest.fixture(scope="module")
def jax_run():
    return _run(TIGHT)


@pytest.fixture(scope="module")
def reference():
    return [ref.simulate(line_values()[line], stimulus, doses, pre, TIMES) for line, stimulus, doses, pre in CASES]


def _worst_relative_error(sim, reference):
    assert bool(sim.ok.all())
    return max(float(np.max(np.abs(np.asarray(sim.observables[i, :, j]) - want[target]) / np.abs(want[target])))
               for i, want in enumerate(reference) for j, target in enumerate(TARGETS))


def test_matches_scipy_radau_reference(jax_run, reference):
    worst = _worst_relative_error(jax_run, reference)
    assert 0 < worst < 1e-5  # > 0: the two really are separate computations


def test_default_settings_stay_within_1e4_of_the_reference(reference):
    """The defaults (Rodas5P at rtol 1e-4, chosen for speed: blots resolve ~15 %) keep every observable of every
    case within 1e-4 relative of scipy Radau at rtol 1e-10."""
    assert _worst_relative_error(_run(solver.SolverSettings()), reference) < 1e-4


def test_invariants_at_reference_conditions(jax_run):
    states = np.asarray(jax_run.states)
    idx = [network.IDX[s] for s in network.FRACTION_STATES]
    assert np.all(states[..., idx] >= -1e-9) and np.all(states[..., idx] <= 1 + 1e-9)
    akt = states[..., [network.IDX["AT"], network.IDX["AS"], network.IDX["ATS"]]].sum(-1)
    assert np.all(akt <= 1 + 1e-9)


@pytest.mark.parametrize("line", [0, 1])
def test_steady_state_residual_and_independence_of_start(line):
    p = network.as_dict(jnp.asarray(parameters.as_array(line_values()[line])))
    starts = [None, jnp.full(len(network.STATES), 0.5),
              jax.random.uniform(jax.random.PRNGKey(line), (len(network.STATES),))]
    found = jax.jit(jax.vmap(lambda y0: simulate.steady_state(p, TIGHT, y0)))(
        jnp.stack([network.initial_guess() if s is None else s for s in starts]))
    y, ok = np.asarray(found[0]), np.asarray(found[1])
    assert ok.all()
    args = (p, p["L_b"], jnp.zeros(len(network.OCCUPANCIES)))
    for yi in y:
        assert float(jnp.max(jnp.abs(network.vector_field(0.0, jnp.asarray(yi), args)))) < 1e-8
    np.testing.assert_allclose(y, np.broadcast_to(y[0], y.shape), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(y[0], ref.steady_state(line_values()[line]), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("settings", [pytest.param(TIGHT, marks=pytest.mark.slow, id="tight"),  # CI: the defaults
                                      pytest.param(solver.SolverSettings(), id="defaults")])
def test_gradient_matches_central_finite_differences(settings):
    """d/d log(theta) of a smooth summary of observables, through pre-equilibration, pretreatment and stimulus,
    at tight tolerances and at the defaults, against central differences of tight solves."""
    names = ["k_T", "kd_S", "g_F", "IC50_MK2206", "K_ER", "X", "c_T", "k_6d", "L_b", "s_EGF"]
    idx = jnp.array([parameters.names().index(n) for n in names])
    base = jnp.asarray(parameters.as_array(parameters.nominal()))
    conds = simulate.conditions(stimulus=["IGF1", "EGF"], doses_uM=[{"MK2206": 0.3}, {"AZD1208": 1.0}],
                                pretreatment_min=[60.0, 30.0])
    times = np.tile(np.array([0.0, 15.0, 120.0, 1440.0]), (2, 1))

    def summary(log_theta, settings):
        sim = simulate.simulate(base.at[idx].set(jnp.exp(log_theta)), conds, times, settings)
        return jnp.sum(jnp.log(sim.observables)) + 0.0 * jnp.sum(sim.ok)

    x0 = jnp.log(base[idx])
    grad = np.asarray(jax.jit(jax.grad(lambda x: summary(x, settings)))(x0))
    f = jax.jit(lambda x: summary(x, TIGHT))
    h = 1e-4
    fd = np.array([(f(x0.at[i].add(h)) - f(x0.at[i].add(-h))) / (2 * h) for i in range(len(names))])
    rel = np.abs(grad - fd) / np.maximum(np.abs(fd), 1e-3 * np.max(np.abs(fd)))
    assert np.all(rel < 1e-4), dict(zip(names, rel))
    assert np.all(np.abs(fd) > 0)


def test_failures_are_flagged_not_raised():
    """Too few steps for a 24 h solve: flagged in `ok`, no exception, and other conditions still succeed."""
    few = solver.SolverSettings(max_steps=30)
    conds = simulate.conditions(stimulus=["IGF1"], doses_uM=[{}], pretreatment_min=[0.0])
    sim = simulate.simulate(simulate.nominal_values(), conds, np.array([[0.0, 1440.0]]), few)
    assert not bool(sim.ok[0])
    sim = simulate.simulate(simulate.nominal_values(), conds, np.array([[0.0, 1440.0]]))
    assert bool(sim.ok[0])


def test_vmap_over_parameter_sets_equals_one_row_per_set():
    """simulate is vmap-able over parameter sets: jax.vmap over draws = the same draws as cell-line rows."""
    base = parameters.as_array(parameters.nominal())
    draws = np.stack([base, base * np.where(np.array(parameters.names()) == "k_T", 2.0, 1.0)])
    conds = simulate.conditions(stimulus=["IGF1"], doses_uM=[{"MK2206": 0.3}], pretreatment_min=[30.0])
    times = np.array([[0.0, 15.0, 120.0]])
    mapped = jax.vmap(lambda v: simulate.simulate(v, conds, times))(jnp.asarray(draws))
    rows = simulate.simulate(jnp.asarray(draws), simulate.conditions(line=[0, 1], stimulus=["IGF1"] * 2,
                             doses_uM=[{"MK2206": 0.3}] * 2, pretreatment_min=[30.0] * 2), np.tile(times, (2, 1)))
    assert mapped.observables.shape == (2, 1, 3, len(TARGETS))
    np.testing.assert_allclose(np.asarray(mapped.observables[:, 0]), np.asarray(rows.observables), rtol=1e-10)
    assert not np.allclose(np.asarray(rows.observables[0]), np.asarray(rows.observables[1]))
