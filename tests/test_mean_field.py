"""Mean-field theory checked against independent computations.

References here never call the module's own maths: Monte Carlo of wide random networks (numpy), scipy's
adaptive quadrature, dense numpy grids, bivariate normal CDFs, closed forms from the papers. Precision tests
run under ``jax.enable_x64``; calls keep to at most 8 points so that they share one compiled program.
"""

from __future__ import annotations

import itertools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from sweep.theory import mean_field as mf


@pytest.fixture(autouse=True)
def _strict_jax():
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield


@pytest.fixture
def x64():
    """64-bit JAX for the test (restored afterwards)."""
    with jax.enable_x64(True):
        yield


def np64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ------------------------------------------------------------------------------------- independent refs
def quad_expectation(f, q: float) -> float:
    """E[f(u)], u ~ N(0, q), by scipy's adaptive quadrature split at the kinks 0, ±1."""
    half_width = 10 * math.sqrt(q)
    pts = sorted({-half_width, half_width} | {x for x in (-1.0, 0.0, 1.0) if abs(x) < half_width})
    total = 0.0
    for a, b in itertools.pairwise(pts):
        total += integrate.quad(
            lambda u: f(u) * math.exp(-u * u / (2 * q)) / math.sqrt(2 * math.pi * q),
            a,
            b,
            epsabs=1e-14,
            epsrel=1e-12,
            limit=200,
        )[0]
    return total


def dense_expectation_2d(f, q: float, c: float, n: int = 2401, half_width: float = 9.0) -> float:
    """E[f(u1, u2)] on a dense (z1, z2) trapezoid grid; error O(h²) ≈ 1e-6 for kinked f (h = 0.0075)."""
    z = np.linspace(-half_width, half_width, n)
    w = np.exp(-z * z / 2) * (z[1] - z[0]) / math.sqrt(2 * math.pi)
    z1, z2 = z[:, None], z[None, :]
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    return float(w @ f(u1, u2) @ w)


def simulate_network(
    phi, dphi, sigma_w2, sigma_b2, *, width=1000, depth=40, burn=20, pairs=4, c0=0.3, seed=0
):
    """Wide random net, numpy: W ~ N(0, σ_w²/N), b ~ N(0, σ_b²), fresh per layer.

    Inputs: ``pairs`` pairs of pre-activations h⁰ with q⁰ = 1 and correlation c0. Returns per-layer mean
    q^l over all inputs (layers 1..depth), and means over layers > burn of q, pair correlation and
    χ₁ = σ_w² mean φ'(h)² (the latter is the squared gain of a random perturbation per layer).
    """
    rng = np.random.default_rng(seed)
    z1 = rng.standard_normal((width, pairs))
    z2 = rng.standard_normal((width, pairs))
    h = np.concatenate([z1, c0 * z1 + math.sqrt(1 - c0 * c0) * z2], axis=1)
    q_layers, q_late, c_late, chi_late = [], [], [], []
    scale = np.float32(math.sqrt(sigma_w2 / width))
    for layer in range(1, depth + 1):
        if layer > burn:
            chi_late.append(sigma_w2 * np.mean(dphi(h) ** 2))
        weights = rng.standard_normal((width, width), dtype=np.float32) * scale
        h = weights @ phi(h) + rng.standard_normal((width, 1)) * math.sqrt(sigma_b2)
        q_layers.append(np.mean(h * h))
        if layer > burn:
            q_late.append(np.mean(h * h))
            a, b = h[:, :pairs], h[:, pairs:]
            c_late.append(np.mean(np.sum(a * b, 0) / np.sqrt(np.sum(a * a, 0) * np.sum(b * b, 0))))
    return np.array(q_layers), float(np.mean(q_late)), float(np.mean(c_late)), float(np.mean(chi_late))


def np_tanh_d(x):
    return 1 - np.tanh(x) ** 2


def np_hard_tanh(x):
    return np.clip(x, -1, 1)


def np_hard_tanh_d(x):
    return (np.abs(x) < 1).astype(np.float64)


def np_relu(x):
    return np.maximum(x, 0)


