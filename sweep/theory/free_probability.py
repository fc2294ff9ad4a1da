"""Free-probability spectrum of J Jᵀ for a deep network at its mean-field fixed point.

Pennington, Schoenholz, Ganguli 2017 (arXiv:1711.04735) and 2018 (arXiv:1802.09979).

Public: ``spectral_density`` (density + atoms of J Jᵀ), ``singular_value_density`` (of J),
``log10_singular_value_density`` (per unit log10 σ, as the figures draw it), ``mass_between`` and
``predicted_below`` (integrate a density), and the NamedTuples they return. The law of φ'(h)² and the
moments (``d2_law``, ``jacobian_moments``) are ``sweep.theory.spectral_moments``'s, re-exported here.

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

Density (``spectral_density``). Two routes (the root-following is ``sweep.theory.continuation``):

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


Numbers are numpy float64 on the host.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np

from sweep.theory.continuation import (
    _descending_grid,
    _Generic,
    _newton_branch,
    _roots_branch,
    _start_two_point,
)
from sweep.theory.spectral_moments import (
    _N_CELLS,
    D2Law,
    JacobianMoments,
    Weights,
    _check,
    d2_law,
    jacobian_moments,
)

Method = Literal["auto", "roots", "newton"]

_ETA = 1e-9  # z = λ(1 + iη): relative distance of the evaluation point above the real axis
_MAX_ROOTS_AUTO = 16  # "auto" uses the polynomial roots up to this many factors (then Newton: faster)
_MAX_ROOTS = 40  # beyond, the degree-(n+1) companion eigenproblem loses the branch (wrong at n = 60)
_LN10 = math.log(10.0)


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


class Log10Density(NamedTuple):
    """The singular-value law of J per unit ``x = log10 σ``: ``density = ln(10) σ ρ_σ(σ)`` at ``x`` (the
    continuous part; its area over a range of x is the fraction of singular values there) and the atoms
    ``(σ, mass)``."""

    x: np.ndarray
    density: np.ndarray
    atoms: tuple[tuple[float, float], ...]


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


def log10_singular_value_density(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    n_factors: int,
    weights: Weights,
    x: np.ndarray,
    **options: object,
) -> Log10Density:
    """``singular_value_density`` at ``σ = 10**x``, per unit log10 σ (``options`` as there)."""
    sigmas = 10.0 ** np.asarray(x, np.float64)
    law = singular_value_density(activation, sigma_w2, sigma_b2, n_factors, weights, sigmas, **options)
    return Log10Density(np.asarray(x), _LN10 * sigmas * law.density, law.atoms)


def predicted_below(theory: Log10Density, floor: float) -> float:
    """Predicted fraction of singular values below ``10**floor``: the atom at 0, the continuous density
    integrated over the grid below the floor (trapezoid in log10 sigma), and the tail below the grid.

    ``theory.x`` must be increasing. Integrating below the floor, not "1 - mass above", avoids the top edge,
    where the density can have an integrable spike (one orthogonal factor) that a grid misses. Below the
    grid the density per log10(sigma) falls like a power of sigma (sigma^(2/n) for n factors): the tail is
    extrapolated with the slope of log10(density) over the lowest 0.3 decade of the grid."""
    x, rho = theory.x, theory.density
    seg = x <= floor
    mass = float(np.trapezoid(rho[seg], x[seg]))
    k = int(np.searchsorted(x, x[0] + 0.3))
    if rho[0] > 0.0 and rho[k] > rho[0]:
        mass += float(rho[0] / (math.log10(rho[k] / rho[0]) / (x[k] - x[0]) * _LN10))
    zero = sum(m for loc, m in theory.atoms if loc == 0.0)
    return min(zero + mass, 1.0)


__all__ = [
    "D2Law",
    "JacobianMoments",
    "Log10Density",
    "SingularValueDensity",
    "SpectralDensity",
    "d2_law",
    "jacobian_moments",
    "log10_singular_value_density",
    "mass_between",
    "predicted_below",
    "singular_value_density",
    "spectral_density",
]
