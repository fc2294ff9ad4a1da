"""Mean field of an MLP whose weights have mixed scales, within a layer and across layers.

The MLP of ``sweep.nets.mlp`` (row vectors, layers 1..L hidden, L+1 the readout)::

    h^1 = x W^1 + b^1,   h^l = φ(h^{l-1}) W^l + b^l  (l = 2..L),   logits = φ(h^L) W^{L+1} + b^{L+1}
    W^l_ij = σ_w s^l_ij z_ij / √fan_in,   z ~ N(0, 1),   b ~ N(0, σ_b²)  (biases never scaled)
    s^l_ij = t_l m_ij for l ≤ L (t_l: the layer pattern, repeated), s^{L+1} = 1 (readout unscaled)

The within-layer mixture m has two groups g ∈ {a, b} with fractions f_a = f, f_b = 1 - f and scales s_a,
s_b; write μ = f s_a² + (1-f) s_b² for the mean squared scale and V(q) = E[φ(√q z)²],
D(q) = E[φ'(√q z)²] (``sweep.theory.maps.gaussian_moments``). With ``q_x`` the inputs' mean square:

- ``units`` (unit j's incoming weights all at its group's scale): the groups have different lengths,
  a two-component length map in which the next layer sees the average over the units,
  ``q_g^l = σ_w² t_l² s_g² Σ_g' f_g' V(q_g'^{l-1}) + σ_b²`` (``q_g^1 = σ_w² t_1² s_g² q_x + σ_b²``).
- ``entries`` (every row and column holds the fraction f at scale a): all units alike; exactly the
  standard length map at ``σ_w² t_l² μ``.
- backward, r_g^l = E[(∂L/∂h_j^l)²] for a unit j of group g (gradient independence), from the readout
  ``r_g^L = D_g^L σ_w² / N`` (per unit squared gradient of the logits summed to 1):
  units ``r_g^{l-1} = D_g^{l-1} σ_w² t_l² Σ_g' f_g' s_g'² r_g'^l``; entries the same with s_g'² -> μ.
- the factor layer l contributes, ``χ^l = σ_w² t_l² Σ_g f_g s_g² D_g^l`` (entries: ``σ_w² t_l² μ D^l``):
  with R^l = Σ_j r_j^l and D̄^l = Σ_g f_g D_g^l, ``R^{l0} / R^{l1} = (D̄^{l0} / D̄^{l1}) Π_{l0<l≤l1} χ^l``.
  Linear and relu nets (D constant): χ^l = σ_w² D t_l² μ, whatever the mixture (units or entries).
- weight gradients, one example: ``E‖∂L/∂W^l‖² = A^{l-1} R^l`` with A^l = Σ_i E[φ(h_i^l)²] (A^0 = ‖x‖²).

A mixture's fraction is the one the engine realises: round(f n)/n of n units (or of a layer's
min(fan_in, fan_out) entries per row and column), see ``realised_fraction``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from sweep.theory.kernels import ActivationLike
from sweep.theory.maps import gaussian_moments

MIXES = ("none", "units", "entries")


class MixedProfile(NamedTuple):
    """Mean-field profile of one network (layer l at index l - 1)."""

    q: np.ndarray  # [L+1, 2] mean squared pre-activation of groups (a, b), layers 1..L, then the logits
    q_mean: np.ndarray  # [L+1] the average over the units: what ``q_layer`` measures
    chi: np.ndarray  # [L] χ^l of layers 1..L
    act_sq: np.ndarray  # [L+1] A^l, l = 0..L: Σ_i E[φ(h_i^l)²] (A^0 = d q_x)
    delta_sq: np.ndarray  # [L+1] R^l, l = 1..L+1: Σ_j E[(∂L/∂h_j^l)²], with R^{L+1} = 1
    grad_sq: np.ndarray  # [L+1] E‖∂L/∂W^l‖² = A^{l-1} R^l, l = 1..L+1 (relative to R^{L+1})


def realised_fraction(fraction: float, n: int) -> float:
    """The fraction of n units (or entries of a row) the engine puts at scale a: round(f n) / n."""
    return float(np.floor(fraction * n + 0.5)) / n


def mean_square_scale(scale_a: float, scale_b: float, fraction: float) -> float:
    """μ = f s_a² + (1 - f) s_b²: the mean squared scale (1.25 for half 0.5, half 1.5)."""
    return fraction * scale_a**2 + (1 - fraction) * scale_b**2


def effective_sigma_w2(sigma_w2: float, scale_a: float, scale_b: float, fraction: float) -> float:
    """Entries mixing is exactly the unmixed network at σ_w² μ in mean field (units mixing is not)."""
    return sigma_w2 * mean_square_scale(scale_a, scale_b, fraction)


def _gains(
    mix: str, scale_a: float, scale_b: float, fraction: float, t2: np.ndarray, width: int, input_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """(f [2]: the groups' fractions of the units, gain [L, 2]: t_l² times the squared scale that the
    weights into a unit of each group (units) or of every unit (entries, none) carry)."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; choose from {list(MIXES)}")
    if mix == "units":
        f = realised_fraction(fraction, width)
        return np.array([f, 1 - f]), t2[:, None] * np.array([scale_a**2, scale_b**2])[None, :]
    if mix == "none":
        return np.array([1.0, 0.0]), np.repeat(t2[:, None], 2, axis=1)
    fractions = np.full(t2.shape, realised_fraction(fraction, width))  # hidden layers: N x N
    fractions[0] = realised_fraction(fraction, min(input_dim, width))  # the input layer's columns
    mu = fractions * scale_a**2 + (1 - fractions) * scale_b**2
    return np.array([1.0, 0.0]), np.repeat((t2 * mu)[:, None], 2, axis=1)