def np_relu_d(x):
    return (x > 0).astype(np.float64)


# ------------------------------------------------------------------------------------------ quadrature
@pytest.mark.usefixtures("x64")
def test_gauss_hermite_helpers_are_exact_on_polynomials():
    q = jnp.array([0.3, 1.0, 2.5])
    # E[u⁴] = 3q², E[u⁶] = 15q³ for u ~ N(0, q)
    np.testing.assert_allclose(
        np64(mf.gauss_hermite_1d(lambda u: u**4, q, n=8)), 3 * np64(q) ** 2, rtol=1e-13
    )
    np.testing.assert_allclose(
        np64(mf.gauss_hermite_1d(lambda u: u**6, q, n=8)), 15 * np64(q) ** 3, rtol=1e-13
    )
    c = jnp.array([-0.4, 0.2, 0.9])
    # E[u1² u2²] = q²(1 + 2c²) (Isserlis)
    got = np64(mf.gauss_hermite_2d(lambda a, b: a * a * b * b, q, c, n=6))
    np.testing.assert_allclose(got, np64(q) ** 2 * (1 + 2 * np64(c) ** 2), rtol=1e-13)


@pytest.mark.usefixtures("x64")
def test_sinh_legendre_rule_matches_adaptive_quadrature():
    """The generic 1-D rule: relative error < 1e-9 against scipy for smooth and kinked φ², q in 1e-4..1e3."""
    qs = [1e-4, 0.3, 3.0, 30.0, 1e3]
    cases = {
        "tanh²": (lambda u: jnp.tanh(u) ** 2, lambda u: math.tanh(u) ** 2),
        "relu²": (lambda u: jnp.maximum(u, 0.0) ** 2, lambda u: max(u, 0.0) ** 2),
        "tanh'²": (lambda u: (1 - jnp.tanh(u) ** 2) ** 2, lambda u: (1 - math.tanh(u) ** 2) ** 2),
    }
    for name, (f_jax, f_py) in cases.items():
        got = np64(mf.gaussian_expectation(f_jax, jnp.array(qs)))
        want = np.array([quad_expectation(f_py, q) for q in qs])
        np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=name)


# ------------------------------------------------------------------------------------- closed forms
def _kernel_values(activation: str, q: float, c: float) -> dict[str, float]:
    kernel = mf.gaussian_kernel(activation)
    qa = jnp.array([q])
    m = kernel.moments(qa)
    cov, dcov = kernel.correlation(qa)(jnp.array([c]))
    return {"V": m.var[0], "D": m.dvar[0], "V'": m.var_slope[0], "C": cov[0], "Cp": dcov[0]}


