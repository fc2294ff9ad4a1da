"""Fixed points of the mean-field maps and the numbers read off them: q*, c*, χ₁, χ_c, ξ_q, ξ_c.

Maps (``sweep.theory.maps``; kernels V, C from ``sweep.theory.kernels``)::

    length map        q^l = σ_w² V(q^{l-1}) + σ_b²                        fixed point q*
    correlation map   c^l = (σ_w² C(q*, c^{l-1}) + σ_b²) / q*             fixed point c*
    χ₁  = σ_w² E[φ'(u)²] at q*           (< 1 ordered, > 1 chaotic, = 1 critical)
    χ_c = σ_w² E[φ'(u₁)φ'(u₂)] at (q*, c*)   (= χ₁ when c* = 1)
    ξ_q = -1/log(χ₁ + σ_w² E[φ''(u)φ(u)])  = -1/log(slope of the length map at q*)
    ξ_c = -1/log χ_c

Conventions at the edges (answers, never hangs or NaN):
- q* is the fixed point reached by iterating the length map from ``q0`` (default 1). With σ_b² = 0 and
  φ(0) = 0, q = 0 is a fixed point: it is the answer when it attracts (tanh with σ_w² ≤ 1, where χ₁ = σ_w²);
  otherwise the iteration from q0 > 0 finds the non-zero fixed point (relu at σ_w² = 2, σ_b² = 0, where
  every q is fixed: q0 itself).
- No finite fixed point (relu with σ_w² > 2, linear with σ_w² > 1, …): q* = inf, χ₁ is its large-q limit,
  c* = 1, χ_c = χ₁, ξ_q = ξ_c = inf.
- Ordered phase (χ₁ ≤ 1): c* = 1 exactly, χ_c = χ₁, ξ_c = -1/log χ₁. Depth scales are inf where the
  multiplier is ≥ 1 (exactly at criticality ξ_c = inf).

Numerics. A fixed number of safeguarded Newton steps in ``lax.fori_loop`` (25 coarse + 3 fine for q*, 25
for c*; no data-dependent loops). q*: Newton on g(q) = σ_w² V(q) + σ_b² - q, a map step where Newton would
go the wrong way, and with σ_b² = 0 Newton on g(q)/q, which removes the root q = 0 (so the double root of
tanh at σ_w² = 1 converges fast). c*: Newton from c = 0, which increases monotonically to the stable root
because C is convex in c. Near χ₁ = 1 in float32, c* and χ_c carry ~1e-3 errors (cancellation in
m(c) - c); use float64 there. The solvers are never differentiated: q*, c* get their derivatives from the
implicit-function theorem (``jax.custom_jvp``), so forward and reverse mode are exact at convergence and
cheap to compile.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from sweep.theory.kernels import ActivationLike, CorrelationFn, GaussianKernel, Moments, gaussian_kernel
from sweep.theory.programs import _flat_call, _theory_program
from sweep.theory.quadrature import _COARSE, _FINE, Array, Rule, _floor

_Q_STEPS = ((_COARSE, 25), (_FINE, 3))  # (rule, Newton steps) for q*
_C_STEPS = 25  # Newton steps for c*
_ZERO_SNAP = 1e-10  # q* below this is 0 when q = 0 is itself a fixed point
_Q_CAP = 1e30  # iterates of a diverging length map stop here; reported as q* = inf
_Q_LARGE = 1e12  # stand-in for q* = inf when differentiating (tangents there are 0)


def depth_scale(chi: Array) -> Array:
    """ξ = -1/log|χ| for |χ| < 1, inf for |χ| ≥ 1 (0 at χ = 0). Same shape as ``chi``."""
    chi = jnp.abs(jnp.asarray(chi))
    below = chi < 1
    safe = jnp.where(below, chi, 0.5)
    return jnp.where(below, -1.0 / jnp.log(safe), jnp.inf)


class MeanField(NamedTuple):
    """Mean-field quantities, each with the broadcast shape of (σ_w², σ_b²)."""

    q_star: Array
    c_star: Array
    chi_1: Array
    chi_c: Array
    xi_q: Array
    xi_c: Array


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _implicit(
    solve: Callable[[tuple], tuple[Array, object]],
    fmap: Callable[[Array, tuple], Array],
    aux: Callable[[Array, tuple], object],
    theta: tuple,
) -> tuple[Array, object]:
    """(x*, aux(x*, θ)) = solve(θ) for an elementwise fixed point x* = fmap(x*, θ).

    The solver is never differentiated: the tangent is the implicit-function theorem's
    ẋ = (∂_θ fmap · θ̇) / (1 - ∂_x fmap), set to 0 where x* is not finite or not stable (slope ≥ 1).
    """
    return solve(theta)


@_implicit.defjvp
def _implicit_jvp(
    solve: Callable[[tuple], tuple[Array, object]],
    fmap: Callable[[Array, tuple], Array],
    aux: Callable[[Array, tuple], object],
    primals: tuple,
    tangents: tuple,
) -> tuple[tuple[Array, object], tuple[Array, object]]:
    (theta,), (theta_dot,) = primals, tangents
    x, extra = solve(theta)
    finite = jnp.isfinite(x)
    xs = jnp.where(finite, x, 1.0)  # keeps every coefficient below finite
    _, f_theta = jax.jvp(lambda th: fmap(xs, th), (theta,), (theta_dot,))
    _, f_x = jax.jvp(lambda y: fmap(y, theta), (xs,), (jnp.ones_like(xs),))
    ok = finite & (f_x < 1)
    x_dot = jnp.where(ok, f_theta / jnp.where(ok, 1 - f_x, 1.0), 0.0)
    _, extra_dot = jax.jvp(aux, (x, theta), (x_dot, theta_dot))
    return (x, extra), (x_dot, extra_dot)


def _q_fixed_point(kernel: GaussianKernel, w2: Array, b2: Array, q0: Array) -> tuple[Array, Moments]:
    """(q*, moments at q* or, where q* = inf, at the last iterate): Newton on q = σ_w² V(q) + σ_b²."""

    def step(q: Array, rule: Rule) -> Array:
        m = kernel.moments(q, rule)
        f = w2 * m.var + b2
        s = w2 * m.var_slope
        newton = s < 1
        qn = q + (f - q) / jnp.where(newton, 1 - s, 1.0)
        ok = newton & jnp.isfinite(qn)
        # Newton from the left of a concave map overshoots far: bound the jump (it then comes back). From
        # the right of a convex one it lands left of the root, possibly below q* ≥ σ_b²: go to σ_b², where
        # g ≥ 0, and converge monotonically from there.
        cap = 4 * jnp.maximum(q, f)
        q_next = jnp.where(ok, jnp.clip(qn, b2, cap), f)
        if kernel.zero_is_fixed:
            # σ_b² = 0: q = 0 is a root of g(q) = f - q. Newton on g/q instead removes it, so that a double
            # root at 0 (critical, e.g. tanh at σ_w² = 1) converges fast. Used where g/q decreases; a step
            # past 0 means no positive root to the left: shrink towards 0.
            qs = _floor(q)
            slope = w2 * (m.var_slope * qs - m.var)  # (g/q)' · q²
            deflate = (b2 == 0) & (slope < 0)
            qd = qs - qs * (f - q) / jnp.where(deflate, slope, -1.0)
            qd = jnp.where(qd > 0, qd, qs / 20)
            q_next = jnp.where(deflate, jnp.minimum(qd, cap), q_next)
        return jnp.clip(q_next, 0.0, _Q_CAP)

    q = jnp.clip(q0, 0.0, _Q_CAP)
    for rule, n_steps in _Q_STEPS:
        q = lax.fori_loop(0, n_steps, lambda _, q, rule=rule: step(q, rule), q)
    if kernel.zero_is_fixed:
        q = jnp.where((b2 == 0) & (q < _ZERO_SNAP), 0.0, q)
    m = kernel.moments(q, _FINE)
    diverged = (q >= _Q_CAP) | ((q > 0) & (w2 * m.var + b2 - q > 1e-4 * q))
    return jnp.where(diverged, jnp.inf, q), m


def _c_fixed_point(corr: CorrelationFn, w2: Array, b2: Array, q: Array) -> Array:
    """Stable root of c = (σ_w² C(c) + σ_b²)/q in [0, 1] by Newton from c = 0 (C is convex in c)."""
    qs = _floor(q)

    def step(_: int, c: Array) -> Array:
        cov, dcov = corr(c)
        g = (w2 * cov + b2) / qs - c
        dg = w2 * dcov - 1
        newton = dg < 0
        cn = jnp.where(newton, c - g / jnp.where(newton, dg, -1.0), c + g)
        return jnp.clip(cn, 0.0, 1.0)

    return lax.fori_loop(0, _C_STEPS, step, jnp.zeros_like(q))


@_theory_program("activation", "with_correlations")
def _solve(
    activation: ActivationLike, w2: Array, b2: Array, q0: Array, *, with_correlations: bool
) -> MeanField:
    kernel = gaussian_kernel(activation)

    def q_map(q: Array, theta: tuple) -> Array:
        return theta[0] * kernel.moments(q, _FINE).var + theta[1]

    def q_aux(q: Array, theta: tuple) -> Moments:
        return kernel.moments(jnp.where(jnp.isfinite(q), q, _Q_LARGE), _FINE)

    q_star, m = _implicit(lambda th: _q_fixed_point(kernel, *th), q_map, q_aux, (w2, b2, q0))
    finite = jnp.isfinite(q_star)
    chi_1 = w2 * m.dvar
    xi_q = jnp.where(finite, depth_scale(w2 * m.var_slope), jnp.inf)
    if not with_correlations:
        nan = jnp.full_like(q_star, jnp.nan)
        return MeanField(q_star, nan, chi_1, nan, xi_q, nan)

    # Ordered points (c* = 1 by convention) solve at q = 1 instead: discarded, but kept finite for gradients.
    ordered = (chi_1 <= 1) | ~finite
    q = _floor(jnp.where(ordered, 1.0, q_star))

    def c_map(c: Array, theta: tuple) -> Array:
        qq, ww, bb, mm = theta
        return (ww * kernel.correlation(qq, mm)(c)[0] + bb) / qq

    def c_aux(c: Array, theta: tuple) -> Array:
        qq, ww, _, mm = theta
        return ww * kernel.correlation(qq, mm)(c)[1]

    def c_solve(theta: tuple) -> tuple[Array, Array]:
        qq, ww, bb, mm = theta
        corr = kernel.correlation(qq, mm)
        c = _c_fixed_point(corr, ww, bb, qq)
        return c, ww * corr(c)[1]

    c, chi_c = _implicit(c_solve, c_map, c_aux, (q, w2, b2, m))
    c_star = jnp.where(ordered, 1.0, c)
    chi_c = jnp.where(ordered, chi_1, chi_c)
    xi_c = jnp.where(finite, depth_scale(chi_c), jnp.inf)
    return MeanField(q_star, c_star, chi_1, chi_c, xi_q, xi_c)


def mean_field(activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0) -> MeanField:
    """All mean-field quantities on a grid at once: q*, c*, χ₁, χ_c, ξ_q, ξ_c.

    ``sigma_w2``, ``sigma_b2``, ``q0`` broadcast to one shape S; every field has shape S. One compiled
    program per (activation, size, dtype); a 300 × 250 grid takes seconds on a CPU.
    """
    return _flat_call(_solve, activation, sigma_w2, sigma_b2, q0, with_correlations=True)


def _length_only(activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array) -> MeanField:
    return _flat_call(_solve, activation, sigma_w2, sigma_b2, q0, with_correlations=False)


def q_star(activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0) -> Array:
    """Fixed point of the length map reached from ``q0`` (inf if the length diverges). Broadcast shape."""
    return _length_only(activation, sigma_w2, sigma_b2, q0).q_star


def chi_1(activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0) -> Array:
    """χ₁ = σ_w² E[φ'(√q* z)²] (its large-q limit where q* = inf). Broadcast shape."""
    return _length_only(activation, sigma_w2, sigma_b2, q0).chi_1


def xi_q(activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0) -> Array:
    """ξ_q = -1/log(χ₁ + σ_w² E[φ''φ]) at q* (inf where q* = inf or at a marginal fixed point)."""
    return _length_only(activation, sigma_w2, sigma_b2, q0).xi_q


def c_star(activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0) -> Array:
    """Stable fixed point of the correlation map at q* (1 in the ordered phase). Broadcast shape."""
    return mean_field(activation, sigma_w2, sigma_b2, q0).c_star


def chi_c(activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0) -> Array:
    """χ_c = σ_w² E[φ'(u₁)φ'(u₂)] at (q*, c*) (= χ₁ in the ordered phase). Broadcast shape."""
    return mean_field(activation, sigma_w2, sigma_b2, q0).chi_c


def xi_c(activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0) -> Array:
    """ξ_c = -1/log χ_c (inf at criticality and where q* = inf). Broadcast shape."""
    return mean_field(activation, sigma_w2, sigma_b2, q0).xi_c
