"""Gaussian kernels of activations: the expectations of φ, φ' and φ'' over Gaussian inputs.

A ``GaussianKernel`` bundles, for one activation, the 1-D moments at variance q (``Moments``: V(q) =
E[φ(u)²], V'(q), D(q) = E[φ'(u)²], u ~ N(0, q)) and, at fixed q, the correlation function
c ↦ (C(q, c), E[φ'(u₁)φ'(u₂)]) with C = E[φ(u₁)φ(u₂)], u₁ = √q z₁, u₂ = √q (c z₁ + √(1-c²) z₂).
The activations themselves live in ``sweep.nets.activations``; this module holds what the theory knows of
their Gaussian averages, and is the only place that does.

Closed forms (by registry name): erf (arcsin kernels), relu (arc-cosine kernel), linear, hard_tanh (normal
CDF/PDF; its 2-D expectations by Price's theorem reduce to one smooth integral over θ = arcsin c, done by
Gauss–Legendre). Every other activation, and any callable, goes through the generic path:

- 1-D moments by the sinh-mapped Gauss–Legendre rule of ``sweep.theory.quadrature`` (φ', φ'' by nested
  forward-mode differentiation).
- 2-D expectations at fixed q: Mehler's expansion C(q, c) = Σ_k a_k² c^k, a_k = E[φ(√q z) He_k(z)]/√k!,
  and E[φ'(u₁)φ'(u₂)] = ∂C/∂c / q (Price's theorem); coefficients by the trapezoid rule in z (h = 0.1,
  |z| ≤ 22), K = 96 terms plus a tail t₀c^p matched to the exact value V and slope q E[φ'²] at c = 1.
  Measured against the erf closed form (max over c ∈ [0, 1]): ≤ 1e-12 for q ≤ 1 and 5e-11 at q = 3;
  3e-7 (C) and 1e-5 (E[φ'φ']) at q = 10, c ≈ 0.98; 4e-5 / 1e-3 at q = 30; < 5e-7 wherever c ≤ 0.9. For φ
  with a kink at 0 (selu) the coefficients are O(h²) ≈ 3e-5 accurate. ``gauss_hermite_2d`` is an
  independent (slower) check.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial.legendre import leggauss

from sweep.nets.activations import ACTIVATIONS
from sweep.theory.quadrature import (
    _FINE,
    _MEHLER_K,
    Array,
    Rule,
    _const,
    _floor,
    _mehler_tables,
    _sinh_means,
)

ActivationLike = str | Callable[[Array], Array]

_HT_NODES = 32  # Gauss–Legendre nodes for hard_tanh's Price integral


def _derivatives(phi: Callable[[Array], Array], u: Array) -> tuple[Array, Array, Array]:
    """(φ, φ', φ'') at ``u`` for an elementwise φ, by nested forward-mode differentiation."""
    ones = jnp.ones_like(u)

    def first(x: Array) -> tuple[Array, Array]:
        return jax.jvp(phi, (x,), (ones,))

    (f, f1), (_, f2) = jax.jvp(first, (u,), (ones,))
    return f, f1, f2


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
