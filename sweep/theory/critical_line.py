"""The order-to-chaos line χ₁ = 1 in the (σ_w², σ_b²) plane, parametrised by q* or by σ_b².

On the critical line σ_w² = 1/D(q*) and σ_b² = q* - σ_w² V(q*) (``critical_line``);
``order_chaos_boundary`` inverts the second relation for given σ_b² (scan of a log grid in q, then
bisection) and ``critical_sigma_w2`` reads σ_w² off it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from sweep.theory.kernels import ActivationLike, gaussian_kernel
from sweep.theory.maps import gaussian_moments
from sweep.theory.programs import _flat_call, _theory_program
from sweep.theory.quadrature import _FINE, Array


class Boundary(NamedTuple):
    """The order-to-chaos line χ₁ = 1: σ_w²(σ_b²) and q* on it (arrays of the shape of σ_b²)."""

    sigma_w2: Array
    sigma_b2: Array
    q_star: Array


def critical_line(activation: ActivationLike, q: Array) -> tuple[Array, Array]:
    """The critical line parametrised by q* = q: σ_w² = 1/E[φ'(u)²], σ_b² = q - σ_w² E[φ(u)²].

    Shapes: those of ``q``. σ_b² < 0 means that q is not critical for any admissible bias.
    """
    m = gaussian_moments(activation, q)
    w2 = 1 / m.dvar
    return w2, jnp.asarray(q, w2.dtype) - w2 * m.var


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
