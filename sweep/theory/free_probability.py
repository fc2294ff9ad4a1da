"""Free-probability spectrum of J Jᵀ for a deep network at its mean-field fixed point.

Pennington, Schoenholz, Ganguli 2017 (arXiv:1711.04735) and 2018 (arXiv:1802.09979).

Public: ``jacobian_moments`` (mean, variance), ``spectral_density`` (density + atoms of J Jᵀ),
``singular_value_density`` (of J), ``d2_law`` (the law of φ'(h)² at q*), ``mass_between`` (integrate a
density), and the NamedTuples they return.

Contract
--------
``J = D_n W_n ⋯ D_1 W_1`` is a product of ``n = n_factors`` square layer Jacobians, ``D_l = diag(φ'(h_l))``
with ``h_l ~ N(0, q*)`` i.i.d. and ``W_l`` either Gaussian (entries ``N(0, σ_w²/N)``) or ``σ_w`` times a Haar
orthogonal matrix. In this project the measured Jacobian of a network with ``L`` hidden layers is
``J = ∂x^L/∂x^1`` (``x^l = φ(h^l)``), a product of ``L - 1`` such factors: pass ``n_factors = L - 1``.

Everything is for width ``N → ∞``. The law of the eigenvalues of ``J Jᵀ`` is the free multiplicative
convolution of ``n`` copies of the laws of ``W Wᵀ`` and of ``D²`` (the law of ``φ'(h)²``, ``h ~ N(0, q*)``).

Transforms (for a law ρ): ``G(z) = ∫ ρ(t)/(z - t) dt``, ``M(z) = z G(z) - 1 = Σ_k m_k z^-k``,
``S(y) = (1 + y) / (y M⁻¹(y))``; ``S`` is multiplicative under free multiplicative convolution::

    S_JJᵀ(y) = S_WWᵀ(y)^n · S_D²(y)^n,
    S_WWᵀ(y) = 1 / (σ_w² (1 + y))  (Gaussian),      S_WWᵀ(y) = 1 / σ_w²  (orthogonal),

and the density is ``ρ(λ) = -Im G(λ + iε) / π``.

Moments (``jacobian_moments``). Expanding ``M(z) = m₁/z + m₂/z² + …`` and inverting gives
``S(y) = (1/m₁)(1 - (v/m₁²) y + O(y²))`` with ``v = m₂ - m₁²``, so ``log S`` is additive in the two numbers
``-log m₁`` and ``v/m₁²``. With ``μ_k = E[φ'(h)^{2k}]`` (the moments of ``D²``), ``χ = σ_w² μ₁`` and
``s_W = v/m₁²`` of ``W Wᵀ`` (``1`` Gaussian — Marchenko–Pastur — and ``0`` orthogonal)::

    mean     m₁ = χ^n
    variance v  = χ^{2n} · n · (μ₂/μ₁² - 1 + s_W)

(Pennington et al. 2018 write ``σ² = L(μ₂/μ₁² - 1 - s₁)`` at χ = 1 with ``S_WWᵀ = σ_w^-2(1 + s₁ y + …)``,
``s₁ = -s_W``.) For relu / hard-tanh ``D²`` is Bernoulli(p), ``μ₁ = μ₂ = p``, so at χ = 1 the variance is
``n/p`` (Gaussian) and ``n(1/p - 1)`` (orthogonal). These are exact at ``N = ∞`` for every ``n``.

Density (``spectral_density``). Two routes:

* ``"roots"`` — ``D²`` takes two values ``{0, c}`` (relu: ``c = 1, p = ½``; hard-tanh: ``c = 1,
  p = erf(1/√(2q*))``; linear: ``c = 1, p = 1``). Then ``S_D²(y) = (1 + y)/(c(y + p))`` and ``M = M_JJᵀ(z)``
  solves a polynomial (``s = c σ_w²``)::

      Gaussian:    z M = s^n (1 + M)(M + p)^n
      orthogonal:  z M (1 + M)^{n-1} = s^n (M + p)^n

  The physical root is chosen by continuation: start above the top of the spectrum on the real branch that
  has ``M ≈ m₁/λ`` (located exactly by walking real ``M`` upward from 0 until ``λ(M)`` stops decreasing —
  the spectral edge), step ``λ`` down a fine geometric grid and at each step take the root nearest to the
  previous one (chordal metric on the Riemann sphere, so that a pole of ``M`` at an atom is crossed
  continuously) among those with ``Im G ≤ 0`` (the ``z → λ + i0`` member of a conjugate pair); then polish
  it by Newton at ``z = λ(1 + iη)``. Picking "any root with Im G < 0" instead selects wrong branches. The
  polynomial is solved in ``δ = M + p``, where the n roots that cluster around ``M = -p`` as λ → 0 stay
  resolvable.
* ``"newton"`` — any law of ``D²``. The unknown is ``w = M_D²⁻¹(M)``: with ``M = M_D²(w)`` explicit,
  ``z = M_JJᵀ⁻¹(M)`` is explicit too::

      Gaussian:    z = σ_w^{2n} (1 + M) M^{n-1} w^n
      orthogonal:  z = σ_w^{2n} M^{n-1} w^n (1 + M)^{1-n}

  so each step is a one-variable Newton solve (on ``log z``, from the previous ``w`` extrapolated), with no
  nested inversion; the start is again found on the real branch (real ``w`` walking down from +∞). ``M_D²``
  is ``E[φ'²/(w - φ'²)]`` with the line of ``h/√q*`` cut into equal cells, ``φ'²`` uniform between its
  values at a cell's ends: a sum of logarithms, exact for that piecewise-uniform law, accurate to O(cell²)
  and — unlike a sum over quadrature atoms — free of spurious poles when ``w`` nears the real axis (it
  does, in the tails of the spectrum).

Atoms. ``D² ∈ {0, c}`` puts an atom of mass ``1 - p`` at ``λ = 0`` (directions zeroed by some ``D``; it is
``-p = lim_{z→0} M`` that fixes it). With orthogonal weights and ``p > 1 - 1/n`` a subspace of dimension
``(1 - n(1 - p))N`` passes every ``D`` untouched, giving an atom of that mass at ``λ = (cσ_w²)^n``. Atoms
are reported separately; ``density`` is the continuous part only, and integrates to ``1 - Σ atoms``. For
orthogonal weights and a deterministic ``D²`` (linear φ, or q* = 0) ``J Jᵀ = (cσ_w²)^n I`` exactly — a
single atom; ``spectral_density`` raises ``ValueError`` there (use ``jacobian_moments``).

Near λ = 0 the continuous density diverges: ``M + p ∝ λ^{1/n}`` gives ``ρ ∝ λ^{1/n - 1}`` for a two-point
``D²`` with p < 1 (and ``ρ ∝ λ^{1/(n+1) - 1}`` when ``D² > 0``, Gaussian weights), so the continuous mass
below ``a`` is ``≈ n a ρ(a)`` (resp. ``(n+1) a ρ(a)``) — at n = 8 a good part of it lies below 1e-4 (relu at
criticality: 0.356 of the 0.5 above 1e-4, Gaussian weights; 0.414, orthogonal).

Numbers are numpy float64 on the host; the activation and its derivative (``jax.grad``) come from
``sweep.activations``, evaluated in float64 inside a local ``jax.enable_x64`` context.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import polynomial as npoly
from scipy import optimize, special

from sweep.activations import get_activation

Weights = Literal["gaussian", "orthogonal"]
Method = Literal["auto", "roots", "newton"]

_ETA = 1e-9  # z = λ(1 + iη): relative distance of the evaluation point above the real axis
_GH_NODES = 201  # Gauss–Hermite nodes for the length map of smooth φ
_GL_NODES = 400  # Gauss–Legendre nodes per half-line: moments of D², and the length map of kinked φ
_Z_MAX = 10.0  # truncation of the standard normal for the Gauss–Legendre rule (tail < 1e-22)
_N_CELLS = 600  # cells of h/√q* on [-_Z_CELLS, _Z_CELLS] for the Stieltjes transform of D²
_Z_CELLS = 6.5  # tails beyond (mass 8e-11) folded into the end cells
_MAX_ROOTS_AUTO = 16  # "auto" uses the polynomial roots up to this many factors (then Newton: faster)
_MAX_ROOTS = 40  # beyond, the degree-(n+1) companion eigenproblem loses the branch (wrong at n = 60)


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
    (linear) and may be 0 or ``inf`` for relu (every q is a fixed point at criticality; none is finite in
    the chaotic phase) — the law of relu's D² does not depend on it.
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


class SpectralDensity(NamedTuple):
    """Limiting eigenvalue law of ``J Jᵀ``: continuous ``density`` at ``lambdas`` plus point masses.

    ``atoms`` is a tuple of ``(location, mass)``; ``density`` (same shape as ``lambdas``) integrates to
    ``continuous_mass = 1 - Σ mass``. ``density`` is 0 at ``λ ≤ 0``.
    """

    lambdas: np.ndarray
    density: np.ndarray
    atoms: tuple[tuple[float, float], ...]

    @property
    def atom_at_zero(self) -> float:
        return float(sum(mass for loc, mass in self.atoms if loc == 0.0))

    @property
    def continuous_mass(self) -> float:
        return 1.0 - float(sum(mass for _, mass in self.atoms))


class SingularValueDensity(NamedTuple):
    """Limiting law of the singular values σ of J: ``density(σ) = 2σ ρ(σ²)``; atoms at ``√λ``."""

    sigmas: np.ndarray
    density: np.ndarray
    atoms: tuple[tuple[float, float], ...]

    @property
    def atom_at_zero(self) -> float:
        return float(sum(mass for loc, mass in self.atoms if loc == 0.0))


# ---------------------------------------------------------------------------------------------------------
# The law of D² at the fixed point q*


def _x64() -> AbstractContextManager[object]:
    """Context in which jax computes in float64 (``jax.enable_x64``; the experimental one on older jax)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is not None:
        return enable(True)
    from jax.experimental import enable_x64  # jax < 0.8

    return enable_x64()


