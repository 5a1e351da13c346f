"""Rodas5P, a Rosenbrock method for small stiff systems, as a diffrax solver.

diffrax 0.7 has implicit Runge-Kutta methods (Kvaerno*), whose stages each solve a nonlinear system by
(chord) Newton iterations. A Rosenbrock method linearises instead: one Jacobian J = df/dy and one LU of
W = I/(h*gamma) - J per step, then every stage is a single linear solve with that LU. For 22 states and
the blot protocol this is what PEtab.jl and DifferentialEquations.jl default to (Rodas5P, Steinebach 2023,
order 5 with an embedded order-4 error estimate, stiffly accurate, and a dense output of its own).

Stages (Hairer & Wanner's transformed form, as OrdinaryDiffEq.jl writes it; U_i are increments of y):

    W U_i = f(t + c_i h, y0 + sum_j a_ij U_j) + sum_j (C_ij / h) U_j + d_i h df/dt
    y1 = y0 + sum_j a_8j U_j + U_8,   error estimate U_8

The coefficients are Steinebach's (as tabulated in OrdinaryDiffEq.jl's Rodas5PTableau).
"""

from __future__ import annotations

from typing import ClassVar

from pipeline import runtime

runtime.configure()  # float64, and EQX_ON_ERROR before diffrax imports equinox (see pipeline.runtime)

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from diffrax import AbstractAdaptiveSolver, AbstractLocalInterpolation, AbstractTerm, RESULTS

GAMMA = 0.21193756319429014
# a[i, j]: the stage point of stage i+1 (stages 7 and 8 add U_6 and U_7 to stage 6's, see `step`)
A = np.zeros((6, 5))
A[1, :1] = [3.0]
A[2, :2] = [2.849394379747939, 0.45842242204463923]
A[3, :3] = [-6.954028509809101, 2.489845061869568, -10.358996098473584]
A[4, :4] = [2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641]
A[5, :5] = [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
            0.030198172008377946]
# every stage point as y0 + A_FULL[i] @ U (stage 7 is stage 6's plus U_6, stage 8's plus U_7 too)
A_FULL = np.zeros((8, 8))
A_FULL[:6, :5] = A
A_FULL[6] = A_FULL[5] + np.eye(8)[5]
A_FULL[7] = A_FULL[6] + np.eye(8)[6]
C = np.zeros((8, 8))
C[1, :1] = [-14.155112264123755]
C[2, :2] = [-17.97296035885952, -2.859693295451294]
C[3, :3] = [147.12150275711716, -1.41221402718213, 71.68940251302358]
C[4, :4] = [165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306]
C[5, :5] = [24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125, -0.6610691825249471]
C[6, :6] = [30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783, -19.097331116725623,
            -28.087943162872662]
C[7, :7] = [37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047, -40.06618937091002,
            -54.66780262877968, -9.48861652309627]
CT = np.array([0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664, 1.0, 1.0, 1.0])
D = np.array([0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734,
              2.325825639765069, 0.0, 0.0, 0.0])
# dense output: y(theta) = (1-theta) y0 + theta (y1 + (1-theta) (K1 + theta (K2 + theta K3))), K = H @ U
H = np.array([
    [25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204, 0.524948541321073,
     1.1241088310450404, 0.4272876194431874, -0.17202221070155493],
    [-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796, 20.176138334709044,
     15.98066361424651, -6.789040303419874, -6.710236069923372],
    [11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643, -52.072871366152654,
     -59.78993625266729, -0.15582684282751913, 4.883087185713722],
])


class RodasInterpolation(AbstractLocalInterpolation):
    """Rodas5P's own dense output between t0 and t1 (flat-array states)."""

    t0: jax.Array
    t1: jax.Array
    y0: jax.Array
    y1: jax.Array
    k: jax.Array  # [3, n]: H @ U

    def evaluate(self, t0, t1=None, left: bool = True):
        del left
        if t1 is not None:
            return self.evaluate(t1) - self.evaluate(t0)
        theta = (t0 - self.t0) / jnp.where(self.t1 == self.t0, 1.0, self.t1 - self.t0)
        one = 1.0 - theta
        return one * self.y0 + theta * (self.y1 + one * (self.k[0] + theta * (self.k[1] + theta * self.k[2])))


class Rodas5P(AbstractAdaptiveSolver):
    """Rodas5P (Steinebach 2023) for `diffrax.ODETerm`s whose state is a flat array.

    autonomous: the vector field does not depend on t (skips df/dt, one forward-mode pass per step).
    """

    term_structure: ClassVar = AbstractTerm
    interpolation_cls: ClassVar = RodasInterpolation
    autonomous: bool = False

    def order(self, terms):
        del terms
        return 5

    def error_order(self, terms):
        del terms
        return 5  # the embedded order-4 solution: local error O(h^5)

    def init(self, terms, t0, t1, y0, args):
        del terms, t0, t1, y0, args
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        # A zero-length step (a finished solve that vmap keeps stepping alongside unfinished ones) would divide
        # by h; it is taken with h = 1 and discarded, so that no inf or NaN reaches the gradient.
        empty = t1 == t0
        h = jnp.where(empty, 1.0, t1 - t0)
        f = lambda t, y: terms.vf(t, y, args)  # noqa: E731
        jac = jax.jacfwd(lambda y: f(t0, y))(y0)
        if self.autonomous:
            dfdt = jnp.zeros_like(y0)
        else:
            dfdt = jax.jvp(lambda t: f(t, y0), (t0,), (jnp.ones_like(t0),))[1]
        w = jnp.eye(y0.shape[0]) / (h * GAMMA) - jac
        lu = jsl.lu_factor(w)

        # the eight stages in one loop, so the vector field is traced once (compile time), not unrolled
        a, c, ct, d = (jnp.asarray(m) for m in (A_FULL, C, CT, D))

        def stage(i, us):
            rhs = f(t0 + ct[i] * h, y0 + a[i] @ us) + (c[i] @ us) / h + (d[i] * h) * dfdt
            return us.at[i].set(jsl.lu_solve(lu, rhs))

        us = jax.lax.fori_loop(0, 8, stage, jnp.zeros((8,) + y0.shape, y0.dtype))
        y1 = jnp.where(empty, y0, y0 + a[7] @ us + us[7])
        error = jnp.where(empty, 0.0, us[7])
        k = jnp.where(empty, 0.0, jnp.asarray(H) @ us)
        result = RESULTS.where(jnp.all(jnp.isfinite(y1)), RESULTS.successful, RESULTS.singular)
        return y1, error, dict(y0=y0, y1=y1, k=k), None, result

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

