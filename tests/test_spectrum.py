"""Jacobian singular values (``sweep.measure.spectrum``) against exact cases, numpy float64 and statistics.

Weights are built here with numpy (QR of Gaussians for orthogonal layers), independently of
``sweep.nets.mlp``; J = ∂x^L/∂x^1 has L - 1 factors D_l W_lᵀ (row-vector convention).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.measure import spectrum

TANH_CRITICAL = (1.76, 0.05)  # (sigma_w2, sigma_b2): chi_1 = 1 for tanh

# These tests are compile-bound on CPU: LLVM's optimisation passes take ~5x longer than the (small) runs,
# so the test programs are compiled without them: the same computation, equal up to float round-off.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _jit(f):
    return jax.jit(f, compiler_options=_FAST_COMPILE)


def _linear(x: jax.Array) -> jax.Array:
    return x


PHI = {"tanh": jnp.tanh, "linear": _linear, "relu": jax.nn.relu}


@functools.cache
def _exact(activation: str, batched: bool = False):
    f = functools.partial(spectrum.exact_log10_singular_values, phi=PHI[activation])
    return _jit(jax.vmap(f) if batched else f)


@functools.cache
def _matrix_free(k: int, n_iter: int, batched: bool = False, activation: str = "tanh", n_probes: int = 8):
    f = functools.partial(
        spectrum.matrix_free_log10_singular_values, phi=PHI[activation], k=k, n_iter=n_iter, n_probes=n_probes
    )
    return _jit(jax.vmap(f) if batched else f)


_summary = _jit(spectrum.spectrum_summary)


def _np_log10_mean_sq(log10_sv: np.ndarray) -> float:
    """log10 of the mean squared singular value, in numpy float64 (independent of spectrum_summary)."""
    return float(np.log10(np.mean(10.0 ** (2 * np.asarray(log10_sv, np.float64)))))


def _gaussian_net(seed: int, depth: int, width: int, sigma_w2: float, sigma_b2: float, q1: float = 1.0):
    """float32 (hidden_w [L-1, N, N], hidden_b [L-1, N], h1 [N]) with W ~ N(0, sigma_w2/N)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((depth - 1, width, width)) * np.sqrt(sigma_w2 / width)
    b = rng.standard_normal((depth - 1, width)) * np.sqrt(sigma_b2)
    h1 = rng.standard_normal(width) * np.sqrt(q1)
    return w.astype(np.float32), b.astype(np.float32), h1.astype(np.float32)


def _orthogonal_stack(rng: np.random.Generator, n_mats: int, width: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n_mats, width, width)))
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]


def _numpy_log10_sv(w: np.ndarray, b: np.ndarray, h1: np.ndarray, phi, dphi) -> np.ndarray:
    """float64 reference: the explicit product D_L W_Lᵀ ⋯ D_2 W_2ᵀ and its SVD."""
    h = h1.astype(np.float64)
    jac = np.eye(h.size)
    for wl, bl in zip(w.astype(np.float64), b.astype(np.float64), strict=True):
        h = phi(h) @ wl + bl
        jac = (dphi(h)[:, None] * wl.T) @ jac
    return np.log10(np.linalg.svd(jac, compute_uv=False))


def _tanh_chi1(sigma_w2: float, sigma_b2: float) -> tuple[float, float]:
    """(chi_1, q*) of tanh by fixed-point iteration with Gauss–Hermite expectations (numpy, float64)."""
    z, weight = np.polynomial.hermite_e.hermegauss(101)
    weight = weight / weight.sum()
    q = 1.0
    for _ in range(500):
        q = sigma_w2 * np.sum(weight * np.tanh(np.sqrt(q) * z) ** 2) + sigma_b2
    return sigma_w2 * np.sum(weight / np.cosh(np.sqrt(q) * z) ** 4), q


