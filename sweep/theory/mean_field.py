"""Mean-field signal propagation in wide random networks (Poole et al. 2016; Schoenholz et al. 2017).

Standard parameterization ``W_ij ~ N(0, σ_w²/N)``, ``b_i ~ N(0, σ_b²)``, ``h^l = W^l φ(h^{l-1}) + b^l``;
``z, z₁, z₂ ~ N(0, 1)`` independent, ``u = √q z``, ``u₁ = √q z₁``, ``u₂ = √q (c z₁ + √(1-c²) z₂)``::

    length map        q^l = σ_w² V(q^{l-1}) + σ_b²,   V(q) = E[φ(u)²]              fixed point q*
    correlation map   c^l = (σ_w² C(q*, c^{l-1}) + σ_b²) / q*,   C = E[φ(u₁)φ(u₂)]  fixed point c*
    χ₁  = σ_w² E[φ'(u)²] at q*           (< 1 ordered, > 1 chaotic, = 1 critical)
    χ_c = σ_w² E[φ'(u₁)φ'(u₂)] at (q*, c*)   (= χ₁ when c* = 1)
    ξ_q = -1/log(χ₁ + σ_w² E[φ''(u)φ(u)])  = -1/log(slope of the length map at q*)
    ξ_c = -1/log χ_c

Every function takes an activation as a registry name (``sweep.activations``) or an elementwise callable of
``jax.numpy`` and broadcasts over array arguments; results have the broadcast shape and follow the input
dtype (float64 when ``jax_enable_x64`` is on and the inputs are 64-bit, else float32).

Conventions at the edges (answers, never hangs or NaN):
- q* is the fixed point reached by iterating the length map from ``q0`` (default 1). With σ_b² = 0 and
  φ(0) = 0, q = 0 is a fixed point: it is the answer when it attracts (tanh with σ_w² ≤ 1, where χ₁ = σ_w²);
  otherwise the iteration from q0 > 0 finds the non-zero fixed point.
- No finite fixed point (relu with σ_w² > 2, linear with σ_w² > 1, …): q* = inf, χ₁ is its large-q limit,
  c* = 1, χ_c = χ₁, ξ_q = ξ_c = inf.
- Ordered phase (χ₁ ≤ 1): c* = 1 exactly, χ_c = χ₁, ξ_c = -1/log χ₁. Depth scales are inf where the
  multiplier is ≥ 1 (exactly at criticality ξ_c = inf).

Numerics. Registry activations with closed forms: erf (arcsin kernels), relu (arc-cosine kernel), linear,
hard_tanh (normal CDF/PDF; its 2-D expectations by Price's theorem reduce to one smooth integral over
θ = arcsin c, done by Gauss–Legendre). Every other activation goes through the generic path:
- 1-D expectations: Gauss–Legendre in t with u = sinh(t), split at u = 0, t ∈ [-asinh(10√q), asinh(10√q)].
  The rule adapts to q (resolves scale-1 structure of φ and the Gaussian at once) and is exact across a kink
  at 0; relative error ≲ 1e-12 for tanh/gelu/relu at 1e-6 ≤ q ≤ 1e4 with the default 96 nodes. Plain
  Gauss–Hermite (``gauss_hermite_1d``) is also provided but needs ~256 nodes for 1e-6 at q = 3 and does not
  reach it at q = 10 for tanh.
- 2-D expectations at fixed q: Mehler's expansion C(q, c) = Σ_k a_k² c^k, a_k = E[φ(√q z) He_k(z)]/√k!,
  and E[φ'(u₁)φ'(u₂)] = ∂C/∂c / q (Price's theorem); coefficients by the trapezoid rule in z (h = 0.1,
  |z| ≤ 22), K = 96 terms plus a tail t₀c^p matched to the exact value V and slope q E[φ'²] at c = 1.
  Measured against the erf closed form (max over c ∈ [0, 1]): ≤ 1e-12 for q ≤ 1 and 5e-11 at q = 3;
  3e-7 (C) and 1e-5 (E[φ'φ']) at q = 10, c ≈ 0.98; 4e-5 / 1e-3 at q = 30; < 5e-7 wherever c ≤ 0.9. For φ
  with a kink at 0 (selu) the coefficients are O(h²) ≈ 3e-5 accurate. ``gauss_hermite_2d`` is an
  independent (slower) check.
- Fixed points: a fixed number of safeguarded Newton steps in ``lax.fori_loop`` (25 coarse + 3 fine for
  q*, 25 for c*; no data-dependent loops). q*: Newton on g(q) = σ_w² V(q) + σ_b² - q, a map step where
  Newton would go the wrong way, and with σ_b² = 0 Newton on g(q)/q, which removes the root q = 0 (so the
  double root of tanh at σ_w² = 1 converges fast). c*: Newton from c = 0, which increases monotonically
  to the stable root because C is convex in c. Near χ₁ = 1 in float32, c* and χ_c carry ~1e-3 errors
  (cancellation in m(c) - c); use float64 there.
- Derivatives: the solvers are never differentiated; q*, c* get theirs from the implicit-function theorem
  (``jax.custom_jvp``), so forward and reverse mode are exact at convergence and cheap to compile.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

from sweep.activations import ACTIVATIONS

Array = jax.Array
ActivationLike = str | Callable[[Array], Array]

Rule = tuple[int, float]  # (Gauss–Legendre nodes per half-line, half-width L of the rule in units of √q)
_FINE: Rule = (48, 10.0)  # ≲1e-12 relative for tanh/gelu/relu at 1e-6 ≤ q ≤ 1e4
_COARSE: Rule = (12, 6.0)  # ≲4e-6: for the Newton iterations before the fine polish
_MEHLER_K, _MEHLER_H, _MEHLER_L = 96, 0.1, 22.0  # terms, trapezoid step and half-range in z
_HT_NODES = 32  # Gauss–Legendre nodes for hard_tanh's Price integral
_Q_STEPS = ((_COARSE, 25), (_FINE, 3))  # (rule, Newton steps) for q*
_C_STEPS = 25  # Newton steps for c*
_ZERO_SNAP = 1e-10  # q* below this is 0 when q = 0 is itself a fixed point
_Q_CAP = 1e30  # iterates of a diverging length map stop here; reported as q* = inf
_Q_LARGE = 1e12  # stand-in for q* = inf when differentiating (tangents there are 0)


# ----------------------------------------------------------------------------------------------- helpers
def _float_dtype(*xs: object) -> jnp.dtype:
    """The floating dtype of the inputs (default float when none is floating)."""
    dt = jnp.result_type(*[jnp.asarray(x) for x in xs])
    return dt if jnp.issubdtype(dt, jnp.floating) else jnp.asarray(0.0).dtype


def _inputs(*xs: object) -> tuple[Array, ...]:
    """Cast to one float dtype and broadcast to one shape."""
    dt = _float_dtype(*xs)
    return tuple(jnp.broadcast_arrays(*[jnp.asarray(x, dt) for x in xs]))


def _floor(x: Array) -> Array:
    """max(x, tiny) with tiny = (smallest normal)^0.4 of the dtype (1e-123 / 5e-16): squares and
    reciprocals of the result stay finite, so derivatives near q = 0 or c = 0 are finite too."""
    return jnp.maximum(x, float(jnp.finfo(x.dtype).tiny) ** 0.4)


def _const(a: np.ndarray, ndim: int, dtype: jnp.dtype) -> Array:
    """A NumPy constant with ``ndim`` leading unit axes, so it broadcasts without rank promotion."""
    return jnp.asarray(a, dtype).reshape((1,) * ndim + a.shape)


def _derivatives(phi: Callable[[Array], Array], u: Array) -> tuple[Array, Array, Array]:
    """(φ, φ', φ'') at ``u`` for an elementwise φ, by nested forward-mode differentiation."""
    ones = jnp.ones_like(u)

    def first(x: Array) -> tuple[Array, Array]:
        return jax.jvp(phi, (x,), (ones,))

    (f, f1), (_, f2) = jax.jvp(first, (u,), (ones,))
    return f, f1, f2


def depth_scale(chi: Array) -> Array:
    """ξ = -1/log|χ| for |χ| < 1, inf for |χ| ≥ 1 (0 at χ = 0). Same shape as ``chi``."""
    chi = jnp.abs(jnp.asarray(chi))
    below = chi < 1
    safe = jnp.where(below, chi, 0.5)
    return jnp.where(below, -1.0 / jnp.log(safe), jnp.inf)


# -------------------------------------------------------------------------------------------- quadrature
@functools.cache
def hermite_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss–Hermite nodes and weights normalised to sum to 1: E[f(z)] ≈ Σ w f(x).

    Shapes ``[n]``, float64. Exact for polynomials of degree < 2n.
    """
    x, w = hermegauss(n)
    return x, w / w.sum()


def gauss_hermite_1d(f: Callable[[Array], Array], q: Array, n: int = 64) -> Array:
    """E[f(√q z)], z ~ N(0,1), by n-node Gauss–Hermite. ``f`` elementwise; result has the shape of ``q``.

    Accurate for f smooth on the scale √q (small q or polynomial-like f); see the module docstring.
    """
    q = jnp.asarray(q, _float_dtype(q))
    x, w = hermite_rule(n)
    u = jnp.sqrt(q)[..., None] * _const(x, q.ndim, q.dtype)
    return jnp.sum(_const(w, q.ndim, q.dtype) * f(u), axis=-1)


def gauss_hermite_2d(f: Callable[[Array, Array], Array], q: Array, c: Array, n: int = 48) -> Array:
    """E[f(u₁, u₂)] for u₁ = √q z₁, u₂ = √q (c z₁ + √(1-c²) z₂) by an n×n Gauss–Hermite product rule.

    ``f(u1, u2)`` elementwise; ``q`` and ``c`` broadcast; the result has their broadcast shape.
    """
    q, c = _inputs(q, c)
    x, w = hermite_rule(n)
    nd = q.ndim
    z1 = _const(x[:, None], nd, q.dtype)
    z2 = _const(x[None, :], nd, q.dtype)
    ww = _const(np.outer(w, w), nd, q.dtype)
    rq = jnp.sqrt(q)[..., None, None]
    cc = c[..., None, None]
    s = jnp.sqrt(jnp.maximum(1 - cc * cc, 0.0))
    return jnp.sum(ww * f(rq * z1, rq * (cc * z1 + s * z2)), axis=(-2, -1))


@functools.cache
def _sinh_legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes on [-1, 0] and [0, 1] (m each): shapes [2m]."""
    x, w = leggauss(m)
    return np.concatenate([(x - 1) / 2, (x + 1) / 2]), np.concatenate([w / 2, w / 2])


def _sinh_means(
    q: Array, rule: Rule, integrands: Callable[[Array], tuple[Array, ...]], n_out: int
) -> tuple[Array, ...]:
    """E[g(u)], u ~ N(0, q), for each of the ``n_out`` elementwise integrands returned by ``integrands(u)``.

    Rule: see the module docstring. Nodes are visited in blocks of 8 inside a ``fori_loop`` so that no
    ``[..., n]`` intermediate is materialised (XLA on CPU would materialise one per reduction otherwise).
    Weights are normalised to sum to one. Results have the shape of ``q``.
    """
    half, width = rule
    tau, w = _sinh_legendre(half)
    block = math.gcd(8, tau.size)
    taus = jnp.asarray(tau.reshape(-1, block), q.dtype)
    ws = jnp.asarray(w.reshape(-1, block), q.dtype)
    lift = (1,) * q.ndim + (block,)
    qs = _floor(q)[..., None]
    t_max = jnp.arcsinh(width * jnp.sqrt(qs))

    def body(j: Array, acc: tuple[Array, ...]) -> tuple[Array, ...]:
        e = jnp.exp(t_max * lax.dynamic_index_in_dim(taus, j, keepdims=False).reshape(lift))
        u = 0.5 * (e - 1 / e)  # sinh t and cosh t from one exponential
        weight = lax.dynamic_index_in_dim(ws, j, keepdims=False).reshape(lift) * (e + 1 / e)
        weight = weight * jnp.exp(-0.5 * u * u / qs)
        values = (jnp.ones_like(u), *integrands(u))
        return tuple(a + jnp.sum(weight * v, axis=-1) for a, v in zip(acc, values, strict=True))

    zero = jnp.zeros_like(q)
    total, *sums = lax.fori_loop(0, taus.shape[0], body, (zero,) * (n_out + 1))
    return tuple(x / total for x in sums)


def gaussian_expectation(f: Callable[[Array], Array], q: Array, n: int = 2 * _FINE[0]) -> Array:
    """E[f(u)], u ~ N(0, q), by the sinh-mapped Gauss–Legendre rule with ``n`` (even) nodes.

    ``f`` elementwise (a kink at u = 0 is integrated exactly); result has the shape of ``q``.
    """
    q = jnp.asarray(q, _float_dtype(q))
    return _sinh_means(q, (n // 2, _FINE[1]), lambda u: (f(u),), 1)[0]


# --------------------------------------------------------------------------------------------- kernels
class Moments(NamedTuple):
    """1-D Gaussian moments of φ at variance q (each with the shape of q)."""

    var: Array  # V(q) = E[φ(u)²]
    var_slope: Array  # V'(q) = E[φ'(u)² + φ(u)φ''(u)]
    dvar: Array  # D(q) = E[φ'(u)²]


CorrelationFn = Callable[[Array], tuple[Array, Array]]  # c -> (E[φ(u₁)φ(u₂)], E[φ'(u₁)φ'(u₂)])


class GaussianKernel(NamedTuple):
    """Gaussian expectations of one activation, as pure functions."""

    name: str
    moments: Callable[[Array, Rule], Moments]  # (q, quadrature rule if one is used) -> Moments
    correlation: Callable[..., CorrelationFn]  # (q[, moments at q]) -> (c -> (C, C')) at that fixed q
    zero_is_fixed: bool  # φ(0) = 0: q = 0 is a fixed point when σ_b² = 0
    critical_sigma_w2: float | None = None  # χ₁ independent of q: the critical σ_w² is this constant


def _erf_kernel() -> GaussianKernel:
    def moments(q: Array, rule: Rule = _FINE) -> Moments:
        r = 1 + 4 * q
        return Moments(
            var=(2 / math.pi) * jnp.arcsin(2 * q / (1 + 2 * q)),
            var_slope=4 / (math.pi * (1 + 2 * q) * jnp.sqrt(r)),
            dvar=(4 / math.pi) / jnp.sqrt(r),
        )

    def correlation(q: Array, m: Moments | None = None) -> CorrelationFn:
        def fn(c: Array) -> tuple[Array, Array]:
            cov = (2 / math.pi) * jnp.arcsin(2 * q * c / (1 + 2 * q))
            dcov = (4 / math.pi) / jnp.sqrt((1 + 2 * q) ** 2 - 4 * q * q * c * c)
            return cov, dcov

        return fn

    return GaussianKernel("erf", moments, correlation, zero_is_fixed=True)


def _relu_kernel() -> GaussianKernel:
    def moments(q: Array, rule: Rule = _FINE) -> Moments:
        one_half = jnp.full_like(q, 0.5)
        return Moments(var=q / 2, var_slope=one_half, dvar=one_half)

    def correlation(q: Array, m: Moments | None = None) -> CorrelationFn:
        def fn(c: Array) -> tuple[Array, Array]:
            s = jnp.sqrt(_floor(1 - c * c))
            theta = jnp.arctan2(s, c)  # arccos c with a finite derivative at c = 1
            cov = q / (2 * math.pi) * (s + (math.pi - theta) * c)
            return cov, (math.pi - theta) / (2 * math.pi)

        return fn

    return GaussianKernel("relu", moments, correlation, zero_is_fixed=True, critical_sigma_w2=2.0)


def _linear_kernel() -> GaussianKernel:
    def moments(q: Array, rule: Rule = _FINE) -> Moments:
        one = jnp.ones_like(q)
        return Moments(var=q, var_slope=one, dvar=one)

    def correlation(q: Array, m: Moments | None = None) -> CorrelationFn:
        return lambda c: (q * c, jnp.ones_like(c * q))

    return GaussianKernel("linear", moments, correlation, zero_is_fixed=True, critical_sigma_w2=1.0)


def _hard_tanh_kernel() -> GaussianKernel:
    """clip(u, -1, 1). With a = 1/√q and p the standard normal pdf: D = erf(a/√2), E[φφ''] = -2a p(a),
    V = q D - 2√q p(a) + erfc(a/√2). By Price's theorem ∂E[φ'φ']/∂c = q E[φ''φ''], a sum of bivariate
    densities at (±1, ±1); with c = sin t the resulting integral over t is smooth (Gauss–Legendre)."""

    def moments(q: Array, rule: Rule = _FINE) -> Moments:
        qs = _floor(q)
        a = 1 / jnp.sqrt(qs)
        pdf = jnp.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
        dvar = jax.scipy.special.erf(a / math.sqrt(2))
        var = qs * dvar - 2 * jnp.sqrt(qs) * pdf + jax.scipy.special.erfc(a / math.sqrt(2))
        return Moments(var=var, var_slope=dvar - 2 * a * pdf, dvar=dvar)

    def correlation(q: Array, m: Moments | None = None) -> CorrelationFn:
        qs = _floor(q)
        d0 = jax.scipy.special.erf(1 / jnp.sqrt(2 * qs)) ** 2  # E[φ'(u₁)φ'(u₂)] at c = 0
        x, w = leggauss(_HT_NODES)

        def fn(c: Array) -> tuple[Array, Array]:
            theta = jnp.arcsin(jnp.clip(c, -1, 1))[..., None]
            t = theta * _const((x + 1) / 2, c.ndim, c.dtype)
            wt = theta * _const(w / 2, c.ndim, c.dtype)
            s = jnp.sin(t)
            qn = qs[..., None]
            g = (jnp.exp(-1 / (qn * (1 + s))) - jnp.exp(-1 / (qn * _floor(1 - s)))) / math.pi
            dcov = d0 + jnp.sum(wt * g, axis=-1)
            cov = qs * (c * d0 + jnp.sum(wt * (c[..., None] - s) * g, axis=-1))
            return cov, dcov

        return fn

    return GaussianKernel("hard_tanh", moments, correlation, zero_is_fixed=True)


@functools.cache
def _mehler_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trapezoid nodes z ≥ 0 [n] and matrices M_even [n, K/2], M_odd [n, K/2] such that, with
    E_j = f(z_j) + f(-z_j) and O_j = f(z_j) - f(-z_j), a_2i = E @ M_even and a_2i+1 = O @ M_odd are
    E[f(z) He_k(z)]/√k! (the grid is symmetric and He_k has parity k, which quarters the work).

    Built from √w_j·He_k(z_j)/√k! by the normalised three-term recurrence (bounded, no overflow).
    """
    z = _MEHLER_H * np.arange(round(_MEHLER_L / _MEHLER_H) + 1)
    sw = np.sqrt(_MEHLER_H * np.exp(-z * z / 2) / math.sqrt(2 * math.pi))
    table = np.zeros((z.size, _MEHLER_K))
    prev, cur = np.zeros_like(z), sw.copy()
    for k in range(_MEHLER_K):
        table[:, k] = sw * cur
        prev, cur = cur, (z * cur - math.sqrt(k) * prev) / math.sqrt(k + 1)
    table[0] /= 2  # z = 0 appears once in the full grid but twice in E
    return z, table[:, 0::2], table[:, 1::2]


def _horner(coef: Array, x: Array) -> Array:
    """Σ_k coef[..., k] x^k for coef [..., K] and x [...] (unrolled; fuses into one loop)."""
    y = coef[..., -1]
    for k in range(coef.shape[-1] - 2, -1, -1):
        y = y * x + coef[..., k]
    return y


def _generic_kernel(name: str, phi: Callable[[Array], Array]) -> GaussianKernel:
    def integrands(u: Array) -> tuple[Array, Array, Array]:
        f, f1, f2 = _derivatives(phi, u)
        return f * f, f1 * f1 + f * f2, f1 * f1

    def moments(q: Array, rule: Rule = _FINE) -> Moments:
        return Moments(*_sinh_means(q, rule, integrands, 3))

    def correlation(q: Array, m: Moments | None = None) -> CorrelationFn:
        z, m_even, m_odd = _mehler_tables()
        dt = q.dtype
        u = jnp.sqrt(_floor(q))[..., None] * _const(z, q.ndim, dt)
        plus, minus = phi(u), phi(-u)
        even = jnp.matmul(plus + minus, jnp.asarray(m_even, dt)) ** 2  # a_2i², [..., K/2]
        odd = jnp.matmul(plus - minus, jnp.asarray(m_odd, dt)) ** 2  # a_2i+1²
        i = _const(np.arange(_MEHLER_K // 2, dtype=np.float64), q.ndim, dt)
        d_even = (2 * i * even)[..., 1:]  # d/dc Σ a_2i² c^2i = c Σ_i≥1 2i a_2i² (c²)^(i-1)
        d_odd = (2 * i + 1) * odd  # d/dc Σ a_2i+1² c^2i+1 = Σ (2i+1) a_2i+1² (c²)^i
        # Tail Σ_{k≥K} a_k² c^k ≈ t0 c^p, matching its value V and slope q E[φ'²] at c = 1 (Price).
        m = moments(q) if m is None else m
        t0 = jnp.maximum(m.var - jnp.sum(even, -1) - jnp.sum(odd, -1), 0.0)
        t1 = q * m.dvar - jnp.sum(d_even, -1) - jnp.sum(d_odd, -1)
        pos = t0 > 0
        p = jnp.clip(jnp.where(pos, t1 / jnp.where(pos, t0, 1.0), _MEHLER_K), _MEHLER_K, 1e6)
        qs = _floor(q)

        def fn(c: Array) -> tuple[Array, Array]:
            c2 = c * c
            tail = t0 * _floor(c) ** (p - 1)
            cov = _horner(even, c2) + c * _horner(odd, c2) + c * tail
            dcov = (c * _horner(d_even, c2) + _horner(d_odd, c2) + p * tail) / qs  # Price: ∂C/∂c = q E[φ'φ']
            return cov, dcov

        return fn

    with jax.ensure_compile_time_eval():
        zero = bool(phi(jnp.zeros((), jnp.float32)) == 0.0)
    return GaussianKernel(name, moments, correlation, zero_is_fixed=zero)


_CLOSED_FORMS: dict[str, Callable[[], GaussianKernel]] = {
    "erf": _erf_kernel,
    "relu": _relu_kernel,
    "linear": _linear_kernel,
    "hard_tanh": _hard_tanh_kernel,
}


@functools.cache
def gaussian_kernel(activation: ActivationLike) -> GaussianKernel:
    """The Gaussian expectations of ``activation``: closed forms for erf, relu, linear, hard_tanh (by
    name); the generic quadrature path for other names and for any callable (even a registry function).
    Unknown names raise KeyError listing the choices."""
    if isinstance(activation, str):
        if activation in _CLOSED_FORMS:
            return _CLOSED_FORMS[activation]()
        if activation not in ACTIVATIONS:
            raise KeyError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        return _generic_kernel(activation, ACTIVATIONS[activation])
    if not callable(activation):
        raise TypeError(f"activation must be a name or a callable, got {activation!r}")
    return _generic_kernel(getattr(activation, "__name__", "custom"), activation)


# ------------------------------------------------------------------------------------------ fixed points
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


_QUICK_COMPILE = {"xla_backend_optimization_level": 0}


class _TheoryProgram:
    """A theory function jitted twice: as usual, and without LLVM optimisation for small inputs.

    Compiling a theory program takes seconds on a CPU; for the few hundred points a sweep's predictions
    need, an unoptimised program compiles ~1.5x faster and still runs in milliseconds. Large grids
    (plots, ``sweep theory``) and calls from inside another trace (which may not carry compiler options)
    get the optimised program, which runs ~3x faster.
    """

    def __init__(self, fn: Callable, static_argnames: tuple[str, ...]):
        self.optimised = jax.jit(fn, static_argnames=static_argnames)
        self.quick = jax.jit(fn, static_argnames=static_argnames, compiler_options=_QUICK_COMPILE)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.optimised(*args, **kwargs)


def _theory_program(*static_argnames: str) -> Callable[[Callable], _TheoryProgram]:
    return lambda fn: _TheoryProgram(fn, static_argnames)


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


_BUCKET_MAX = 4096  # inputs up to this size are padded to a power of two: fewer distinct programs


def _flat_call(
    fn: Callable[..., object], activation: ActivationLike, *args: object, **static: object
) -> object:
    """Validate ``activation``, cast and broadcast ``args``, flatten them (small sizes padded to a power of
    two so that nearby sizes share one compiled program), call ``fn`` and restore the broadcast shape on
    every output (outputs may have trailing axes)."""
    gaussian_kernel(activation)  # raises KeyError / TypeError before any tracing
    arrays = _inputs(*args)
    shape = arrays[0].shape
    n = math.prod(shape)
    size = n if n > _BUCKET_MAX else max(8, 1 << max(n - 1, 0).bit_length())
    flat = [a.reshape(-1) for a in arrays]
    if size > n:
        flat = [
            jnp.concatenate([a, jnp.broadcast_to(a[-1:] if n else jnp.ones((1,), a.dtype), (size - n,))])
            for a in flat
        ]
    traced = any(isinstance(a, jax.core.Tracer) for a in flat)  # inside jit/grad: a nested jit
    program = fn.quick if isinstance(fn, _TheoryProgram) and size <= _BUCKET_MAX and not traced else fn
    out = program(activation, *flat, **static)
    return jax.tree.map(lambda x: x[:n].reshape(shape + x.shape[1:]), out)


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


# ------------------------------------------------------------------------------------------------- maps
@_theory_program("activation")
def _maps(activation: ActivationLike, q: Array, c: Array, w2: Array, b2: Array) -> tuple[Array, Array]:
    kernel = gaussian_kernel(activation)
    q_next = w2 * kernel.moments(q, _FINE).var + b2
    return q_next, (w2 * kernel.correlation(q)(c)[0] + b2) / _floor(q)


def length_map(activation: ActivationLike, q: Array, sigma_w2: Array, sigma_b2: Array) -> Array:
    """One layer of the length map σ_w² E[φ(√q z)²] + σ_b². Broadcast shape."""
    return _flat_call(_maps, activation, q, 1.0, sigma_w2, sigma_b2)[0]


def correlation_map(
    activation: ActivationLike, c: Array, q: Array, sigma_w2: Array, sigma_b2: Array
) -> Array:
    """One layer of the correlation map at fixed length q: (σ_w² E[φ(u₁)φ(u₂)] + σ_b²)/q. Broadcast shape."""
    return _flat_call(_maps, activation, q, c, sigma_w2, sigma_b2)[1]


@_theory_program("activation", "n_layers", "correlations")
def _iterates(
    activation: ActivationLike, w2: Array, b2: Array, q0: Array, c0: Array, n_layers: int, correlations: bool
) -> tuple[Array, Array]:
    kernel = gaussian_kernel(activation)

    def layer(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
        q, c = carry
        q_next = w2 * kernel.moments(q, _FINE).var + b2
        if correlations:
            cov = kernel.correlation(q)(c)[0]
            c = jnp.clip((w2 * cov + b2) / _floor(q_next), -1.0, 1.0)
        return (q_next, c), (q_next, c)

    qs, cs = lax.scan(layer, (q0, c0), None, length=n_layers)[1]
    return qs.T, cs.T  # [n, n_layers]


def length_map_iterates(
    activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array, n_layers: int
) -> Array:
    """q^l for l = 1..n_layers starting from q^0 = ``q0`` (e.g. the input's mean squared entry).

    Shape: broadcast shape of the inputs + ``[n_layers]``; compare with measured per-layer q at init.
    """
    out = _flat_call(
        _iterates, activation, sigma_w2, sigma_b2, q0, 1.0, n_layers=int(n_layers), correlations=False
    )
    return out[0]


def correlation_map_iterates(
    activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, c0: Array, q0: Array, n_layers: int
) -> tuple[Array, Array]:
    """(q^l, c^l) for l = 1..n_layers for two inputs of equal length ``q0`` and correlation ``c0``.

    Shapes: broadcast shape + ``[n_layers]`` each. Uses the joint map q^l = σ_w² V(q^{l-1}) + σ_b²,
    c^l = (σ_w² C(q^{l-1}, c^{l-1}) + σ_b²)/q^l; start at q0 = q* to follow the correlation map alone.
    """
    return _flat_call(
        _iterates, activation, sigma_w2, sigma_b2, q0, c0, n_layers=int(n_layers), correlations=True
    )


# -------------------------------------------------------------------------------------- critical line
class Boundary(NamedTuple):
    """The order-to-chaos line χ₁ = 1: σ_w²(σ_b²) and q* on it (arrays of the shape of σ_b²)."""

    sigma_w2: Array
    sigma_b2: Array
    q_star: Array


def gaussian_moments(activation: ActivationLike, q: Array) -> Moments:
    """V(q) = E[φ(u)²], V'(q) and D(q) = E[φ'(u)²] for u ~ N(0, q) (``Moments``), each of the shape of q."""
    return _flat_call(_moments, activation, q)


def critical_line(activation: ActivationLike, q: Array) -> tuple[Array, Array]:
    """The critical line parametrised by q* = q: σ_w² = 1/E[φ'(u)²], σ_b² = q - σ_w² E[φ(u)²].

    Shapes: those of ``q``. σ_b² < 0 means that q is not critical for any admissible bias.
    """
    m = gaussian_moments(activation, q)
    w2 = 1 / m.dvar
    return w2, jnp.asarray(q, w2.dtype) - w2 * m.var


@_theory_program("activation")
def _moments(activation: ActivationLike, q: Array) -> Moments:
    return gaussian_kernel(activation).moments(q, _FINE)


_CRIT_GRID = np.concatenate([[0.0], np.geomspace(1e-8, 1e8, 160)])
_BISECT_STEPS = 60


@_theory_program("activation")
def _boundary(activation: ActivationLike, b2: Array) -> Boundary:
    kernel = gaussian_kernel(activation)
    if kernel.critical_sigma_w2 is not None:
        w2 = jnp.full_like(b2, kernel.critical_sigma_w2)
        return Boundary(w2, b2, jnp.where(b2 == 0, 0.0, jnp.inf))

    def excess(q: Array) -> Array:  # σ_b² on the critical line at q*, minus the target
        m = kernel.moments(q, _FINE)
        return q - m.var / m.dvar - b2

    grid = jnp.asarray(_CRIT_GRID, b2.dtype)
    m = kernel.moments(grid, _FINE)
    h = (grid - m.var / m.dvar).reshape((1,) * b2.ndim + grid.shape) - b2[..., None]
    crossing = (h[..., :-1] <= 0) & (h[..., 1:] > 0)
    found = jnp.any(crossing, axis=-1)
    idx = jnp.argmax(crossing, axis=-1)
    lo, hi = grid[idx], grid[idx + 1]

    def bisect(_: int, bracket: tuple[Array, Array]) -> tuple[Array, Array]:
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = excess(mid) <= 0
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = lax.fori_loop(0, _BISECT_STEPS, bisect, (lo, hi))
    q = 0.5 * (lo + hi)
    w2 = 1 / kernel.moments(q, _FINE).dvar
    return Boundary(jnp.where(found, w2, jnp.nan), b2, jnp.where(found, q, jnp.nan))


def order_chaos_boundary(activation: ActivationLike, sigma_b2: Array) -> Boundary:
    """The order-to-chaos boundary σ_w²(σ_b²) (χ₁ = 1) for an array of σ_b², with q* on it.

    Solves σ_b² = q - V(q)/D(q) for the smallest q ≥ 0 (scan of a log grid 1e-8..1e8, then bisection),
    σ_w² = 1/D(q). NaN where no critical point exists in that range. relu and linear have χ₁ independent of
    q*: their line is σ_w² = 2 (resp. 1) for every σ_b², a true fixed point only at σ_b² = 0 (q* = inf
    on it otherwise; at σ_b² = 0 every q is fixed and 0 is reported).
    """
    return _flat_call(_boundary, activation, sigma_b2)


def critical_sigma_w2(activation: ActivationLike, sigma_b2: Array) -> Array:
    """σ_w² with χ₁ = 1 at the given σ_b² (shape of ``sigma_b2``); see ``order_chaos_boundary``."""
    return order_chaos_boundary(activation, sigma_b2).sigma_w2
