"""Gaussian quadrature: expectations over ``u ~ N(0, q)`` and its bivariate form, in ``jax.numpy``.

Every rule here averages a function of a centred Gaussian; the theory modules build their kernels and
maps on them, and nothing else in ``sweep.theory`` writes a quadrature rule of its own.

- ``gaussian_expectation`` / ``_sinh_means`` (the default rule): Gauss–Legendre in t with u = sinh(t),
  split at u = 0, t ∈ [-asinh(L√q), asinh(L√q)]. The rule adapts to q (it resolves structure of φ on the
  scale 1 and the Gaussian's on the scale √q at once) and is exact across a kink at 0. ``_FINE`` (48
  nodes per half-line, L = 10): relative error ≲ 1e-12 for tanh/gelu/relu at 1e-6 ≤ q ≤ 1e4;
  ``_COARSE`` (12, L = 6): ≲ 4e-6, for Newton iterations before a fine polish.
- ``gauss_hermite_1d`` / ``gauss_hermite_2d``: probabilists' Gauss–Hermite (``hermite_rule``), a product
  rule in 2-D. Exact for polynomials but slow to converge for saturating φ at large q (tanh needs ~256
  nodes for 1e-6 at q = 3 and does not reach it at q = 10): kept as independent checks.
- ``_mehler_tables``: the Hermite coefficients a_k = E[f(z) He_k(z)]/√k! of a function by the trapezoid
  rule in z (step 0.1, |z| ≤ 22, K = 96), for Mehler's expansion of bivariate expectations
  (``sweep.theory.kernels``).
- ``normal_gauss_legendre``: a host-side (NumPy, float64) rule for N(0, 1) on [-10, 0] ∪ [0, 10], for the
  law of φ'(h)² in ``sweep.theory.spectral_moments``.

Shapes: results have the shape of ``q`` (broadcast with ``c`` in 2-D); dtypes follow the inputs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

Array = jax.Array

Rule = tuple[int, float]  # (Gauss–Legendre nodes per half-line, half-width L of the rule in units of √q)
_FINE: Rule = (48, 10.0)  # ≲1e-12 relative for tanh/gelu/relu at 1e-6 ≤ q ≤ 1e4
_COARSE: Rule = (12, 6.0)  # ≲4e-6: for the Newton iterations before the fine polish
_MEHLER_K, _MEHLER_H, _MEHLER_L = 96, 0.1, 22.0  # terms, trapezoid step and half-range in z
_NORMAL_Z_MAX = 10.0  # truncation of the standard normal for normal_gauss_legendre (tail < 1e-22)


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


@functools.cache
def normal_gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre rule for ``E[f(z)], z ~ N(0, 1)``, on ``[-10, 0] ∪ [0, 10]`` with ``n`` nodes on each
    half-line (weights sum to 1; NumPy float64, shapes ``[2n]``, nodes increasing). Exact to ~1e-13 for
    smooth integrands and, being split at 0, also across a kink or jump of f there (selu's φ')."""
    t, wt = leggauss(n)
    x = 0.5 * _NORMAL_Z_MAX * (t + 1.0)  # [0, Z]
    w = 0.5 * _NORMAL_Z_MAX * wt * np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
    nodes = np.concatenate([-x[::-1], x])
    weights = np.concatenate([w[::-1], w])
    return nodes, weights / weights.sum()


# ------------------------------------------------------------------------------------- Hermite series
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