def test_orthogonal_linear_net_is_an_exact_isometry_times_sigma_w_to_the_depth():
    # depth 200 (199 factors): every singular value is sigma_w^199, from 1e-60 to 1e+60 — far outside
    # float32 for the product itself (and for sigma^2). Weights are orthogonal to ~1e-7 in float32, so 199
    # factors move the singular values by ~2e-5 relatively: 1e-4 in log10 is a safe bound.
    depth, width = 200, 32
    sigma_w2 = np.array([0.25, 0.5, 0.8, 1.2, 2.0, 4.0])
    rng = np.random.default_rng(0)
    w = np.stack([np.sqrt(s) * _orthogonal_stack(rng, depth - 1, width) for s in sigma_w2])
    b = np.zeros((sigma_w2.size, depth - 1, width))
    h1 = rng.standard_normal((sigma_w2.size, width))
    out = np.asarray(_exact("linear", batched=True)(*(a.astype(np.float32) for a in (w, b, h1))))
    expected = 0.5 * (depth - 1) * np.log10(sigma_w2)  # -59.9 ... +59.9
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.broadcast_to(expected[:, None], out.shape), atol=1e-4, rtol=0)
    summary = _summary(out)
    np.testing.assert_allclose(summary["mean_sq_sv"], 2 * expected, atol=2e-4, rtol=0)
    np.testing.assert_allclose(summary["log10_condition"], 0.0, atol=1e-4)
    assert np.all(np.asarray(summary["eig_variance_rel"]) < 1e-6)


def test_gaussian_linear_net_mean_squared_singular_value_is_sigma_w2_to_the_depth():
    # E[tr(JᵀJ)/N] = sigma_w2^(L-1) exactly for independent Gaussian layers at any width (each layer
    # multiplies E||Jv||^2 by sigma_w2). 24 draws: the sample mean is compared within 4 of its own
    # standard errors (a false failure has probability ~6e-5 under normality; the seed is fixed anyway).
    depth, width, draws, sigma_w2 = 16, 32, 24, 1.3
    nets = [_gaussian_net(seed, depth, width, sigma_w2, 0.0) for seed in range(draws)]
    w, b, h1 = (np.stack(parts) for parts in zip(*nets, strict=True))
    log_sv = _exact("linear", batched=True)(w, b, h1)
    mean_sq = np.array([10.0 ** _np_log10_mean_sq(row) for row in np.asarray(log_sv)])
    ratio = mean_sq / sigma_w2 ** (depth - 1)
    stderr = ratio.std(ddof=1) / np.sqrt(draws)
    assert abs(ratio.mean() - 1.0) < 4 * stderr
    assert stderr < 0.1  # the check has power


def test_exact_matches_numpy_float64_explicit_product():
    # tanh near criticality, L = 10, N = 64: the spectrum spans ~14 decades, so the round-off floor is in
    # view. Values within 4 decades of the top agree to 1e-4 relatively; the float32 floor (below ~1e-6 of
    # the top) is only required to stay below 1e-5 of the top and finite.
    w, b, h1 = _gaussian_net(1, 10, 64, *TANH_CRITICAL)
    out = np.asarray(_exact("tanh")(w, b, h1))
    ref = _numpy_log10_sv(w, b, h1, np.tanh, lambda h: 1.0 - np.tanh(h) ** 2)
    assert np.all(np.diff(out) <= 0)  # descending
    resolved = ref > ref[0] - 4
    assert resolved.sum() >= 20
    np.testing.assert_allclose(10.0 ** (out[resolved] - ref[resolved]), 1.0, rtol=1e-4)
    assert np.all(np.isfinite(out))
    assert np.all(out[~resolved] < ref[0] - 3.5)


