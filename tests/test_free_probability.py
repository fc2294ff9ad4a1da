"""Free-probability spectrum of J Jᵀ against direct simulation of products of random matrices.

The simulations are independent of the module: D is built from numpy closed forms of φ' at h ~ N(0, q*)
(q* from ``scipy.integrate.quad``), or by propagating a random input through a random network; W is Gaussian
or Haar orthogonal (QR with the sign fix). N = 400 and a few draws; every simulation and density is
computed once per session (``functools.cache``) and shared by the tests that need it.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import math
import os
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from scipy import integrate, optimize, special

from sweep.theory import free_probability as fp


def _openblas_threads() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get, set) of the thread count of numpy's bundled OpenBLAS, if it can be found (best effort)."""
    for path in glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*")):
        lib = ctypes.CDLL(path)  # the already-loaded library: dlopen hands back the same handle
        for prefix, suffix in [("scipy_openblas_", "64_"), ("openblas_", "")]:
            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and put is not None:
                return get, put
    return None


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """400x400 products and QRs on 2 shared cores: OpenBLAS threads spin-waiting on a busy machine made
    this file take 156 s instead of 28 s. Use one thread here and restore the previous count after."""
    found = _openblas_threads()
    if found is None:
        yield
        return
    get, put = found
    before = get()
    put(1)
    try:
        yield
    finally:
        put(before)


N = 400
DRAWS = 4
N_FACTORS = 8  # a network with 9 hidden layers

DPHI = {
    "relu": lambda h: (h > 0.0).astype(float),
    "hard_tanh": lambda h: (np.abs(h) < 1.0).astype(float),
    "tanh": lambda h: 1.0 - np.tanh(h) ** 2,
    "linear": lambda h: np.ones_like(h),
}
PHI = {"tanh": np.tanh, "hard_tanh": lambda h: np.clip(h, -1.0, 1.0), "relu": lambda h: np.maximum(h, 0.0)}


def gauss_expect(f) -> float:
    """E[f(z)], z ~ N(0,1), by adaptive quadrature (split at the kinks of hard_tanh-like integrands)."""
    pdf = lambda z: f(z) * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # noqa: E731
    return sum(integrate.quad(pdf, a, b, limit=200, epsabs=1e-13)[0] for a, b in [(-40, 0), (0, 40)])


def ref_q_star(act: str, sigma_w2: float, sigma_b2: float) -> float:
    """Fixed point of the length map, independent of the module (quad + brentq)."""

    def f(q: float) -> float:
        if act == "hard_tanh":  # split at the kinks ±1/√q
            a = 1.0 / math.sqrt(q)
            inner = integrate.quad(lambda z: q * z * z * math.exp(-0.5 * z * z), -a, a)[0]
            second = inner / math.sqrt(2.0 * math.pi) + math.erfc(a / math.sqrt(2.0))
        else:
            second = gauss_expect(lambda z: PHI[act](math.sqrt(q) * z) ** 2)
        return sigma_w2 * second + sigma_b2 - q

    return optimize.brentq(f, 1e-6, 50.0, xtol=1e-13)


def critical_sigma_w2(act: str, sigma_b2: float) -> float:
    """σ_w² with χ₁ = σ_w² E[φ'(h)²] = 1 at q*(σ_w², σ_b²) (reference q*)."""

    def chi_minus_one(sw: float) -> float:
        q = ref_q_star(act, sw, sigma_b2)
        return sw * gauss_expect(lambda z: float(DPHI[act](np.array(math.sqrt(q) * z))) ** 2) - 1.0

    return optimize.brentq(chi_minus_one, 1.0, 3.0, xtol=1e-12)


HARD_TANH_SB2 = 0.05  # p = 0.858 < 7/8: no atom at (σ_w² )^n with orthogonal weights
HARD_TANH_ATOM_SB2 = 0.01  # p = 0.951: orthogonal weights pass a (8p - 7) N dimensional subspace untouched
TANH_SB2 = 0.05


@cache
def crit(act: str, sigma_b2: float) -> tuple[float, float]:
    sw = critical_sigma_w2(act, sigma_b2)
    return sw, ref_q_star(act, sw, sigma_b2)