def normal_box_probability(q: float, c: float, lo: float, hi: float) -> float:
    """P(lo < u1 < hi, lo < u2 < hi) for the bivariate normal with variances q and correlation c:
    scipy quadrature over u1 of the conditional normal probability of u2 (exact to ~1e-12)."""
    sd = math.sqrt(q * (1 - c * c))

    def integrand(u1: float) -> float:
        inner = stats.norm.cdf((hi - c * u1) / sd) - stats.norm.cdf((lo - c * u1) / sd)
        return inner * math.exp(-u1 * u1 / (2 * q)) / math.sqrt(2 * math.pi * q)

    a, b = max(lo, -12 * math.sqrt(q)), min(hi, 12 * math.sqrt(q))
    return integrate.quad(integrand, a, b, epsabs=1e-13, epsrel=1e-12, limit=200)[0]


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("activation", ["erf", "relu", "hard_tanh"])
def test_closed_form_kernels_match_direct_integration(activation):
    """Closed forms (erf arcsin kernels, arc-cosine kernel, hard_tanh via Price's theorem) against scipy
    quadrature (1-D), a dense 2-D numpy grid (E[φφ]: O(h²) ≈ 1e-6 error on kinked integrands, so 2e-5) and
    exact bivariate normal probabilities (E[φ'φ'] of relu and hard_tanh, whose φ' jumps)."""
    phi = {"erf": special.erf, "relu": np_relu, "hard_tanh": np_hard_tanh}[activation]
    dphi = {
        "erf": lambda x: 2 / math.sqrt(math.pi) * np.exp(-x * x),
        "relu": np_relu_d,
        "hard_tanh": np_hard_tanh_d,
    }[activation]
    for q, c in [(0.4, 0.3), (2.0, 0.8), (5.0, 0.97)]:
        got = _kernel_values(activation, q, c)
        want_v = quad_expectation(lambda u: float(phi(np.float64(u))) ** 2, q)
        want_d = quad_expectation(lambda u: float(dphi(np.float64(u))) ** 2, q)
        want_c = dense_expectation_2d(lambda a, b: phi(a) * phi(b), q, c)
        if activation == "erf":
            want_cp = dense_expectation_2d(lambda a, b: dphi(a) * dphi(b), q, c)
        else:
            want_cp = normal_box_probability(q, c, *((0.0, np.inf) if activation == "relu" else (-1.0, 1.0)))
        np.testing.assert_allclose(float(got["V"]), want_v, rtol=1e-9)
        np.testing.assert_allclose(float(got["D"]), want_d, rtol=1e-9)
        np.testing.assert_allclose(float(got["C"]), want_c, rtol=2e-5)
        np.testing.assert_allclose(float(got["Cp"]), want_cp, rtol=1e-7)
        # V'(q) by central differences of the independent V
        h = 1e-4 * q
        slope = (
            quad_expectation(lambda u: float(phi(np.float64(u))) ** 2, q + h)
            - quad_expectation(lambda u: float(phi(np.float64(u))) ** 2, q - h)
        ) / (2 * h)
        np.testing.assert_allclose(float(got["V'"]), slope, rtol=1e-6)


@pytest.mark.usefixtures("x64")
def test_erf_closed_form_matches_generic_quadrature_path():
    """The same function through the generic path (a callable is never matched to a closed form)."""
    w2 = jnp.array([0.6, 1.2, 1.5, 2.0, 3.0, 4.0, 2.5, 1.8])
    b2 = jnp.array([0.05, 0.0, 0.3, 0.05, 0.5, 0.01, 2.0, 0.2])
    closed = mf.mean_field("erf", w2, b2)
    generic = mf.mean_field(jax.scipy.special.erf, w2, b2)
    for name in mf.MeanField._fields:
        np.testing.assert_allclose(np64(getattr(generic, name)), np64(getattr(closed, name)), rtol=1e-6)
    assert np.any(np64(closed.c_star) < 1) and np.any(np64(closed.c_star) == 1)  # both phases covered


# --------------------------------------------------------------------------------------- Monte Carlo
MC_CASES = {
    # name: activation, numpy φ, φ', σ_w², σ_b², c0 (pair correlation at the input)
    "tanh chaotic": ("tanh", np.tanh, np_tanh_d, 4.0, 0.05, 0.3),
    "relu ordered": ("relu", np_relu, np_relu_d, 1.0, 0.2, 0.3),
    "hard_tanh chaotic": ("hard_tanh", np_hard_tanh, np_hard_tanh_d, 2.5, 0.1, 0.3),
}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("case", list(MC_CASES))
def test_monte_carlo_of_wide_networks(case):
    """Width 1000, 40 layers, 8 inputs (4 pairs); averages over the last 20 layers.

    Tolerances. Per layer, the empirical q has relative s.d. ≈ √(2/N) = 4.5 % when the inputs are fully
    correlated (ordered phase: c* = 1, so the 8 inputs do not average) and ≈ 1.6 % when they decorrelate
    (chaotic); the layer-to-layer memory (multiplier ≤ 0.85) and the average over 20 layers bring this to
    ≲ 1.5 %, and seeds 0-4 of the tanh case spread by 1 %. So q* and χ₁ within 4 %. Pair correlations:
    s.d. ≈ (1-c²)/√N ≈ 0.03 per layer and pair, ≈ 0.01 after averaging, so c* within 0.04 absolute; 20
    burn-in layers shrink the initial offset |c0 - c*| by e^(-20/ξ_c) ≤ 6 % (ξ_c ≤ 7 here, offset ≤ 0.7).
    """
    activation, phi, dphi, w2, b2, c0 = MC_CASES[case]
    q_layers, q_mc, c_mc, chi_mc = simulate_network(phi, dphi, w2, b2, c0=c0)
    theory = mf.mean_field(activation, w2, b2)
    assert abs(q_mc / float(theory.q_star) - 1) < 0.04, (q_mc, theory.q_star)
    assert abs(chi_mc / float(theory.chi_1) - 1) < 0.04, (chi_mc, theory.chi_1)
    assert abs(c_mc - float(theory.c_star)) < 0.04, (c_mc, theory.c_star)
    if float(theory.chi_1) > 1:  # decorrelating inputs: per layer s.d. ≈ 1.6-3 %, so 8 %
        iterates = np64(mf.length_map_iterates(activation, w2, b2, 1.0, 5))
        np.testing.assert_allclose(q_layers[:5], iterates, rtol=0.08)