def test_chaotic_tanh_at_depth_300_stays_finite_and_grows_like_chi1():
    # sigma_w2 = 4, sigma_b2 = 0.05: chi_1 ≈ 1.34, so 0.5 (L-1) log10 chi_1 ≈ 19: sigma_max ~ 1e19 and
    # sigma^2 ~ 1e38, at float32's edge. At N = 64 the typical growth is below the mean-field one by the
    # per-layer fluctuation (E log < log E: ≈ (2 + var D²/E[D²]²)/(4N) in ln per layer, ~10% of the
    # exponent here), and one draw fluctuates by a few decades; we ask for the exponent within -25% / +5%.
    depth, width = 300, 64
    chi1, q_star = _tanh_chi1(4.0, 0.05)
    predicted = 0.5 * (depth - 1) * np.log10(chi1)
    w, b, h1 = _gaussian_net(2, depth, width, 4.0, 0.05, q1=q_star)
    out = np.asarray(_exact("tanh")(w, b, h1))
    assert np.all(np.isfinite(out))
    assert 0.75 * predicted < out[0] < 1.05 * predicted
    mean_sq = _np_log10_mean_sq(out)
    assert 0.7 * 2 * predicted < mean_sq < 1.05 * 2 * predicted
    assert 2 * out[0] - np.log10(width) <= mean_sq + 1e-3 <= 2 * out[0] + 2e-3  # σ_max² ∈ [m, N m]


def test_depth_one_is_the_identity_and_dead_relu_units_give_minus_inf_not_nan():
    width = 8
    empty = np.zeros((0, width, width), np.float32), np.zeros((0, width), np.float32)
    np.testing.assert_array_equal(_exact("tanh")(*empty, np.ones(width, np.float32)), np.zeros(width))
    top, bottom, mean_sq = _matrix_free(2, 4)(*empty, np.ones(width, np.float32), key=jax.random.key(0))
    assert float(mean_sq) == 0.0 and np.all(np.asarray(top) == 0) and np.all(np.asarray(bottom) == 0)
    # relu, last layer: 3 units with a large negative bias are dead -> J has 3 zero singular values, which
    # the SVD returns as exact zeros (-inf) or at its round-off floor (~1e-7 of the top in float32)
    w, b, _ = _gaussian_net(3, 3, width, 2.0, 0.0)
    w, b, h1 = np.abs(w), np.ones_like(b), np.ones(width, np.float32)  # h > 0: every unit alive (D = I) ...
    b[-1, :3] = -100.0  # ... but three of the last layer's: rank N - 3
    out = np.asarray(_exact("relu")(w, b, h1))
    assert not np.any(np.isnan(out)) and np.all(np.isfinite(out[:-3]))
    assert np.all(out[-3:] < out[0] - 6) and out[-4] > out[0] - 3
    summary = _summary(out)
    assert np.isfinite(float(summary["mean_sq_sv"])) and float(summary["log10_condition"]) > 6
    # every unit of a layer dead: J = 0 exactly; all -inf, still no NaN anywhere
    b[0, :] = -100.0
    out = np.asarray(_exact("relu")(w, b, h1))
    assert np.all(np.isneginf(out))
    assert not any(np.isnan(np.asarray(v)).any() for v in _summary(out).values())


def test_matrix_free_top_k_and_mean_square_match_exact():
    # N = 128, depth 20, tanh at criticality. Top-5 from 40 Lanczos steps within 1% of the exact SVD. The
    # mean square is unbiased with relative standard error at most sqrt(2 Σσ⁴ / (Σσ²)² / n_probes)
    # (Rademacher Hutchinson, here only on the part outside the Krylov space, which lowers it); we allow 4.
    depth, width, k, n_iter, n_probes = 20, 128, 5, 40, 8
    for seed in (4, 5):
        w, b, h1 = _gaussian_net(seed, depth, width, *TANH_CRITICAL)
        top, bottom, mean_sq = _matrix_free(k, n_iter)(w, b, h1, key=jax.random.key(seed))
        exact = np.asarray(_exact("tanh")(w, b, h1), np.float64)
        np.testing.assert_allclose(10.0 ** (np.asarray(top) - exact[:k]), 1.0, rtol=1e-3)  # seen: 5e-7
        lam = 10.0 ** (2 * (exact - exact[0]))
        bound = np.sqrt(2 * np.sum(lam**2) / np.sum(lam) ** 2 / n_probes)
        exact_mean_sq = _np_log10_mean_sq(exact)
        assert abs(10.0 ** (float(mean_sq) - exact_mean_sq) - 1.0) < 4 * bound
        # bottom Ritz values: descending, finite, not below the true smallest (Ritz values interlace)
        bottom = np.asarray(bottom)
        assert np.all(np.diff(bottom) <= 0) and np.all(np.isfinite(bottom)) and bottom[-1] >= exact[-1] - 1e-3