def haar(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def weight(rng: np.random.Generator, sigma_w2: float, kind: str, n: int = N) -> np.ndarray:
    if kind == "gaussian":
        return math.sqrt(sigma_w2 / n) * rng.standard_normal((n, n))
    return math.sqrt(sigma_w2) * haar(rng, n)


@cache
def simulate(act: str, sigma_w2: float, q: float, kind: str, draws: int = DRAWS, seed: int = 0):
    """Eigenvalues of J Jᵀ, J = D_n W_n ⋯ D_1 W_1 with D_l = diag φ'(h_l), h_l ~ N(0, q) i.i.d.

    Returns ``(eigenvalues [draws, N], active [draws, n])``: the number of non-zero entries of each D."""
    rng = np.random.default_rng(seed)
    eigs, active = [], []
    for _ in range(draws):
        jac, counts = np.eye(N), []
        for _ in range(N_FACTORS):
            d = DPHI[act](math.sqrt(q) * rng.standard_normal(N))
            jac = d[:, None] * (weight(rng, sigma_w2, kind) @ jac)
            counts.append(int(np.count_nonzero(d)))
        eigs.append(np.linalg.eigvalsh(jac @ jac.T))
        active.append(counts)
    return np.array(eigs), np.array(active)


@cache
def propagate(
    act: str, sigma_w2: float, sigma_b2: float, q: float, kind: str, draws: int = DRAWS, seed: int = 1
):
    """Eigenvalues of J Jᵀ for J = ∂x^n/∂x^0 of a real random network started at the fixed point."""
    rng = np.random.default_rng(seed)
    eigs = []
    for _ in range(draws):
        x = PHI[act](math.sqrt(q) * rng.standard_normal(N))
        jac = np.eye(N)
        for _ in range(N_FACTORS):
            w = weight(rng, sigma_w2, kind)
            h = w @ x + math.sqrt(sigma_b2) * rng.standard_normal(N)
            jac = DPHI[act](h)[:, None] * (w @ jac)
            x = PHI[act](h)
        eigs.append(np.linalg.eigvalsh(jac @ jac.T))
    return np.array(eigs)


LAMBDAS = np.geomspace(1e-8, 300.0, 6000)  # two-point D²: the tail below 1e-8 is a known power law
LAMBDAS_SMOOTH = np.geomspace(1e-4, 300.0, 2500)


@cache
def density(
    act: str, sigma_w2: float, sigma_b2: float, kind: str, method: str = "auto"
) -> fp.SpectralDensity:
    lam = LAMBDAS if act in ("relu", "hard_tanh", "linear") else LAMBDAS_SMOOTH
    return fp.spectral_density(act, sigma_w2, sigma_b2, N_FACTORS, kind, lam, method=method)


def survival(rho: fp.SpectralDensity) -> np.ndarray:
    """Predicted P(λ' > λ) at ``rho.lambdas`` (continuous mass above, by trapezoid in log λ, plus atoms)."""
    lam, y = rho.lambdas, rho.lambdas * rho.density
    cell = 0.5 * (y[1:] + y[:-1]) * np.diff(np.log(lam))
    above = np.concatenate([np.cumsum(cell[::-1])[::-1], [0.0]])
    return above + np.array([sum(m for loc, m in rho.atoms if loc > x) for x in lam])


def ks_above(rho: fp.SpectralDensity, eigs: np.ndarray, lam_min: float) -> float:
    """sup over λ ≥ lam_min of |predicted - empirical| survival function."""
    emp = 1.0 - np.searchsorted(np.sort(eigs.ravel()), rho.lambdas, side="right") / eigs.size
    sel = rho.lambdas >= lam_min
    return float(np.max(np.abs(survival(rho) - emp)[sel]))


# ---------------------------------------------------------------------------------------------------------
# (a) relu at criticality: binned masses and the continuous mass


@pytest.mark.parametrize(("kind", "cont_above"), [("gaussian", 0.356), ("orthogonal", 0.414)])
def test_relu_critical_binned_mass_matches_simulation(kind, cont_above):
    rho = density("relu", 2.0, 0.0, kind)
    eigs, _ = simulate("relu", 2.0, 1.0, kind, draws=5)
    edges = np.geomspace(1e-3, 200.0, 13)
    pred = np.array([fp.mass_between(rho, a, b) for a, b in itertools.pairwise(edges)])
    meas = np.histogram(eigs.ravel(), edges)[0] / eigs.size
    assert np.max(np.abs(pred - meas)) < 0.01, (pred, meas)  # measured: 0.0024 (Gaussian), 0.0013 (orth.)
    above = fp.mass_between(rho, 1e-4, 300.0)
    assert above == pytest.approx(cont_above, abs=1e-3)  # docs/theory.md
    assert np.mean(eigs > 1e-4) == pytest.approx(above, abs=0.015)  # measured 0.352 / 0.408
    assert rho.atoms == ((0.0, 0.5),)


# ---------------------------------------------------------------------------------------------------------
# (b) hard-tanh and tanh near criticality: distance between predicted and empirical CDFs
#
# Expected finite-N fluctuation. For hard-tanh each D has a Binomial(N, p) number of active units, which
# moves up to sqrt(n p(1-p)/(N·draws)) ≈ 0.025 (p = 0.86, n = 8, N·draws = 1600) of the spectral mass; for
# tanh the empirical law of D² has a mean off by ~std(φ'²)/√N per layer, shifting log λ by ≈ 0.04 after 8
# layers and 4 draws, i.e. ~0.01 of mass where λρ(λ) ≈ 0.2. Eigenvalue counting noise itself is O(log N/N).
# Thresholds: 0.03 (hard-tanh), 0.02 (tanh); measured ≈ 0.007/0.012 and 0.005/0.007. The CDF is compared
# above λ = 1e-3: below, the atom at 0 is enlarged at finite N (rank J = min_l of the active counts).


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_hard_tanh_near_criticality_cdf(kind):
    sw, q = crit("hard_tanh", HARD_TANH_SB2)
    rho = density("hard_tanh", sw, HARD_TANH_SB2, kind)
    eigs, _ = simulate("hard_tanh", sw, q, kind)
    assert ks_above(rho, eigs, 1e-3) < 0.03
    p = math.erf(1.0 / math.sqrt(2.0 * q))
    assert rho.atoms == (pytest.approx((0.0, 1.0 - p)),)


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_tanh_near_criticality_cdf_of_a_propagated_network(kind):
    sw, q = crit("tanh", TANH_SB2)
    assert sw == pytest.approx(1.76, abs=0.005)  # check value of docs/theory.md
    rho = density("tanh", sw, TANH_SB2, kind)
    eigs = propagate("tanh", sw, TANH_SB2, q, kind)
    assert rho.atoms == ()
    assert ks_above(rho, eigs, 1e-3) < 0.02


def test_hard_tanh_orthogonal_atom_at_isometry():
    """p > 1 - 1/n: (1 - n(1-p))N directions pass every D untouched, eigenvalue exactly (σ_w²)^n."""
    sw, q = crit("hard_tanh", HARD_TANH_ATOM_SB2)
    p = math.erf(1.0 / math.sqrt(2.0 * q))
    rho = density("hard_tanh", sw, HARD_TANH_ATOM_SB2, "orthogonal")
    top = sw**N_FACTORS
    assert rho.atoms == (pytest.approx((0.0, 1.0 - p)), pytest.approx((top, N_FACTORS * p - N_FACTORS + 1)))
    eigs, active = simulate("hard_tanh", sw, q, "orthogonal")
    at_top = np.mean(np.abs(eigs / top - 1.0) < 1e-8, axis=1)
    exact = np.maximum(0, N - (N - active).sum(axis=1)) / N  # dimension of the untouched subspace
    np.testing.assert_allclose(at_top, exact)
    sd = math.sqrt(N_FACTORS * p * (1 - p) / (N * DRAWS))
    assert at_top.mean() == pytest.approx(N_FACTORS * p - N_FACTORS + 1, abs=4 * sd)
    assert ks_above(rho, eigs, 1e-3) < 0.04  # measured 0.022: the atom's own fluctuation, sd ≈ 0.015
    assert rho.density[np.abs(rho.lambdas / top - 1) < 0.01].max() < 1e-6  # isolated atom, no spike


# ---------------------------------------------------------------------------------------------------------
# (c) moments


@pytest.mark.parametrize("act", ["relu", "hard_tanh"])
@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_critical_variance_is_n_over_p(act, kind):
    sw, q = (2.0, 1.0) if act == "relu" else crit(act, HARD_TANH_SB2)
    p = 0.5 if act == "relu" else math.erf(1.0 / math.sqrt(2.0 * q))
    mean, var = fp.jacobian_moments(act, sw, 0.0 if act == "relu" else HARD_TANH_SB2, N_FACTORS, kind)
    assert mean == pytest.approx(1.0, rel=1e-7)  # σ_w² critical to the reference q*'s accuracy
    expected = N_FACTORS / p if kind == "gaussian" else N_FACTORS * (1.0 / p - 1.0)
    assert var == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize(
    ("act", "sw", "sb"), [("tanh", 1.5, 0.05), ("hard_tanh", 1.3, 0.1), ("relu", 1.6, 0.1)]
)
@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_moments_general_formula_against_quadrature(act, sw, sb, kind):
    """mean = χ^n, variance = χ^{2n} n (μ₂/μ₁² - 1 + s_W): μ_k = E[φ'^{2k}] from scipy quad at q*."""
    q = ref_q_star(act, sw, sb)
    assert fp.d2_law(act, sw, sb).q_star == pytest.approx(q, rel=1e-9)
    mu1 = gauss_expect(lambda z: float(DPHI[act](np.array(math.sqrt(q) * z))) ** 2)
    mu2 = gauss_expect(lambda z: float(DPHI[act](np.array(math.sqrt(q) * z))) ** 4)
    chi = sw * mu1
    s_w = 1.0 if kind == "gaussian" else 0.0
    mean, var = fp.jacobian_moments(act, sw, sb, N_FACTORS, kind)
    assert mean == pytest.approx(chi**N_FACTORS, rel=1e-7)
    assert var == pytest.approx(chi ** (2 * N_FACTORS) * N_FACTORS * (mu2 / mu1**2 - 1 + s_w), rel=1e-7)


@pytest.mark.parametrize(("act", "sw", "sb"), [("tanh", 1.5, 0.05), ("relu", 1.6, 0.1)])
@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_moments_against_simulation(act, sw, sb, kind):
    """Off criticality (χ ≠ 1). Each draw is compared with the same formula evaluated on the realised D's
    (free probability applies to any D law: this removes the D-sampling noise); the unconditional
    prediction of ``jacobian_moments`` is compared with the draws' average within 4 standard errors."""
    n, draws, width = N_FACTORS, 6, 300
    q = ref_q_star(act, sw, sb)
    rng = np.random.default_rng(7)
    s_w = 1.0 if kind == "gaussian" else 0.0
    cond_mean, cond_var, mean, var = [], [], [], []
    for _ in range(draws):
        jac, log_m1, ratio = np.eye(width), 0.0, 0.0
        for _ in range(n):
            d2 = DPHI[act](math.sqrt(q) * rng.standard_normal(width)) ** 2
            jac = np.sqrt(d2)[:, None] * (weight(rng, sw, kind, width) @ jac)
            log_m1 += math.log(sw * d2.mean())
            ratio += (d2**2).mean() / d2.mean() ** 2 - 1.0 + s_w
        eig = np.linalg.eigvalsh(jac @ jac.T)
        m1 = math.exp(log_m1)
        cond_mean.append(eig.mean() / m1 - 1.0)
        cond_var.append(eig.var() / (m1**2 * ratio) - 1.0)
        mean.append(eig.mean())
        var.append(eig.var())
    # measured: conditional errors ≈ ±0.5% (orthogonal), ±3% mean / ±10% variance per draw (Gaussian)
    for errs in (cond_mean, cond_var):
        assert abs(np.mean(errs)) < 4 * np.std(errs) / math.sqrt(draws) + 0.01, errs
    pred = fp.jacobian_moments(act, sw, sb, n, kind)
    assert abs(np.mean(mean) - pred.mean) < 4 * np.std(mean) / math.sqrt(draws) + 0.01 * pred.mean
    assert abs(np.mean(var) - pred.variance) < 4 * np.std(var) / math.sqrt(draws) + 0.02 * pred.variance


@pytest.mark.parametrize(
    ("act", "sb", "kind"),
    [
        ("relu", 0.0, "gaussian"),
        ("relu", 0.0, "orthogonal"),
        ("hard_tanh", HARD_TANH_ATOM_SB2, "orthogonal"),
        ("tanh", TANH_SB2, "gaussian"),
    ],
)
def test_density_reproduces_moment_formulas(act, sb, kind):
    """∫λρ + atoms = χ^n and the variance: the density route and the moment route are independent."""
    sw = 2.0 if act == "relu" else crit(act, sb)[0]
    rho = density(act, sw, sb, kind)
    lam, y = rho.lambdas, rho.lambdas * rho.density

    def moment(k: int) -> float:
        f = lam**k * y
        cont = float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(np.log(lam))))
        return cont + sum(m * loc**k for loc, m in rho.atoms)

    mean, var = fp.jacobian_moments(act, sw, sb, N_FACTORS, kind)
    assert moment(1) == pytest.approx(mean, rel=2e-3)
    assert moment(2) - moment(1) ** 2 == pytest.approx(var, rel=5e-3)


