"""One layer of the mean-field maps, their iterates from a given input, and the Gaussian moments of φ.

``length_map`` q ↦ σ_w² V(q) + σ_b² and ``correlation_map`` c ↦ (σ_w² C(q, c) + σ_b²)/q at fixed q; their
iterates over layers (``length_map_iterates``, ``correlation_map_iterates``: compare with the measured
per-layer q^l and c^l at initialisation); ``gaussian_moments`` V(q), V'(q), D(q) = E[φ'(u)²]. Arguments
broadcast; activations as in ``sweep.theory.kernels``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from sweep.theory.kernels import ActivationLike, Moments, gaussian_kernel
from sweep.theory.programs import _flat_call, _theory_program
from sweep.theory.quadrature import _FINE, Array, _floor


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


def gaussian_moments(activation: ActivationLike, q: Array) -> Moments:
    """V(q) = E[φ(u)²], V'(q) and D(q) = E[φ'(u)²] for u ~ N(0, q) (``Moments``), each of the shape of q."""
    return _flat_call(_moments, activation, q)


@_theory_program("activation")
def _moments(activation: ActivationLike, q: Array) -> Moments:
    return gaussian_kernel(activation).moments(q, _FINE)