# ----------------------------------------------------------------------------------- critical lines
@pytest.mark.usefixtures("x64")
def test_relu_critical_point():
    assert float(mf.critical_sigma_w2("relu", 0.0)) == 2.0
    r = mf.mean_field("relu", jnp.array([2.0, 1.9, 2.5]), jnp.array([0.0, 0.0, 0.1]))
    assert float(r.chi_1[0]) == 1.0 and float(r.chi_c[0]) == 1.0
    assert np.isinf(float(r.xi_c[0])) and np.isinf(float(r.xi_q[0]))
    assert float(r.q_star[1]) == 0.0 and abs(float(r.chi_1[1]) - 0.95) < 1e-15  # σ_b² = 0: q* = 0


@pytest.mark.usefixtures("x64")
def test_tanh_critical_point_public_value():
    """Schoenholz et al. 2017: tanh with σ_b² = 0.05 is critical at σ_w² ≈ 1.76."""
    assert abs(float(mf.critical_sigma_w2("tanh", 0.05)) - 1.76) < 0.01


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("activation", ["tanh", "erf", "hard_tanh"])
def test_chi_1_is_one_on_the_computed_critical_line(activation):
    """The boundary (solved in q) and χ₁ at the iterated fixed point (found in σ_w²) are separate paths."""
    b2 = np.array([0.0, 0.02, 0.2, 0.8, 1.5])
    boundary = mf.order_chaos_boundary(activation, b2)
    w2 = np64(boundary.sigma_w2)
    assert np.all(np.isfinite(w2)) and np.all(np.diff(w2) > 0)
    r = mf.mean_field(activation, w2, b2)
    np.testing.assert_allclose(np64(r.chi_1), 1.0, atol=1e-7)
    np.testing.assert_allclose(np64(r.q_star)[1:], np64(boundary.q_star)[1:], rtol=1e-6)
    # the parametric line through the same points
    line_w2, line_b2 = mf.critical_line(activation, boundary.q_star[1:])
    np.testing.assert_allclose(np64(line_w2), w2[1:], rtol=1e-9)
    np.testing.assert_allclose(np64(line_b2), b2[1:], atol=1e-9)


# ----------------------------------------------------------------------------------------- the grid
@pytest.mark.slow
def test_grid_300_by_250_in_seconds():
    """Default dtype (float32 unless x64 is on). The warm call is timed; the first includes compilation."""
    w2, b2 = np.meshgrid(np.linspace(0.3, 5.0, 300), np.linspace(0.0, 2.0, 250), indexing="ij")
    start = time.perf_counter()
    jax.block_until_ready(mf.mean_field("tanh", w2, b2))
    cold = time.perf_counter() - start
    start = time.perf_counter()
    r = jax.block_until_ready(mf.mean_field("tanh", w2, b2))
    warm = time.perf_counter() - start
    assert warm < 10.0, f"300 x 250 tanh grid took {warm:.1f} s warm ({cold:.1f} s with compilation)"
    fields = {name: np64(getattr(r, name)) for name in mf.MeanField._fields}
    assert all(v.shape == (300, 250) for v in fields.values())
    assert not any(np.isnan(v).any() for v in fields.values())
    assert np.isfinite(fields["q_star"]).all()
    steps = np.diff(fields["q_star"], axis=0)
    assert np.all(steps >= 0) and np.all(steps[:, 1:] > 0), "q* increases with σ_w² at fixed σ_b² > 0"
    ordered = fields["chi_1"] <= 1
    assert ordered.any() and (~ordered).any()
    assert np.all(fields["c_star"][ordered] == 1) and np.all(fields["c_star"] <= 1)
    assert np.all(fields["c_star"][fields["chi_1"] > 1.01] < 1)
    # χ_c < 1 at a stable c* < 1; within 1e-3 of χ₁ = 1 float32 cancellation in g(c) = m(c) - c limits it
    assert np.all(fields["chi_c"] <= 1 + (1e-3 if r.chi_c.dtype == jnp.float32 else 1e-8))
    assert np.all(fields["xi_c"] > 0)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("activation", ["erf", "hard_tanh", "relu"])