def test_selu_jump_of_the_derivative_is_resolved():
    """selu's φ' jumps at h = 0 (a cell edge): the cells take one-sided values there, so the density's mean
    matches χ^n (with D² taken at the edges themselves one cell straddled the jump: 7% off at n = 6)."""
    lam = np.geomspace(1e-6, 1e4, 1200)
    rho = fp.spectral_density("selu", 1.5, 0.05, 6, "orthogonal", lam)
    m1 = np.sum(0.5 * np.diff(np.log(lam)) * ((lam**2 * rho.density)[1:] + (lam**2 * rho.density)[:-1]))
    # the cells' own μ₁ is O(cell²) off: 3.6e-4 per factor here (q* = 8.95), 0.25% after 6 factors
    assert m1 == pytest.approx(fp.jacobian_moments("selu", 1.5, 0.05, 6, "orthogonal").mean, rel=5e-3)


# ---------------------------------------------------------------------------------------------------------
# (d) normalisation, routes, edges, degenerate cases


@pytest.mark.parametrize(
    ("act", "sw", "sb", "kind", "tail_power"),
    [
        ("relu", 2.0, 0.0, "gaussian", N_FACTORS),
        ("relu", 2.0, 0.0, "orthogonal", N_FACTORS),
        ("hard_tanh", None, HARD_TANH_ATOM_SB2, "orthogonal", N_FACTORS),
        ("linear", 1.0, 0.0, "gaussian", N_FACTORS + 1),
    ],
)
def test_density_and_atoms_integrate_to_one(act, sw, sb, kind, tail_power):
    """Continuous mass above 1e-8 + the power-law tail below (ρ ∝ λ^{1/k - 1} ⇒ mass k a ρ(a)) + atoms."""
    sw = crit(act, sb)[0] if sw is None else sw
    rho = density(act, sw, sb, kind)
    a = rho.lambdas[0]
    tail = tail_power * a * rho.density[0]
    total = fp.mass_between(rho, a, 300.0) + tail + sum(m for _, m in rho.atoms)
    assert total == pytest.approx(1.0, abs=2e-3)
    assert fp.mass_between(rho, a, 300.0) + tail == pytest.approx(rho.continuous_mass, abs=2e-3)