def test_matrix_free_at_depth_200_with_singular_values_of_1e60_and_lanczos_breakdowns():
    # orthogonal linear net, depth 200: J = sigma_w^199 x orthogonal, σ = 1e±60 (σ² = 1e±120) in float32.
    # JᵀJ ∝ I makes every Lanczos step after the first break down (β = 0): the restarts must keep the
    # bidiagonal exact, giving every Ritz value = sigma_w^199. The mean square sigma_w2^199 is sampled on
    # the complement of the 6-dim Krylov space (projected probes are not ±1 vectors, so even an isometry
    # leaves variance): within 4 standard errors, 4 sqrt(2 / (N n_probes)) = 35% relatively.
    depth, width = 200, 32
    rng = np.random.default_rng(12)
    q = _orthogonal_stack(rng, depth - 1, width)
    b, h1 = np.zeros((depth - 1, width), np.float32), rng.standard_normal(width).astype(np.float32)
    for sigma_w2 in (0.25, 4.0):
        w = (np.sqrt(sigma_w2) * q).astype(np.float32)
        top, bottom, mean_sq = _matrix_free(3, 6, activation="linear")(w, b, h1, key=jax.random.key(3))
        expected = 0.5 * (depth - 1) * np.log10(sigma_w2)  # ∓59.9
        got = np.concatenate([np.asarray(top), np.asarray(bottom)])
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        assert abs(10.0 ** (float(mean_sq) - 2 * expected) - 1.0) < 4 * np.sqrt(2 / (width * 8))