def test_q_star_increases_with_sigma_w2(activation):
    w2 = np.linspace(0.5, 1.95, 8)
    q = np64(mf.mean_field(activation, w2, 0.1).q_star)
    assert np.all(np.isfinite(q)) and np.all(np.diff(q) > 0)


# --------------------------------------------------------------------------------------------- edges
@pytest.mark.usefixtures("x64")
def test_tanh_without_bias():
    w2 = jnp.array([0.5, 0.9, 1.0, 1.5, 2.0, 4.0])
    r = mf.mean_field("tanh", w2, 0.0)
    q = np64(r.q_star)
    assert np.all(q[:3] == 0.0), "q* = 0 attracts for σ_w² ≤ 1"
    np.testing.assert_allclose(np64(r.chi_1)[:3], np64(w2)[:3], rtol=1e-12)  # χ₁ = σ_w² φ'(0)² at q* = 0
    assert np.all(np64(r.c_star)[:3] == 1.0)
    assert np.isinf(float(r.xi_c[2])), "σ_w² = 1, σ_b² = 0 is critical"
    # σ_w² > 1: the non-zero fixed point, checked against scipy, and c* = 0 (odd φ, no bias)
    assert np.all(q[3:] > 0.05)
    for w, qs in zip(np64(w2)[3:], q[3:], strict=True):
        assert abs(w * quad_expectation(lambda u: math.tanh(u) ** 2, qs) - qs) < 1e-9 * qs
    np.testing.assert_allclose(np64(r.c_star)[3:], 0.0, atol=1e-12)
    assert not any(np.isnan(np64(v)).any() for v in r)


@pytest.mark.usefixtures("x64")
def test_no_finite_fixed_point_is_reported_as_inf():
    r = mf.mean_field("relu", jnp.array([2.5, 3.0, 4.0]), jnp.array([0.0, 0.1, 1.0]))
    assert np.all(np.isinf(np64(r.q_star)))
    np.testing.assert_allclose(np64(r.chi_1), [1.25, 1.5, 2.0], rtol=1e-15)
    assert np.all(np64(r.c_star) == 1.0) and np.all(np.isinf(np64(r.xi_q))) and np.all(np.isinf(np64(r.xi_c)))
    lin = mf.mean_field("linear", jnp.array([0.5, 2.0]), 0.3)
    np.testing.assert_allclose(float(lin.q_star[0]), 0.3 / 0.5, rtol=1e-12)
    assert np.isinf(float(lin.q_star[1]))
    for r_ in (r, lin):
        assert not any(np.isnan(np64(v)).any() for v in r_)


@pytest.mark.usefixtures("x64")
def test_ordered_phase_conventions():
    r = mf.mean_field("erf", jnp.array([0.5, 0.8, 1.0]), 0.1)
    chi = np64(r.chi_1)
    assert np.all(chi < 1) and np.all(np64(r.c_star) == 1.0)
    np.testing.assert_allclose(np64(r.chi_c), chi)
    np.testing.assert_allclose(np64(r.xi_c), -1 / np.log(chi), rtol=1e-12)