def test_tanh_orthogonal_integrates_to_one():
    sw, _ = crit("tanh", TANH_SB2)
    lam = np.geomspace(1e-14, 10.0, 1500)
    rho = fp.spectral_density("tanh", sw, TANH_SB2, N_FACTORS, "orthogonal", lam, log_step=5e-3)
    assert fp.mass_between(rho, 1e-14, 10.0) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("act", "sb", "kind"),
    [("relu", 0.0, "gaussian"), ("relu", 0.0, "orthogonal"), ("hard_tanh", HARD_TANH_ATOM_SB2, "orthogonal")],
)
def test_polynomial_roots_and_newton_routes_agree(act, sb, kind):
    sw = 2.0 if act == "relu" else crit(act, sb)[0]
    a, b = density(act, sw, sb, kind, "roots"), density(act, sw, sb, kind, "newton")
    assert a.atoms == b.atoms
    np.testing.assert_allclose(b.density, a.density, rtol=1e-6, atol=1e-9 * a.density.max())


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_deep_relu_newton_route_moments(kind):
    """n = 99 (depth 100): "auto" switches to Newton; its density still carries mean 1, variance n/p or
    n(1/p - 1). The polynomial route is refused there (degree 100)."""
    n = 99
    lam = np.geomspace(1e-4, 1e5, 2500)
    rho = fp.spectral_density("relu", 2.0, 0.0, n, kind, lam)
    f1, f2 = lam**2 * rho.density, lam**3 * rho.density
    dlog = np.diff(np.log(lam))
    m1, m2 = (float(np.sum(0.5 * (f[1:] + f[:-1]) * dlog)) for f in (f1, f2))
    assert m1 == pytest.approx(1.0, rel=2e-3)
    assert m2 - m1**2 == pytest.approx(2 * n if kind == "gaussian" else n, rel=1e-2)
    with pytest.raises(ValueError, match="ill-conditioned"):
        fp.spectral_density("relu", 2.0, 0.0, n, kind, lam[:3], method="roots")