def _np_fn(fn: Callable[[jax.Array], jax.Array]) -> Callable[[np.ndarray], np.ndarray]:
    """An elementwise jax function as a float64 numpy function (float64 matters for q* → 0)."""

    def call(x: np.ndarray) -> np.ndarray:
        with _x64():
            return np.asarray(fn(jnp.asarray(x, dtype=jnp.float64)), dtype=np.float64)

    return call


def _normal_gauss_hermite(n: int = _GH_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss–Hermite nodes and weights for ``E[f(z)], z ~ N(0,1)`` (weights sum to 1)."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


def _normal_gauss_legendre(n: int = _GL_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre rule for ``N(0,1)`` on ``[-Z, 0] ∪ [0, Z]`` (weights sum to 1): exact to ~1e-13 for
    smooth integrands and, being split at 0, also for selu's jump of φ' there."""
    t, wt = np.polynomial.legendre.leggauss(n)
    x = 0.5 * _Z_MAX * (t + 1.0)  # [0, Z]
    w = 0.5 * _Z_MAX * wt * np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
    nodes = np.concatenate([-x[::-1], x])
    weights = np.concatenate([w[::-1], w])
    return nodes, weights / weights.sum()


_KINKED = frozenset({"selu"})  # φ or φ' has a kink / jump at 0: use the split Gauss–Legendre rule


def _hard_tanh_second_moment(q: float) -> float:
    """``E[clip(u, -1, 1)²]``, ``u ~ N(0, q)``: ``q(erf(a/√2) - 2aϕ(a)) + erfc(a/√2)``, ``a = 1/√q``."""
    if q <= 0.0:
        return 0.0
    a = 1.0 / math.sqrt(q)
    pdf = math.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
    return q * (math.erf(a / math.sqrt(2.0)) - 2.0 * a * pdf) + math.erfc(a / math.sqrt(2.0))


def _length_map(activation: str) -> Callable[[float], float]:
    """``q ↦ E[φ(√q z)²]`` (without σ_w², σ_b²)."""
    if activation == "hard_tanh":
        return _hard_tanh_second_moment
    if activation == "linear":
        return lambda q: q
    if activation == "relu":
        return lambda q: 0.5 * q
    phi = _np_fn(get_activation(activation))
    x, w = _normal_gauss_legendre() if activation in _KINKED else _normal_gauss_hermite()
    return lambda q: float(np.dot(w, phi(math.sqrt(max(q, 0.0)) * x) ** 2))


def _q_star(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """Fixed point of the length map ``q = σ_w² E[φ(√q z)²] + σ_b²`` (bracketed root, brentq).

    Returns 0 when σ_b² = 0 and the map contracts near 0 (e.g. tanh with σ_w² ≤ 1), ``inf`` for relu /
    linear in their unbounded phase; raises ``ValueError`` if no finite fixed point is found below 1e8.
    """
    second = _length_map(activation)

    def f(q: float) -> float:
        return sigma_w2 * second(q) + sigma_b2 - q

    lo = 0.0
    if sigma_b2 <= 0.0:
        lo = 1e-10
        if f(lo) <= 0.0:
            return 0.0
    hi = 1.0
    while f(hi) > 0.0:
        hi *= 2.0
        if hi > 1e8:
            if activation in ("relu", "linear"):
                return math.inf
            raise ValueError(f"no finite q* for {activation} at sigma_w2={sigma_w2}, sigma_b2={sigma_b2}")
    return float(optimize.brentq(f, lo, hi, xtol=1e-14, rtol=1e-13))


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

    relu: ``{0: ½, 1: ½}`` for any q*; hard-tanh: ``{0: 1-p, 1: p}``, ``p = erf(1/√(2q*))``; linear:
    ``{1: 1}``. Other φ (φ' by ``jax.grad``): ``2·n_nodes`` Gauss–Legendre atoms ``φ'(√q* x_i)²`` and
    ``n_cells`` equal cells of ``x = h/√q*`` on ``[-6.5, 6.5]`` (tails folded into the end cells); a single
    atom ``φ'(0)²`` when q* = 0.
    """
    get_activation(activation)  # KeyError listing the choices for an unknown name
    if activation == "relu":
        q = _q_star(activation, sigma_w2, sigma_b2) if q_star is None else q_star
        return _two_point(1.0, 0.5, q)
    if activation == "linear":
        return _two_point(1.0, 1.0, math.nan if q_star is None else q_star)
    q = _q_star(activation, sigma_w2, sigma_b2) if q_star is None else float(q_star)
    if activation == "hard_tanh":
        return _two_point(1.0, 1.0 if q == 0.0 else math.erf(1.0 / math.sqrt(2.0 * q)), q)
    dphi = _np_fn(jax.vmap(jax.grad(get_activation(activation))))
    if q == 0.0:
        return _two_point(float(dphi(np.zeros(1))[0] ** 2), 1.0, q)
    x, w = _normal_gauss_legendre(n_nodes)
    keep = w > 1e-300
    cut = np.linspace(-_Z_CELLS, _Z_CELLS, n_cells + 1)
    masses = np.diff(special.ndtr(cut))
    masses[[0, -1]] += special.ndtr(-_Z_CELLS)
    inset = 1e-9 * (cut[1] - cut[0])
    ends = np.stack([cut[:-1] + inset, cut[1:] - inset], axis=1)
    cells = (dphi(math.sqrt(q) * ends.ravel()) ** 2).reshape(ends.shape)
    return D2Law(
        dphi(math.sqrt(q) * x[keep]) ** 2, w[keep] / w[keep].sum(), cells, masses / masses.sum(), q, False
    )


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


# ---------------------------------------------------------------------------------------------------------
# Continuation


def _wrap(x: complex) -> complex:
    """Residual of a logarithmic equation, with the imaginary part reduced to (-π, π]."""
    return complex(x.real, math.remainder(x.imag, 2.0 * math.pi))


def _descending_grid(lam_top: float, lambdas: np.ndarray, log_step: float) -> np.ndarray:
    """Geometric grid from ``lam_top`` down to the smallest requested λ > 0, merged with the requested."""
    positive = lambdas[(lambdas > 0.0) & (lambdas < lam_top)]
    if positive.size == 0:
        return np.array([lam_top])
    n = math.ceil(math.log(lam_top / positive.min()) / log_step) + 1
    grid = lam_top * np.exp(-log_step * np.arange(n + 1))
    return np.unique(np.concatenate([grid, positive]))[::-1]


def _before_edge(loglam: np.ndarray) -> int:
    """Index on a real branch (``log λ`` decreasing from +∞) where λ is about twice the spectral edge.

    The edge is the first local minimum of λ along the branch (or its end if λ keeps decreasing)."""
    rising = np.nonzero(np.diff(loglam) >= 0.0)[0]
    end = int(rising[0]) if rising.size else loglam.size - 1
    return int(np.nonzero(loglam[: end + 1] >= loglam[end] + math.log(2.0))[0][-1])


def _log_lambda_two_point(m: np.ndarray, p: float, n: int, weights: str) -> np.ndarray:
    """``log(z/s^n)`` as a function of M on the physical branch (two-point D²)."""
    if weights == "gaussian":
        return np.log1p(m) + n * np.log(m + p) - np.log(m)
    return n * np.log(m + p) - np.log(m) - (n - 1) * np.log1p(m)


def _start_two_point(p: float, n: int, weights: str) -> tuple[float, float]:
    """``(M, z/s^n)`` on the real branch at twice the spectral edge (M real, walking up from 0)."""
    m = np.geomspace(1e-12, 1e12, 20001)
    loglam = _log_lambda_two_point(m, p, n, weights)
    k = _before_edge(loglam)
    return float(m[k]), float(np.exp(loglam[k]))


def _wrap_array(x: np.ndarray) -> np.ndarray:
    return x.real + 1j * (np.remainder(x.imag + math.pi, 2.0 * math.pi) - math.pi)


def _roots_branch(p: float, n: int, weights: str, zeta: np.ndarray, m0: complex) -> np.ndarray:
    """``1 + M`` at each ``zeta = z/s^n`` (ordered downward in |z|) for a two-point D², by continuation.

    The polynomial is written in ``δ = M + p``: as λ → 0, n of its roots cluster around ``M = -p`` on a
    circle of radius ∝ λ^{1/n}, which the companion matrix in M cannot resolve (errors ~ eps^{1/n}); in δ the
    cluster sits at the origin and is found to relative accuracy. All roots of every polynomial come from one
    batched companion-matrix eigensolve; the physical one is then followed down the grid (nearest in the
    chordal metric to the previous, among roots with ``Im G ≤ 0``), and the chosen roots are polished
    together by Newton on the logarithmic equation.
    """
    q = 1.0 - p  # 1 + M = q + δ
    if weights == "gaussian":  # ζ M - (1 + M)(M + p)^n  =  ζ (δ - p) - (q + δ) δ^n
        a, b = np.array([-p, 1.0]), npoly.polymul([q, 1.0], npoly.polypow([0.0, 1.0], n))
    else:  # ζ M (1 + M)^{n-1} - (M + p)^n  =  ζ (δ - p)(q + δ)^{n-1} - δ^n
        a, b = npoly.polymul([-p, 1.0], npoly.polypow([q, 1.0], n - 1)), npoly.polypow([0.0, 1.0], n)
    a = np.pad(a, (0, len(b) - len(a)))
    # Candidates at real ζ (a real eigenproblem, 3x cheaper); Im G ≤ 0 there means Im δ ≤ 0, which picks
    # the z → λ + i0 member of each conjugate pair. Newton then moves them to z = λ(1 + iη).
    lam = zeta.real * np.where(np.abs(zeta.real * a[-1] - b[-1]) < 1e-12, 1.0 + 1e-9, 1.0)  # not on a pole
    coef = lam[:, None] * a[None, :] - b[None, :]  # [G, deg + 1], ascending powers of δ
    deg = coef.shape[1] - 1
    companion = np.zeros((zeta.size, deg, deg))
    companion[:, np.arange(1, deg), np.arange(deg - 1)] = 1.0
    companion[:, :, -1] = -coef[:, :deg] / coef[:, deg:]
    roots = np.linalg.eigvals(companion)  # [G, deg] values of δ
    penalty = np.where(roots.imag <= 1e-9 * np.abs(q + roots), 0.0, 10.0)  # chordal distances are ≤ 1

    def polish(d: np.ndarray) -> np.ndarray:
        for _ in range(6):
            m, opm = d - p, q + d
            if weights == "gaussian":
                val = np.log(zeta) + np.log(m) - np.log(opm) - n * np.log(d)
                der = 1 / m - 1 / opm - n / d
            else:
                val = np.log(zeta) + np.log(m) + (n - 1) * np.log(opm) - n * np.log(d)
                der = 1 / m + (n - 1) / opm - n / d
            d = d - _wrap_array(val) / der
        return d

    # chordal distance |M - M'| / (√(1+|M|²) √(1+|M'|²)), compared as M so that a pole of M (an atom) is
    # crossed continuously; the factor of the previous root is common to all candidates and dropped
    m_roots = roots - p
    scale = 1.0 / np.sqrt(1.0 + np.abs(m_roots) ** 2)
    chosen = np.empty(zeta.shape, dtype=complex)
    prev = complex(m0)
    for k in range(zeta.size):
        j = int(np.argmin(np.abs(m_roots[k] - prev) * scale[k] + penalty[k]))
        chosen[k] = roots[k, j]
        prev = m_roots[k, j]
    return q + polish(chosen)


class _Generic:
    """``z(w)`` for the Newton route: ``M = M_D²(w)`` and ``log z = log M_JJᵀ⁻¹(M)``, with derivatives.

    ``1 + M_D²(w) = P₀ + Σ_c P_c w/(b-a) · log((w-a)/(w-b)) + Σ_atoms P w/(w - d)`` over cells uniform on
    ``[a_c, b_c]`` (``P₀``: mass at D² = 0). ``1 + M`` is what is carried, not M: near λ → 0, ``M → -1``
    and ``1 + M`` would otherwise lose all its digits.
    """

    def __init__(self, law: D2Law, sigma_w2: float, n: int, weights: str):
        a, b, mass = law.cells[:, 0], law.cells[:, 1], law.masses
        keep = (mass > 0.0) & (np.maximum(a, b) > 0.0)
        cell = keep & (a != b)
        atom = keep & (a == b)
        self.zero_mass = float(mass[~keep].sum())
        self.a, self.b, self.mass = a[cell], b[cell], mass[cell]
        self.width = self.b - self.a
        self.atom_d, self.atom_p = b[atom], mass[atom]
        self.dmax = float(np.max(np.concatenate([self.a, self.b, self.atom_d])))
        self.n, self.gauss, self.log_s = n, weights == "gaussian", n * math.log(sigma_w2)

    def opm(self, w: complex) -> tuple[complex, complex]:
        """``(1 + M_D²(w), M_D²'(w))``."""
        opm, dm = complex(self.zero_mass), 0j
        if self.mass.size:
            wb = w - self.b
            u = self.width / wb  # (w - a)/(w - b) = 1 + u
            x, y = u.real, u.imag
            log1p_u = 0.5 * np.log1p(x * (2.0 + x) + y * y) + 1j * np.arctan2(y, 1.0 + x)  # exact at small u
            ratio = log1p_u / u
            opm += complex(np.dot(self.mass, w * ratio / wb))
            dm += complex(np.dot(self.mass, (ratio - w / (w - self.a)) / wb))
        if self.atom_d.size:
            inv = 1.0 / (w - self.atom_d)
            opm += complex(np.dot(self.atom_p, w * inv))
            dm -= complex(np.dot(self.atom_p * self.atom_d, inv * inv))
        return opm, dm

    def logz(self, w: complex) -> tuple[complex, complex, complex, float]:
        """``(log z, d log z / dw, 1 + M, size)``; ``size`` bounds the terms summed (for rounding)."""
        n = self.n
        opm, dm = self.opm(w)
        m = opm - 1.0
        log_opm, log_m, log_w = cmath.log(opm), cmath.log(m), cmath.log(w)
        if self.gauss:
            val = self.log_s + log_opm + (n - 1) * log_m + n * log_w
            der = dm * (1 / opm + (n - 1) / m) + n / w
        else:
            val = self.log_s + (n - 1) * (log_m - log_opm) + n * log_w
            der = dm * (n - 1) * (1 / m - 1 / opm) + n / w
        size = abs(self.log_s) + n * (abs(log_opm) + abs(log_m) + abs(log_w)) + 1.0
        return val, der, opm, size

    def start(self) -> tuple[float, float]:
        """``(w, λ)`` on the real branch at twice the spectral edge (real w walking down to max d)."""
        w = self.dmax * (1.0 + np.geomspace(1e10, 1e-10, 2001))
        opm = np.full_like(w, self.zero_mass)
        for chunk in np.array_split(np.arange(w.size), 20):  # [chunk, cells] at a time
            wc = w[chunk, None]
            opm[chunk] += (self.atom_p * wc / (wc - self.atom_d)).sum(axis=1)
            if self.mass.size:
                u = self.width / (wc - self.b)
                opm[chunk] += (self.mass * wc * (np.log1p(u) / u) / (wc - self.b)).sum(axis=1)
        m = opm - 1.0
        if self.gauss:
            loglam = self.log_s + np.log(opm) + (self.n - 1) * np.log(m) + self.n * np.log(w)
        else:
            loglam = self.log_s + (self.n - 1) * (np.log(m) - np.log(opm)) + self.n * np.log(w)
        k = _before_edge(loglam)
        return float(w[k]), float(np.exp(loglam[k]))

    def solve(self, w0: complex, z: complex) -> tuple[complex, complex] | None:
        """Newton on ``log z(w) = log z`` from ``w0``: ``(w, 1 + M)``, or None unless it converges to a
        physical root (``Im G ≤ 0``, ``Im w ≥ 0``)."""
        logz_t, w = cmath.log(z), w0
        for _ in range(40):
            val, der, opm, size = self.logz(w)
            res = _wrap(val - logz_t)
            step = res / der
            if abs(step) > 0.5 * abs(w):  # damp jumps across the poles of M_D²
                step *= 0.5 * abs(w) / abs(step)
            w -= step
            # converged: w stopped moving, or the residual is down to the rounding of the terms of log z
            # (which grow like n log|w|: at n ~ 100 relative steps of 1e-12 are below that noise)
            if abs(step) <= 1e-12 * abs(w) or abs(res) <= 1e-14 * size:
                g = opm / z
                return (w, opm) if g.imag <= 1e-6 * abs(g) and w.imag >= -1e-6 * abs(w) else None
        return None


def _newton_branch(gen: _Generic, z: np.ndarray, w0: complex) -> tuple[np.ndarray, np.ndarray]:
    """(1 + M, w) at each z (ordered downward) by Newton continuation in w, subdividing steps that fail.

    The predictor extrapolates w linearly in log z from the last two solutions; if Newton from it (or from
    the previous solution, or from that nudged into the upper half plane, where physical w lie) fails to
    reach a physical root, the step is halved in log z, recursively.
    """

    def advance(
        w: complex, z_from: complex, z_to: complex, guess: complex, depth: int = 0
    ) -> tuple[complex, complex]:
        for trial in (guess, w, w + 1e-3j * abs(w), w + 1e-2j * abs(w)):
            got = gen.solve(trial, z_to)
            if got is not None and abs(got[0] - w) <= 0.5 * abs(w):
                return got
        if depth > 12:
            raise RuntimeError(f"continuation failed near lambda={z_to.real:.6g}")
        mid = z_from * cmath.sqrt(z_to / z_from)
        w_mid = advance(w, z_from, mid, w, depth + 1)[0]
        return advance(w_mid, mid, z_to, w_mid, depth + 1)

    out_m, out_w = np.empty(z.shape, dtype=complex), np.empty(z.shape, dtype=complex)
    w = advance(complex(w0), complex(z[0]), complex(z[0]), complex(w0))[0]
    w_prev, lz_prev, lz_prev2 = w, cmath.log(z[0]), None
    for k in range(z.size):
        zk = complex(z[k])
        lz = cmath.log(zk)
        guess = w
        if lz_prev2 is not None and lz_prev != lz_prev2:
            guess = w + (w - w_prev) * (lz - lz_prev) / (lz_prev - lz_prev2)
        w_new, out_m[k] = advance(w, complex(z[k - 1]) if k else zk, zk, guess)
        w_prev, w = w, w_new
        lz_prev2, lz_prev = lz_prev, lz
        out_w[k] = w
    return out_m, out_w


# ---------------------------------------------------------------------------------------------------------
# Densities


def spectral_density(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    n_factors: int,
    weights: Weights,
    lambdas: np.ndarray,
    *,
    q_star: float | None = None,
    method: Method = "auto",
    log_step: float = 2e-3,
    n_cells: int = _N_CELLS,
) -> SpectralDensity:
    """Limiting eigenvalue density of ``J Jᵀ`` at ``lambdas`` (any shape, any order), plus its atoms.

    ``n_factors`` is the number of ``D·W`` factors (``L - 1`` for a network with L hidden layers).
    ``method="auto"`` uses the polynomial roots for a two-point ``D²`` (relu, hard-tanh, linear) and
    ``n ≤ 16``, and Newton in ``w = M_D²⁻¹(M)`` otherwise (see the module docstring); the two agree to
    ~1e-12 where both apply. ``"roots"`` is refused above n = 40, where the companion matrix of the degree
    ``n + 1`` polynomial no longer resolves the branch. ``log_step`` is the step of the geometric
    continuation grid in ``log λ`` (requested λ are added to it, so density is exact there, not
    interpolated); ``n_cells`` the cells in h that discretise a continuous ``D²`` (error O(n_cells⁻²), about
    1e-4 relative at the default). Cost: ``log(λ_edge / min λ) / log_step`` root solves, 0.5–1.5 s for
    ``n = 8`` down to λ = 1e-4, about the same at n = 99 (Newton).

    Raises ``ValueError`` for orthogonal weights with a deterministic ``D²`` (linear φ, or q* = 0), where
    ``J Jᵀ = (c σ_w²)^n I`` has no density: a single atom of mass 1 at ``(c σ_w²)^n``.
    """
    _check(n_factors, weights)
    n = int(n_factors)
    lam = np.asarray(lambdas, dtype=np.float64)
    law = d2_law(activation, sigma_w2, sigma_b2, q_star=q_star, n_cells=n_cells)
    c = float(law.values[-1]) if law.two_point else math.nan
    p = float(law.probs[-1]) if law.two_point else math.nan
    if law.two_point and weights == "orthogonal" and p >= 1.0:
        raise ValueError(
            f"orthogonal weights with a deterministic D^2 ({activation}, q*={law.q_star}): J J^T = "
            f"{(c * sigma_w2) ** n:.6g} * I exactly (an atom of mass 1, no density)"
        )
    if law.two_point and p <= 0.0:
        raise ValueError(f"D^2 is identically 0 for {activation} at q*={law.q_star}: J = 0")
    if method == "auto":
        method = "roots" if law.two_point and n <= _MAX_ROOTS_AUTO else "newton"
    if method == "roots" and n > _MAX_ROOTS:
        raise ValueError(f"method='roots' is ill-conditioned for n_factors={n} > {_MAX_ROOTS}: use 'newton'")

    atoms: list[tuple[float, float]] = []
    if law.two_point:
        top = (c * sigma_w2) ** n
        if p < 1.0:
            atoms.append((0.0, 1.0 - p))
        if weights == "orthogonal" and n * p - n + 1.0 > 0.0:
            atoms.append((top, n * p - n + 1.0))

    if method == "roots":
        if not law.two_point:
            raise ValueError(
                f"method='roots' needs a two-point D^2 (relu, hard_tanh, linear), not {activation}"
            )
        scale = (c * sigma_w2) ** n
        m0, zeta0 = _start_two_point(p, n, weights)
        grid = _descending_grid(zeta0 * scale, lam.ravel(), log_step)
        z = grid * (1.0 + 1j * _ETA)
        opm = _roots_branch(p, n, weights, z / scale, m0)
    elif method == "newton":
        gen = _Generic(law, sigma_w2, n, weights)
        w0, lam0 = gen.start()
        grid = _descending_grid(lam0, lam.ravel(), log_step)
        z = grid * (1.0 + 1j * _ETA)
        opm, _ = _newton_branch(gen, z, w0)
    else:
        raise ValueError(f"method must be 'auto', 'roots' or 'newton', got {method!r}")

    g = opm / z
    for loc, mass in atoms:
        g = g - mass / (z - loc)
    rho_grid = np.maximum(-g.imag / math.pi, 0.0)
    # grid is strictly descending; every requested λ in (0, grid[0]) is on it, the rest have density 0
    flat = lam.ravel()
    idx = np.searchsorted(-grid, -flat)
    hit = (flat > 0.0) & (idx < grid.size)
    hit[hit] = grid[idx[hit]] == flat[hit]
    density = np.zeros_like(flat)
    density[hit] = rho_grid[idx[hit]]
    return SpectralDensity(lam, density.reshape(lam.shape), tuple(atoms))


def singular_value_density(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    n_factors: int,
    weights: Weights,
    sigmas: np.ndarray,
    *,
    q_star: float | None = None,
    method: Method = "auto",
    log_step: float = 2e-3,
    n_cells: int = _N_CELLS,
) -> SingularValueDensity:
    """Density of the singular values of J: ``ρ_σ(σ) = 2σ ρ(σ²)`` (arguments as ``spectral_density``)."""
    sig = np.asarray(sigmas, dtype=np.float64)
    rho = spectral_density(
        activation,
        sigma_w2,
        sigma_b2,
        n_factors,
        weights,
        sig**2,
        q_star=q_star,
        method=method,
        log_step=log_step,
        n_cells=n_cells,
    )
    dens = np.where(sig > 0.0, 2.0 * sig * rho.density, 0.0)
    return SingularValueDensity(sig, dens, tuple((math.sqrt(loc), mass) for loc, mass in rho.atoms))


def mass_between(result: SpectralDensity, lo: float, hi: float) -> float:
    """∫_lo^hi of the continuous density by the trapezoid rule in log λ (``result.lambdas`` must be a fine,
    increasing grid covering [lo, hi]); atoms are not included."""
    lam, rho = result.lambdas, result.density
    sel = (lam >= lo) & (lam <= hi)
    x, y = np.log(lam[sel]), (lam * rho)[sel]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


__all__ = [
    "D2Law",
    "JacobianMoments",
    "SingularValueDensity",
    "SpectralDensity",
    "d2_law",
    "jacobian_moments",
    "mass_between",
    "singular_value_density",
    "spectral_density",
]