@pytest.mark.usefixtures("x64")
def test_public_functions_agree_with_mean_field_and_follow_dtype():
    w2, b2 = jnp.array([0.7, 2.0, 3.5]), jnp.array([0.1, 0.1, 0.4])
    r = mf.mean_field("erf", w2, b2)
    for name in mf.MeanField._fields:
        np.testing.assert_allclose(np64(getattr(mf, name)("erf", w2, b2)), np64(getattr(r, name)), rtol=1e-12)
    assert mf.q_star("erf", np.float32(2.0), np.float32(0.1)).dtype == jnp.float32
    assert mf.mean_field("erf", np.float64(2.0), 0.1).c_star.dtype == jnp.float64
    assert mf.q_star("erf", 2.0, 0.1).shape == ()


def test_default_float32():
    r = mf.mean_field("erf", np.array([1.0, 3.0]), 0.05)
    assert r.q_star.dtype == (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)


@pytest.mark.usefixtures("x64")
def test_correlation_iterates_converge_to_c_star():
    r = mf.mean_field("erf", 3.0, 0.2)
    qs, cs = mf.correlation_map_iterates("erf", 3.0, 0.2, c0=0.95, q0=r.q_star, n_layers=200)
    np.testing.assert_allclose(np64(qs), float(r.q_star), rtol=1e-10)
    assert abs(float(cs[-1]) - float(r.c_star)) < 1e-10
    # one layer of each map matches the iterates
    np.testing.assert_allclose(float(mf.correlation_map("erf", 0.95, r.q_star, 3.0, 0.2)), float(cs[0]))
    np.testing.assert_allclose(
        float(mf.length_map("erf", 1.0, 3.0, 0.2)), 3.0 * 2 / math.pi * math.asin(2 / 3) + 0.2
    )


@pytest.mark.usefixtures("x64")
def test_gradients_match_finite_differences():
    """Reverse mode through the fixed-count Newton loops equals central differences."""

    def fields(w2):
        r = mf.mean_field("erf", w2, jnp.array([0.1, 0.1]))
        return jnp.stack([r.q_star, r.chi_1, r.c_star, r.xi_q, r.chi_c])

    w2 = jnp.array([0.8, 2.5])  # ordered and chaotic
    jac = np64(jax.jacrev(fields)(w2))  # [field, point, σ_w² of point]
    h = 1e-5
    fd = (np64(fields(w2 + h)) - np64(fields(w2 - h))) / (2 * h)
    np.testing.assert_allclose(np.einsum("fii->fi", jac), fd, rtol=1e-5, atol=1e-8)
    assert float(fd[2, 1]) != 0.0  # c* moves in the chaotic phase


def test_unknown_activation():
    with pytest.raises(KeyError, match="nope"):
        mf.mean_field("nope", 1.0, 0.1)
    with pytest.raises(KeyError, match="nope"):
        mf.critical_sigma_w2("nope", 0.1)


def test_mean_field_is_one_name_for_the_modules_below():
    """``sweep.theory.mean_field`` re-exports the names of the concept modules (the same objects, so one
    compiled program each), including the three that other theory modules import from it."""
    from sweep.theory import critical_line, fixed_points, kernels, maps, quadrature

    for name in mf.__all__:
        assert hasattr(mf, name), name
    assert mf.mean_field is fixed_points.mean_field and mf.chi_1 is fixed_points.chi_1
    assert mf.length_map_iterates is maps.length_map_iterates
    assert mf.order_chaos_boundary is critical_line.order_chaos_boundary
    assert mf._FINE is quadrature._FINE and mf.gaussian_expectation is quadrature.gaussian_expectation
    assert mf.gaussian_kernel is kernels.gaussian_kernel


def test_host_normal_rule_is_exact_for_low_moments_and_across_a_kink():
    from sweep.theory.quadrature import normal_gauss_legendre

    x, w = normal_gauss_legendre(200)
    assert w.sum() == pytest.approx(1.0, abs=1e-15) and np.all(np.diff(x) > 0)
    np.testing.assert_allclose(
        [w @ x**2, w @ x**4, w @ np.abs(x)], [1.0, 3.0, math.sqrt(2 / math.pi)], rtol=1e-12
    )