def test_matrix_free_vmapped_with_full_krylov_space_recovers_the_whole_spectrum():
    # n_iter = N: the bidiagonal holds J's whole spectrum and the mean square is exact (no sampling left).
    # Two variants through jax.vmap, each checked against the exact route run on its own.
    depth, width = 6, 32
    nets = [_gaussian_net(seed, depth, width, *TANH_CRITICAL) for seed in (6, 7)]
    stacked = [np.stack(parts) for parts in zip(*nets, strict=True)]
    keys = jax.random.split(jax.random.key(1), 2)
    top, bottom, mean_sq = _matrix_free(width // 2, width, batched=True)(*stacked, key=keys)
    for v, net in enumerate(nets):
        exact = np.asarray(_exact("tanh")(*net), np.float64)
        resolved = exact > exact[0] - 4
        got = np.concatenate([np.asarray(top[v]), np.asarray(bottom[v])])
        np.testing.assert_allclose(10.0 ** (got[resolved] - exact[resolved]), 1.0, rtol=1e-3)
        exact_mean_sq = _np_log10_mean_sq(exact)
        assert abs(float(mean_sq[v]) - exact_mean_sq) < 1e-4


def _relative_to_top(log10_sv: np.ndarray) -> np.ndarray:
    """σ / σ_max: float32 SVD errors are ~ε σ_max for every singular value, so compare on this scale."""
    log10_sv = np.asarray(log10_sv, np.float64)
    return 10.0 ** (log10_sv - log10_sv[..., :1])


def test_vmap_over_variants_matches_the_loop():
    # batched and single programs sum in different orders: equal to round-off, ~ε σ_max per value
    nets = [_gaussian_net(seed, 10, 64, *TANH_CRITICAL) for seed in (1, 7, 8)]
    stacked = [np.stack(parts) for parts in zip(*nets, strict=True)]
    batched = np.asarray(_exact("tanh", batched=True)(*stacked))
    looped = np.stack([np.asarray(_exact("tanh")(*net)) for net in nets])
    np.testing.assert_allclose(batched[:, 0], looped[:, 0], atol=1e-5)
    np.testing.assert_allclose(_relative_to_top(batched), _relative_to_top(looped), atol=1e-5, rtol=0)
    # and over inputs of one variant
    w, b, _ = nets[0]
    inputs = np.random.default_rng(9).standard_normal((2, 64)).astype(np.float32)
    over_inputs = np.asarray(jax.vmap(_exact("tanh"), in_axes=(None, None, 0))(w, b, inputs))
    singles = np.stack([np.asarray(_exact("tanh")(w, b, x)) for x in inputs])
    np.testing.assert_allclose(over_inputs[:, 0], singles[:, 0], atol=1e-5)
    np.testing.assert_allclose(_relative_to_top(over_inputs), _relative_to_top(singles), atol=1e-5, rtol=0)


def test_float64_inputs_give_float64_results():
    with jax.enable_x64(True):
        w, b, h1 = (a.astype(np.float64) for a in _gaussian_net(10, 6, 16, *TANH_CRITICAL))
        out = _jit(functools.partial(spectrum.exact_log10_singular_values, phi=jnp.tanh))(w, b, h1)
        assert out.dtype == jnp.float64
        ref = _numpy_log10_sv(w, b, h1, np.tanh, lambda h: 1.0 - np.tanh(h) ** 2)
        np.testing.assert_allclose(np.asarray(out), ref, atol=1e-9)


def test_spectrum_summary_against_numpy():
    rng = np.random.default_rng(11)
    sv = np.exp(rng.standard_normal((3, 20)))
    sv[2] = np.sort(sv[2])  # order does not matter
    lam = sv**2
    got = _summary(np.log10(sv).astype(np.float32))
    np.testing.assert_allclose(got["mean_sq_sv"], np.log10(lam.mean(-1)), atol=1e-5)
    np.testing.assert_allclose(got["max_sv"], np.log10(sv.max(-1)), atol=1e-6)
    np.testing.assert_allclose(got["min_sv"], np.log10(sv.min(-1)), atol=1e-6)
    np.testing.assert_allclose(got["log10_condition"], np.log10(sv.max(-1) / sv.min(-1)), atol=1e-5)
    np.testing.assert_allclose(got["eig_variance"], lam.var(-1), rtol=1e-4)
    np.testing.assert_allclose(got["eig_variance_rel"], lam.var(-1) / lam.mean(-1) ** 2, rtol=1e-4)
    np.testing.assert_allclose(got["log10_eig_variance"], np.log10(lam.var(-1)), atol=1e-5)
    # far outside float32: sigma = 1e±40 (sigma^2 = 1e±80): logs stay exact, shifting by a constant
    shifted = _summary((np.log10(sv) + np.array([[40.0], [-40.0], [0.0]])).astype(np.float32))
    np.testing.assert_allclose(
        shifted["mean_sq_sv"], np.log10(lam.mean(-1)) + np.array([80.0, -80.0, 0.0]), atol=1e-4
    )
    np.testing.assert_allclose(shifted["eig_variance_rel"], lam.var(-1) / lam.mean(-1) ** 2, rtol=1e-4)
    # by hand: σ = (2, 0, 1, 1) -> λ = (4, 0, 1, 1): mean 1.5, variance 2.25, condition inf
    known = _summary(np.array([[np.log10(2.0), -np.inf, 0.0, 0.0]], np.float32))
    np.testing.assert_allclose(known["mean_sq_sv"], [np.log10(1.5)], atol=1e-6)
    np.testing.assert_allclose(known["eig_variance"], [2.25], rtol=1e-5)
    np.testing.assert_allclose(known["eig_variance_rel"], [1.0], rtol=1e-5)
    assert float(known["min_sv"][0]) == -np.inf and float(known["log10_condition"][0]) == np.inf


@pytest.mark.parametrize(("width", "expected"), [(64, False), (1024, False), (1025, True), (4096, True)])
def test_use_matrix_free(width, expected):
    assert spectrum.use_matrix_free(width) is expected
    assert spectrum.use_matrix_free(width, threshold=32) is True