def test_linear_gaussian_top_edge_is_fuss_catalan():
    """Product of n Ginibre matrices: the spectrum of J Jᵀ ends at (n+1)^{n+1}/n^n (σ_w² = 1)."""
    n = 4
    edge = (n + 1) ** (n + 1) / n**n
    lam = edge * np.array([0.99, 0.999, 1.001, 1.01])
    rho = fp.spectral_density("linear", 1.0, 0.0, n, "gaussian", lam, log_step=5e-4)
    assert np.all(rho.density[:2] > 0.0)
    assert np.all(rho.density[2:] < 1e-6)


def test_orthogonal_linear_is_a_delta():
    sw2, n = 1.3, 5
    with pytest.raises(ValueError, match="exactly"):
        fp.spectral_density("linear", sw2, 0.0, n, "orthogonal", np.geomspace(0.1, 10, 5))
    mean, var = fp.jacobian_moments("linear", sw2, 0.0, n, "orthogonal")
    assert (mean, var) == (pytest.approx(sw2**n), 0.0)
    rng = np.random.default_rng(3)
    jac = np.linalg.multi_dot([weight(rng, sw2, "orthogonal", 50) for _ in range(n)])
    np.testing.assert_allclose(np.linalg.eigvalsh(jac @ jac.T), sw2**n, rtol=1e-10)
    with pytest.raises(ValueError, match="deterministic"):  # tanh with q* = 0: D = I
        fp.spectral_density("tanh", 0.9, 0.0, n, "orthogonal", np.geomspace(0.1, 10, 5))