def mixed_profile(
    activation: ActivationLike,
    sigma_w2: float,
    sigma_b2: float,
    q_input: float,
    *,
    depth: int,
    width: int,
    input_dim: int,
    mix: str = "none",
    scale_a: float = 1.0,
    scale_b: float = 1.0,
    fraction: float = 0.5,
    layer_scales: Sequence[float] = (1.0,),
) -> MixedProfile:
    """The recursions of the module docstring for one network of ``depth`` hidden layers of ``width``
    units on inputs of ``input_dim`` entries with mean square ``q_input``. Float64 NumPy arrays.

    Layer l takes ``layer_scales[(l - 1) % len(layer_scales)]``; ``mix`` is "none", "units" or "entries".
    """
    n_layers, n = int(depth), int(width)
    t2 = np.resize(np.asarray(layer_scales, np.float64), n_layers) ** 2
    f, gain = _gains(mix, scale_a, scale_b, fraction, t2, n, input_dim)

    def moments(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = gaussian_moments(activation, np.asarray(q, np.float32))
        return np.asarray(m.var, np.float64), np.asarray(m.dvar, np.float64)

    q = np.zeros((n_layers + 1, 2))
    var = np.zeros((n_layers, 2))
    dvar = np.zeros((n_layers, 2))
    previous = q_input  # the mean over the units of the previous layer's φ² (the inputs': q_x)
    for layer in range(n_layers):
        q[layer] = sigma_w2 * gain[layer] * previous + sigma_b2
        var[layer], dvar[layer] = moments(q[layer])
        previous = f @ var[layer]
    q[n_layers] = sigma_w2 * previous + sigma_b2  # the logits: the readout is never scaled
    r = np.zeros((n_layers, 2))
    r[-1] = dvar[-1] * sigma_w2 / n
    for layer in range(n_layers - 1, 0, -1):  # r^{l-1} from r^l through W^l (index l - 1)
        r[layer - 1] = dvar[layer - 1] * (sigma_w2 * ((f * gain[layer]) @ r[layer]))
    act_sq = np.concatenate([[input_dim * q_input], n * var @ f])
    delta_sq = np.concatenate([n * r @ f, [1.0]])
    return MixedProfile(
        q=q,
        q_mean=q @ f,
        chi=sigma_w2 * np.sum(f * gain * dvar, axis=1),
        act_sq=act_sq,
        delta_sq=delta_sq,
        grad_sq=act_sq * delta_sq,
    )


def geometric_mean_chi(profile: MixedProfile) -> float:
    """The per-layer factor the backward signal sees on average: (Π_l χ^l)^(1/L) over layers 1..L."""
    return float(np.exp(np.mean(np.log(profile.chi))))
