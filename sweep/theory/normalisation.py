"""Mean field of normalised networks at initialisation (``model.norm``; Yang et al. 2019).

Write ``z ~ N(0, 1)``, ``V = E[phi(z)^2]``, ``D = E[phi'(z)^2]``, ``M = E[phi(z)]`` and, for unit
Gaussians ``u1, u2`` of correlation c, ``C(c) = E[phi(u1) phi(u2)]``, ``C'(c) = E[phi'(u1) phi'(u2)]``
(``mean_field.gaussian_kernel`` at q = 1: a normalised pre-activation has unit variance).

Batch norm, ``x^l = phi(BN(W x^{l-1}))`` over minibatches of B rows (gain 1, offset 0, biased batch
variance): the squared gradient norm grows toward the input by a factor per layer that no sigma_w2 or
sigma_b2 removes (the normalisation cancels them):

- linear phi, exactly (B >= 4; infinite below): ``(B - 2) / (B - 3)``: 2 at B = 4, 1.2 at 8, 1.077 at 16;
- any phi as B grows: ``D / (V - M^2) = E[phi'(z)^2] / Var phi(z) >= 1`` (equality only for affine
  phi): relu ``pi / (pi - 1) = 1.467``, tanh 1.178. For a nonlinear phi at finite B there is no closed
  form: ``batch_norm_growth`` gives this limit (``exact`` False).

Layer norm normalises each example over its N units. As N grows the mean over units of ``x W + b``
vanishes and its mean square is ``s = sigma_w2 V + sigma_b2``, so ``N(h) = h / sqrt(s)``: q^l = 1 at every
layer, whatever sigma_w2, and the correlation of two inputs follows

    c^{l+1} = (sigma_w2 C(c^l) + sigma_b2) / s,

with slope ``chi_1 = sigma_w2 D / s`` at c = 1: the backward factor per layer of the squared gradient
(the normalisation's Jacobian removes one direction of N, a 1/N effect). ``chi_1 < 1`` ordered
(c* = 1), ``> 1`` chaotic (c* < 1), critical where ``sigma_w2 (D - V) = sigma_b2``: tanh (D > V) is
chaotic for every sigma_w2 above ``sigma_b2 / (D - V)`` and its gradients grow by up to ``D / V =
1.178`` per layer; relu and linear (D = V) are ordered for sigma_b2 > 0 and critical at sigma_b2 = 0.
The correlation depth scale is ``xi_c = -1 / log(chi_c)``, ``chi_c = sigma_w2 C'(c*) / s``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep.nets.activations import get_activation
from sweep.theory.mean_field import gaussian_expectation, gaussian_kernel

C_ITERATIONS = 2000  # iterations of the correlation map toward c* (a contraction off criticality)


class UnitMoments(NamedTuple):
    """``V = E[phi(z)^2]``, ``D = E[phi'(z)^2]`` and ``M = E[phi(z)]`` for z ~ N(0, 1)."""

    var: float
    dvar: float
    mean: float


def unit_moments(activation: str) -> UnitMoments:
    """The moments of ``activation`` at unit variance (float64)."""
    with jax.enable_x64(True):
        one = jnp.float64(1.0)
        moments = gaussian_kernel(activation).moments(one)
        mean = gaussian_expectation(get_activation(activation), one)
        return UnitMoments(float(moments.var), float(moments.dvar), float(mean))


class BatchNormGrowth(NamedTuple):
    growth: float  # factor per layer of the squared gradient norm toward the input
    exact: bool  # True: (B - 2) / (B - 3) of a linear net; False: the large-batch limit


def batch_norm_growth(activation: str, batch_size: int) -> BatchNormGrowth:
    """The batch-norm gradient growth per layer at minibatches of ``batch_size`` rows."""
    if activation == "linear":
        b = batch_size
        return BatchNormGrowth((b - 2) / (b - 3) if b > 3 else math.inf, True)
    m = unit_moments(activation)
    return BatchNormGrowth(m.dvar / (m.var - m.mean**2), False)


class LayerNormField(NamedTuple):
    """The layer-norm mean field of one (activation, sigma_w2, sigma_b2); q is 1 at every layer."""

    chi_1: float  # slope of the correlation map at c = 1: squared-gradient factor per layer
    c_star: float  # fixed point of the correlation map (1 in the ordered phase)
    chi_c: float  # slope at c*
    xi_c: float  # -1 / log(chi_c): inf at criticality


def layer_norm_c_map(activation: str, sigma_w2: float, sigma_b2: float, c: np.ndarray) -> np.ndarray:
    """One layer of the correlation map, ``(sigma_w2 C(c) + sigma_b2) / (sigma_w2 V + sigma_b2)``."""
    with jax.enable_x64(True):
        kernel = gaussian_kernel(activation)
        one = jnp.float64(1.0)
        cov = kernel.correlation(one, kernel.moments(one))(jnp.asarray(c, jnp.float64))[0]
        s = sigma_w2 * kernel.moments(one).var + sigma_b2
        return np.asarray((sigma_w2 * cov + sigma_b2) / s)


def layer_norm_mean_field(activation: str, sigma_w2: float, sigma_b2: float) -> LayerNormField:
    """chi_1, c*, chi_c and xi_c of a layer-normalised network (module docstring)."""
    m = unit_moments(activation)
    s = sigma_w2 * m.var + sigma_b2
    chi_1 = sigma_w2 * m.dvar / s
    if chi_1 <= 1:
        return LayerNormField(chi_1, 1.0, chi_1, _depth_scale(chi_1))
    with jax.enable_x64(True):
        kernel = gaussian_kernel(activation)
        one = jnp.float64(1.0)
        correlation = kernel.correlation(one, kernel.moments(one))
        step = lambda _, c: jnp.clip((sigma_w2 * correlation(c)[0] + sigma_b2) / s, -1.0, 1.0)  # noqa: E731
        c_star = jax.lax.fori_loop(0, C_ITERATIONS, step, jnp.float64(0.0))
        chi_c = float(sigma_w2 * correlation(c_star)[1] / s)
    return LayerNormField(chi_1, float(c_star), chi_c, _depth_scale(chi_c))


def layer_norm_critical_sigma_w2(activation: str, sigma_b2: float) -> float:
    """The sigma_w2 where chi_1 = 1, ``sigma_b2 / (D - V)``; inf where there is none (D <= V, sigma_b2 > 0)
    and 0 for sigma_b2 = 0 with D > V (chaotic at every sigma_w2)."""
    m = unit_moments(activation)
    gap = m.dvar - m.var
    if sigma_b2 == 0:
        return 0.0 if gap > 0 else math.inf
    return sigma_b2 / gap if gap > 0 else math.inf


def _depth_scale(chi: float) -> float:
    return math.inf if chi >= 1 or chi <= 0 else -1.0 / math.log(chi)