def test_n_cells_convergence_smooth_phi():
    """The piecewise-uniform D² law converges as O(cells⁻²), also where w nears the real axis."""
    lam = np.geomspace(0.01, 3.0, 200)
    coarse = fp.spectral_density("tanh", 1.2, 0.01, N_FACTORS, "orthogonal", lam, n_cells=300)
    fine = fp.spectral_density("tanh", 1.2, 0.01, N_FACTORS, "orthogonal", lam, n_cells=600)
    assert np.max(np.abs(coarse.density - fine.density)) < 0.01 * fine.density.max()


def test_singular_value_density_is_the_change_of_variables():
    rho = density("relu", 2.0, 0.0, "gaussian")
    sv = fp.singular_value_density("relu", 2.0, 0.0, N_FACTORS, "gaussian", np.sqrt(rho.lambdas))
    # σ² differs from λ by rounding, and is then a different point of the continuation grid
    np.testing.assert_allclose(sv.density, 2.0 * sv.sigmas * rho.density, rtol=1e-9)
    inside = (rho.lambdas >= 1e-3) & (rho.lambdas <= 300.0)
    assert np.trapezoid(sv.density[inside], sv.sigmas[inside]) == pytest.approx(
        fp.mass_between(rho, 1e-3, 300.0), abs=1e-4
    )
    assert sv.atom_at_zero == 0.5


def test_hard_tanh_d2_law_and_arguments():
    sw, q = crit("hard_tanh", HARD_TANH_SB2)
    law = fp.d2_law("hard_tanh", sw, HARD_TANH_SB2)
    assert law.q_star == pytest.approx(q, rel=1e-9)
    assert law.mu1 == pytest.approx(special.erf(1 / math.sqrt(2 * q)), rel=1e-12)
    with pytest.raises(ValueError, match="n_factors"):
        fp.jacobian_moments("tanh", 1.5, 0.05, 0)
    with pytest.raises(ValueError, match="weights"):
        fp.jacobian_moments("tanh", 1.5, 0.05, 3, "unitary")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two-point"):
        fp.spectral_density("tanh", 1.5, 0.05, 3, "gaussian", np.ones(2), method="roots")
    with pytest.raises(KeyError):
        fp.d2_law("softsign", 1.0, 0.0)


@pytest.mark.parametrize(
    ("act", "sw", "sb"), [("tanh", 1.5, 0.05), ("hard_tanh", 1.3, 0.1), ("relu", 1.6, 0.1)]
)
def test_d2_moments_at_q_star_are_the_laws_moments(act, sw, sb):
    """``d2_moments`` (many q at once, float32 for smooth φ) agrees with ``d2_law`` at q*."""
    from sweep.theory.spectral_moments import d2_moments

    law = fp.d2_law(act, sw, sb)
    mu1, mu2 = d2_moments(act, sw, sb, np.array([law.q_star]))
    np.testing.assert_allclose([mu1[0], mu2[0]], [law.mu1, law.mu2], rtol=1e-6)
