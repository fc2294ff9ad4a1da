"""Continuation of the Stieltjes transform of J Jᵀ down the real axis: the root-following behind
``sweep.theory.free_probability.spectral_density`` (see its module docstring for the equations).

Two routes, both walking λ down a geometric grid from above the spectral edge and keeping, at each step,
the solution continuous with the previous one:

- ``_roots_branch``: a two-point ``D²`` — all roots of the polynomial in ``δ = M + p`` by batched
  companion-matrix eigensolves, the physical one chosen by chordal distance to the previous, then polished
  by Newton.
- ``_newton_branch`` with ``_Generic``: any law of ``D²`` — Newton in ``w = M_D²⁻¹(M)``, where
  ``z = M_JJᵀ⁻¹(M)`` is explicit, with steps subdivided where Newton fails.
"""

from __future__ import annotations

import cmath
import math

import numpy as np
from numpy.polynomial import polynomial as npoly

from sweep.theory.spectral_moments import D2Law


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
