"""The law of D² = φ'(h)² at the mean-field fixed point, and the moments of J Jᵀ it gives.

Pennington, Schoenholz, Ganguli 2017 (arXiv:1711.04735) and 2018 (arXiv:1802.09979); the spectral density
itself is ``sweep.theory.free_probability``, which builds on this module.

``J = D_n W_n ⋯ D_1 W_1`` (``n = n_factors``, ``L - 1`` for a network of L hidden layers), ``D_l =
diag(φ'(h_l))`` with ``h_l ~ N(0, q)``, ``W_l`` Gaussian (entries ``N(0, σ_w²/N)``) or ``σ_w`` times a Haar
orthogonal matrix, width ``N → ∞``. The eigenvalue law of ``J Jᵀ`` is the free multiplicative convolution
of the laws of ``W Wᵀ`` and ``D²``; with ``M(z) = Σ_k m_k z^-k`` and ``S(y) = (1 + y)/(y M⁻¹(y))``
multiplicative, expanding ``M = m₁/z + m₂/z² + …`` gives ``S(y) = (1/m₁)(1 - (v/m₁²) y + O(y²))``,
``v = m₂ - m₁²``: ``log m₁`` and ``v/m₁²`` add over the factors. With ``μ_k = E[φ'(h)^{2k}]``,
``χ = σ_w² μ₁`` and ``s_W = v/m₁²`` of ``W Wᵀ`` (``1`` Gaussian — Marchenko–Pastur — and ``0``
orthogonal)::

    mean     m₁ = χ^n
    variance v  = χ^{2n} · n · (μ₂/μ₁² - 1 + s_W)

(Pennington et al. 2018 write ``σ² = L(μ₂/μ₁² - 1 - s₁)`` at χ = 1 with ``S_WWᵀ = σ_w^-2(1 + s₁ y + …)``,
``s₁ = -s_W``.) For φ' ∈ {0, 1} (relu, hard-tanh, linear: ``sweep.nets.activations.STEP_DERIVATIVE``) ``D²``
is Bernoulli(p), ``p = D(q) = E[φ'(h)²]``, ``μ₁ = μ₂ = p``, so at χ = 1 the variance is ``n/p`` (Gaussian) and
``n(1/p - 1)`` (orthogonal). These are exact at ``N = ∞`` for every ``n``. ``layer_resolved_moments`` applies
the same sums with each factor's law at its own q^l (exact for any profile q^l).

Public: ``d2_law`` (the law, with q* from ``sweep.theory.fixed_points``), ``jacobian_moments`` (at q*),
``d2_moments`` (μ₁, μ₂ at given q), ``layer_resolved_moments`` and the NamedTuples they return. Numbers are
numpy float64 on the host: q* and the law come from float64 programs run in a local ``jax.enable_x64``
context (float64 matters for q* → 0); ``d2_moments`` evaluates φ'² in float32.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from sweep.nets.activations import STEP_DERIVATIVE, get_activation
from sweep.theory.fixed_points import q_star as _mean_field_q_star
from sweep.theory.maps import gaussian_moments
from sweep.theory.quadrature import normal_gauss_legendre

Weights = Literal["gaussian", "orthogonal"]

_GL_NODES = 400  # Gauss–Legendre nodes per half-line for the atoms of D² (moments)
_D2_NODES = 200  # the same for d2_moments, at many q at once
_N_CELLS = 600  # cells of h/√q* on [-_Z_CELLS, _Z_CELLS] for the Stieltjes transform of D²
_Z_CELLS = 6.5  # tails beyond (mass 8e-11) folded into the end cells


class JacobianMoments(NamedTuple):
    """Mean and variance of the eigenvalue law of ``J Jᵀ`` (i.e. of the squared singular values of J)."""

    mean: float
    variance: float


class D2Law(NamedTuple):
    """The law of ``D² = φ'(h)²``, ``h ~ N(0, q*)``, in two exact-enough forms.

    ``values``/``probs``: quadrature atoms (Gauss–Legendre in h), for moments. ``cells``/``masses``: the
    real line of h cut into cells, D² evaluated just inside both ends of each cell (so a jump of φ' at a
    cell edge, selu's at 0, is resolved), with ``masses`` the exact normal probability of each cell; within
    a cell D² is taken uniform between its end values, so the Stieltjes transform is a sum of logarithms
    with no spurious poles (a law of discrete atoms would make ``M_D²(w)`` spiky when w nears the real axis,
    which happens in the tails of the spectrum).

    ``two_point`` is true when the law is exactly ``{0: 1 - p, c: p}`` (relu, hard-tanh, linear, or any φ at
    q* = 0); then ``values = [0, c]``, ``probs = [1 - p, p]``. ``q_star`` is NaN where it is not needed
    (linear) and is ``inf`` for relu in its chaotic phase (no finite fixed point) and 1 at criticality
    (σ_w² = 2, σ_b² = 0: every q is fixed, and the iteration starts at 1) — the law of relu's D² does not
    depend on it.
    """

    values: np.ndarray  # [K] float64, ≥ 0
    probs: np.ndarray  # [K] float64, sums to 1
    cells: np.ndarray  # [C, 2] float64, D² at the two ends of each cell
    masses: np.ndarray  # [C] float64, sums to 1
    q_star: float
    two_point: bool

    @property
    def mu1(self) -> float:
        return float(np.dot(self.probs, self.values))

    @property
    def mu2(self) -> float:
        return float(np.dot(self.probs, self.values**2))


def _two_point(c: float, p: float, q: float) -> D2Law:
    return D2Law(
        np.array([0.0, c]),
        np.array([1.0 - p, p]),
        np.array([[0.0, 0.0], [c, c]]),
        np.array([1.0 - p, p]),
        q,
        True,
    )


# ---------------------------------------------------------------------------------------------------------
# The law of D² at the fixed point q*


def _x64() -> AbstractContextManager[object]:
    """Context in which jax computes in float64 (``jax.enable_x64``; the experimental one on older jax)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is not None:
        return enable(True)
    from jax.experimental import enable_x64  # jax < 0.8

    return enable_x64()


@functools.cache
def _derivative_squared(activation: str) -> Callable[[np.ndarray, np.dtype], np.ndarray]:
    """``φ'(h)²`` (``jax.grad`` of the registered φ, jitted and vectorised) as a NumPy function of any
    shape, evaluated in the given dtype (float64 inside ``_x64()``) and returned as float64."""
    dphi = jax.jit(jax.vmap(jax.grad(get_activation(activation))))

    def d2(h: np.ndarray, dtype: np.dtype = np.float64) -> np.ndarray:
        flat = np.asarray(dphi(jnp.asarray(np.ravel(h), dtype)), np.float64)
        return flat.reshape(np.shape(h)) ** 2

    return d2


def _step_probability(activation: str, q: np.ndarray | float) -> np.ndarray:
    """``p = P(φ' = 1) = E[φ'(h)²]``, ``h ~ N(0, q)``, for φ' ∈ {0, 1} (``STEP_DERIVATIVE``): the kernel's
    D(q) in float64 (relu ½, linear 1, hard-tanh erf(1/√(2q)), 1 at q = 0). Shape of ``q``."""
    with _x64():
        return np.asarray(gaussian_moments(activation, np.asarray(q, np.float64)).dvar, np.float64)


def _q_star(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """q* of ``sweep.theory.fixed_points`` (iterated from q0 = 1) in float64: 0 where q = 0 attracts with
    σ_b² = 0 (tanh with σ_w² ≤ 1), inf where the length map diverges (relu with σ_w² > 2, ...)."""
    with _x64():
        return float(_mean_field_q_star(activation, np.float64(sigma_w2), np.float64(sigma_b2)))


def d2_law(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    *,
    q_star: float | None = None,
    n_nodes: int = _GL_NODES,
    n_cells: int = _N_CELLS,
) -> D2Law:
    """The law of ``D² = φ'(h)²`` with ``h ~ N(0, q*)`` (q* computed here unless given).

    φ' ∈ {0, 1} (``STEP_DERIVATIVE``): ``{0: 1-p, 1: p}`` with ``p = E[φ'(h)²]`` — relu ½ for any q*,
    hard-tanh ``erf(1/√(2q*))``, linear 1 (q* not computed: NaN unless given). Other φ (φ' by
    ``jax.grad``): ``2·n_nodes`` Gauss–Legendre atoms ``φ'(√q* x_i)²`` and ``n_cells`` equal cells of
    ``x = h/√q*`` on ``[-6.5, 6.5]`` (tails folded into the end cells); a single atom ``φ'(0)²`` when
    q* = 0. Raises ``ValueError`` where such a φ has no finite q*.
    """
    get_activation(activation)  # KeyError listing the choices for an unknown name
    if activation == "linear" and q_star is None:
        return _two_point(1.0, 1.0, math.nan)
    q = _q_star(activation, sigma_w2, sigma_b2) if q_star is None else float(q_star)
    if activation in STEP_DERIVATIVE:
        return _two_point(1.0, float(_step_probability(activation, q)), q)
    if not math.isfinite(q):
        raise ValueError(f"no finite q* for {activation} at sigma_w2={sigma_w2}, sigma_b2={sigma_b2}")
    d2 = _derivative_squared(activation)
    with _x64():
        if q == 0.0:
            return _two_point(float(d2(np.zeros(1))[0]), 1.0, q)
        x, w = normal_gauss_legendre(n_nodes)
        keep = w > 1e-300
        cut = np.linspace(-_Z_CELLS, _Z_CELLS, n_cells + 1)
        masses = np.diff(special.ndtr(cut))
        masses[[0, -1]] += special.ndtr(-_Z_CELLS)
        inset = 1e-9 * (cut[1] - cut[0])
        ends = np.stack([cut[:-1] + inset, cut[1:] - inset], axis=1)
        cells = d2(math.sqrt(q) * ends)
        atoms = d2(math.sqrt(q) * x[keep])
    return D2Law(atoms, w[keep] / w[keep].sum(), cells, masses / masses.sum(), q, False)


# ---------------------------------------------------------------------------------------------------------
# Moments


def _check(n_factors: int, weights: str) -> None:
    if int(n_factors) != n_factors or n_factors < 1:
        raise ValueError(f"n_factors must be a positive integer (depth L gives L - 1), got {n_factors}")
    if weights not in ("gaussian", "orthogonal"):
        raise ValueError(f"weights must be 'gaussian' or 'orthogonal', got {weights!r}")


def jacobian_moments(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    n_factors: int,
    weights: Weights = "gaussian",
    *,
    q_star: float | None = None,
) -> JacobianMoments:
    """Mean and variance of the eigenvalues of ``J Jᵀ`` (n = ``n_factors`` = depth - 1), ``N → ∞``.

    ``mean = χ^n``, ``variance = χ^{2n} n (μ₂/μ₁² - 1 + s_W)`` with ``χ = σ_w² μ₁``, ``μ_k = E[φ'(h)^{2k}]``
    at q*, ``s_W = 1`` (Gaussian) or ``0`` (orthogonal); see the module docstring for the derivation.
    """
    _check(n_factors, weights)
    law = d2_law(activation, sigma_w2, sigma_b2, q_star=q_star)
    mu1, mu2 = law.mu1, law.mu2
    chi = sigma_w2 * mu1
    s_w = 1.0 if weights == "gaussian" else 0.0
    mean = chi**n_factors
    return JacobianMoments(mean, mean**2 * n_factors * (mu2 / mu1**2 - 1.0 + s_w))


def d2_moments(
    activation: str, sigma_w2: float, sigma_b2: float, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(mu1, mu2) = (E[phi'(h)^2], E[phi'(h)^4]), h ~ N(0, q), at each q (the moments of the D^2 law).

    φ' ∈ {0, 1}: mu1 = mu2 = p(q). Other φ: Gauss–Legendre in h/√q (``2·200`` nodes, split at 0), φ'² in
    float32. ``sigma_w2``, ``sigma_b2`` are unused (the law at a given q does not depend on them); kept so
    that callers name the variant. Arrays of the shape of ``q``."""
    q = np.asarray(q, np.float64)
    if activation in STEP_DERIVATIVE:
        p = _step_probability(activation, q).reshape(q.shape)
        return p, p.copy()
    nodes, weights = normal_gauss_legendre(_D2_NODES)
    values = _derivative_squared(activation)(np.sqrt(np.maximum(q, 0.0))[..., None] * nodes, np.float32)
    return values @ weights, values**2 @ weights


def layer_resolved_moments(
    activation: str, sigma_w2: float, sigma_b2: float, init: str, q_layers: np.ndarray
) -> tuple[float, float]:
    """(mean, var/mean^2) of the eigenvalues of J J^T at N = inf with factor l's D law taken at
    ``q_layers[l]`` (the pre-activation variance of hidden layers 2..L) instead of q*. Free multiplicative
    convolution multiplies the means (sigma_w2 mu1(q^l) per layer) and adds the relative variances
    (mu2/mu1^2 - 1 per D^2, plus 1 per Gaussian W W^T, 0 per orthogonal one)."""
    q = np.asarray(q_layers, np.float64)
    if q.size == 0:
        return 1.0, 0.0
    mu1, mu2 = d2_moments(activation, sigma_w2, sigma_b2, q)
    if (mu1 <= 0.0).any():
        return 0.0, math.nan
    s_w = 1.0 if init == "gaussian" else 0.0
    return float(np.exp(np.sum(np.log(sigma_w2 * mu1)))), float(np.sum(mu2 / mu1**2 - 1.0 + s_w))


__all__ = [
    "D2Law",
    "JacobianMoments",
    "Weights",
    "d2_law",
    "d2_moments",
    "jacobian_moments",
    "layer_resolved_moments",
]
