"""Convolution kernels (``sweep.nets.conv_init``) and the CNN mean field (``sweep.theory.cnn``) against
exact facts: orthonormal centres, isometric linear Jacobians, the per-position fully connected network,
the footprint's DFT, and (Monte Carlo) the decay of the covariance's Fourier modes."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.nets.conv_init import conv_kernel_shape, conv_unit_kernel, delta_orthogonal, gaussian_conv
from sweep.nets.initialisers import orthogonal
from sweep.theory import cnn
from sweep.theory.mean_field import mean_field


def _centre(kernel: np.ndarray, ndim: int) -> tuple:
    return (Ellipsis, *(s // 2 for s in kernel.shape[-ndim - 2 : -2]), slice(None), slice(None))


def _circular_conv(h: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 convolution of one input ``h [*positions, c_in]`` with circular padding, written with
    ``jnp.pad(mode="wrap")`` and ``lax.conv_general_dilated`` (1-D or 2-D)."""
    ndim = h.ndim - 1
    pads = [(s // 2, s // 2) for s in kernel.shape[:ndim]] + [(0, 0)]
    padded = jnp.pad(h, pads, mode="wrap")[None]
    spec = ("NWC", "WIO", "NWC") if ndim == 1 else ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(padded, kernel, (1,) * ndim, "VALID", dimension_numbers=spec)[0]


# ---------------------------------------------------------------- kernels


@pytest.mark.parametrize(("shape", "ndim"), [((3, 4, 4), 1), ((5, 3, 7), 1), ((3, 3, 4, 6), 2)])
def test_delta_orthogonal_centre_orthonormal_rows_other_taps_zero(shape: tuple, ndim: int) -> None:
    z = jax.random.normal(jax.random.PRNGKey(1), shape)
    kernel = np.asarray(delta_orthogonal(z, ndim))
    assert kernel.shape == shape and kernel.dtype == np.float32
    centre = _centre(kernel, ndim)
    m = kernel[centre]
    np.testing.assert_allclose(m @ m.T, np.eye(shape[-2]), atol=1e-5)
    rest = kernel.copy()
    rest[centre] = 0.0
    assert np.all(rest == 0.0)  # exactly zero, not small
    # The centre is the engine's orthogonal unit weight of the centre draw, without its fan-in rescaling.
    c_in, c_out = shape[-2:]
    expect = np.asarray(orthogonal(z[centre])) * np.sqrt(c_in / c_out)
    np.testing.assert_allclose(m, expect, atol=1e-6)


def test_delta_orthogonal_refuses_narrowing_and_even_taps() -> None:
    with pytest.raises(ValueError, match=r"c_out >= c_in.*\(3, 6, 4\)"):
        delta_orthogonal(jnp.ones((3, 6, 4)), 1)
    with pytest.raises(ValueError, match="odd"):
        delta_orthogonal(jnp.ones((4, 4, 4)), 1)
    with pytest.raises(KeyError, match="delta"):
        conv_unit_kernel(jnp.ones((3, 4, 4)), "delta", 1)


def test_kernels_vmapped_and_jitted_over_variants() -> None:
    shape = (5, *conv_kernel_shape(3, 2, 4, 4))  # 5 variants of a 3x3 kernel, 4 -> 4 channels
    z = jax.random.normal(jax.random.PRNGKey(2), shape)
    one_by_one = np.stack([np.asarray(delta_orthogonal(z[i], 2)) for i in range(5)])
    vmapped = jax.jit(jax.vmap(lambda zi: conv_unit_kernel(zi, "delta_orthogonal", 2)))(z)
    stacked = jax.jit(lambda zz: delta_orthogonal(zz, 2))(z)  # leading axes without vmap
    np.testing.assert_allclose(vmapped, one_by_one, atol=1e-6)
    np.testing.assert_allclose(stacked, one_by_one, atol=1e-6)
    assert len({np.asarray(v).tobytes() for v in one_by_one}) == 5  # each variant its own draw
    g = jax.jit(jax.vmap(lambda zi: conv_unit_kernel(zi, "gaussian", 2)))(z)
    np.testing.assert_allclose(np.asarray(g) * np.sqrt(9 * 4), z, rtol=1e-6)  # N(0, 1/(taps c_in))
    np.testing.assert_allclose(gaussian_conv(z[0, :, 0], 1), z[0, :, 0] / np.sqrt(3 * 4), rtol=1e-6)


# ---------------------------------------------------------------- exact facts of delta-orthogonal CNNs


def _stack(kernels: list[jax.Array], sigma_w: float, phi, biases=None):
    def forward(x: jax.Array) -> list[jax.Array]:
        hs, a = [], x
        for i, k in enumerate(kernels):
            h = sigma_w * _circular_conv(a, k) + (0.0 if biases is None else biases[i])
            hs.append(h)
            a = phi(h)
        return hs

    return forward


@pytest.mark.parametrize("init", ["delta_orthogonal", "gaussian"])
def test_linear_stack_jacobian_singular_values(init: str) -> None:
    """L circular convolutions, linear activation, 8 positions x 4 -> 6 channels: with delta-orthogonal
    kernels every one of the 32 singular values of dh^L/dx is sigma_w^L (the body of an (L+1)-layer net);
    with Gaussian kernels of the same scale they spread."""
    n, widths, sigma_w = 8, [4, 6, 6, 6, 6], 1.3
    depth = len(widths) - 1
    keys = jax.random.split(jax.random.PRNGKey(3), depth)
    kernels = [
        conv_unit_kernel(jax.random.normal(key, (3, a, b)), init, 1)
        for key, (a, b) in zip(keys, itertools.pairwise(widths), strict=True)
    ]
    forward = _stack(kernels, sigma_w, lambda h: h)
    x = jax.random.normal(jax.random.PRNGKey(4), (n, widths[0]))
    jac = jax.jit(jax.jacfwd(lambda v: forward(v)[-1]))(x).reshape(n * widths[-1], n * widths[0])
    sv = np.linalg.svd(np.asarray(jac, dtype=np.float64), compute_uv=False)
    expect = cnn.delta_orthogonal_linear_singular_value(sigma_w**2, depth + 1)
    assert expect == pytest.approx(sigma_w**depth)
    if init == "delta_orthogonal":
        np.testing.assert_allclose(sv, expect, rtol=2e-6)
    else:
        assert sv.max() / sv.min() > 3.0 and np.abs(sv / expect - 1).max() > 0.5


@pytest.mark.parametrize(("ndim", "n"), [(1, 7), (2, 5)])
def test_delta_orthogonal_tanh_cnn_is_the_fully_connected_net_per_position(ndim: int, n: int) -> None:
    """Every position's pre-activations, every layer, equal the fully connected tanh network whose
    weights are the kernels' centre matrices (times sigma_w), with the same biases."""
    widths, sigma_w = [3, 8, 8, 8], 1.4
    keys = jax.random.split(jax.random.PRNGKey(5), 2 * len(widths))
    kernels = [
        delta_orthogonal(jax.random.normal(keys[i], conv_kernel_shape(3, ndim, a, b)), ndim)
        for i, (a, b) in enumerate(itertools.pairwise(widths))
    ]
    biases = [0.3 * jax.random.normal(keys[-1 - i], (1,) * ndim + (b,)) for i, b in enumerate(widths[1:])]
    x = jax.random.normal(keys[-len(widths)], (n,) * ndim + (widths[0],))
    conv_hs = jax.jit(_stack(kernels, sigma_w, jnp.tanh, biases))(x)
    a = np.asarray(x, dtype=np.float64).reshape(-1, widths[0])  # [positions, channels]
    for kernel, b, h_conv in zip(kernels, biases, conv_hs, strict=True):
        m = np.asarray(kernel)[_centre(np.asarray(kernel), ndim)]
        h_fc = sigma_w * a @ m + np.asarray(b).reshape(1, -1)
        np.testing.assert_allclose(np.asarray(h_conv).reshape(h_fc.shape), h_fc, atol=2e-6)
        a = np.tanh(h_fc)
    assert np.abs(h_fc).max() > 0.5  # a non-trivial signal reached the last layer


# ---------------------------------------------------------------- the footprint's eigenvalues


@pytest.mark.parametrize(("k", "n", "ndim"), [(3, 16, 1), (5, 12, 1), (7, 5, 1), (3, 6, 2), (5, 8, 2)])
def test_footprint_eigenvalues_are_the_dft_of_the_footprint(k: int, n: int, ndim: int) -> None:
    weights = np.zeros((n,) * ndim)
    for t in np.ndindex(*(k,) * ndim):  # every tap of the footprint, wrapping round n
        weights[tuple((ti - k // 2) % n for ti in t)] += 1.0 / k**ndim
    dft = np.fft.fftn(weights)
    lam = cnn.footprint_eigenvalues(k, n, ndim)
    assert lam.shape == (n,) * ndim
    np.testing.assert_allclose(lam, dft.real, atol=1e-12)
    np.testing.assert_allclose(dft.imag, 0.0, atol=1e-12)
    assert lam[(0,) * ndim] == pytest.approx(1.0, abs=1e-15)


def test_width_three_closed_form_and_linear_mode_depth_scales() -> None:
    n = 16
    f = np.arange(n)
    lam = (1 + 2 * np.cos(2 * np.pi * f / n)) / 3
    np.testing.assert_allclose(cnn.footprint_eigenvalues(3, n), lam, atol=1e-12)
    np.testing.assert_allclose(cnn.footprint_eigenvalues(3, n, 2), np.outer(lam, lam), atol=1e-12)
    # Linear net at sigma_w2 = 1, sigma_b2 = 0: chi_c = 1, the factor is lambda(f); f = 0 never decays;
    # negative lambda (f = 6..10) decays by its magnitude.
    xi = cnn.mode_depth_scales("linear", 1.0, 0.0, 3, n, 1)
    assert xi[0] == np.inf
    np.testing.assert_allclose(xi[1:], -1 / np.log(np.abs(lam[1:])), rtol=1e-6)
    np.testing.assert_allclose(cnn.mode_factors("linear", 1.0, 0.0, 3, n, 1), lam, rtol=1e-6)
    assert cnn.mode_depth_scales("linear", 1.0, 0.0, 3, 3, 1)[1] == 0.0  # lambda = 0: gone in one layer


def test_mode_depth_scales_of_tanh_and_the_delta_orthogonal_mean_field() -> None:
    # tanh: the uniform mode is the fully connected xi_c; the rest use chi_c * lambda(f). Shapes S + (n,).
    w2 = np.array([1.2, 1.76, 2.5])
    mf = mean_field("tanh", w2, 0.05)
    xi = cnn.mode_depth_scales("tanh", w2, 0.05, 3, 8, 1)
    assert xi.shape == (3, 8)
    np.testing.assert_allclose(xi[:, 0], np.asarray(mf.xi_c), rtol=1e-5)
    lam8 = cnn.footprint_eigenvalues(3, 8)
    np.testing.assert_allclose(
        xi[:, 1:], -1 / np.log(np.abs(np.asarray(mf.chi_c)[:, None] * lam8[1:])), rtol=1e-5
    )
    assert cnn.mode_depth_scales("tanh", w2, 0.05, 3, 4, 2).shape == (3, 4, 4)
    assert np.all(np.isinf(cnn.mode_depth_scales("relu", 3.0, 0.0, 3, 8, 1)))  # q* = inf
    # Delta-orthogonal CNNs report the fully connected mean field.
    for name in ("q_star", "chi_1", "xi_c"):
        got = getattr(cnn, f"delta_orthogonal_{name}")("tanh", w2, 0.05)
        np.testing.assert_allclose(got, getattr(mf, name), rtol=1e-6)


# ---------------------------------------------------------------- Monte Carlo: decay of the modes


def _numpy_circular_layer(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """h [seeds, n, c_in], w [seeds, k, c_in, c_out] -> [seeds, n, c_out]; out(x) = sum_t w_t h(x + t)."""
    k = w.shape[1]
    shifted = np.stack([np.roll(h, -t, axis=1) for t in range(-(k // 2), k // 2 + 1)], axis=2)
    return np.einsum("sxti,stij->sxj", shifted, w)


def _diagonal_modes(h: np.ndarray) -> np.ndarray:
    """Covariance across positions Sigma(x, y) = mean over channels of h(x) h(y), read along its
    diagonals e_d(x) = Sigma(x, x + d) and Fourier-transformed in x: [seeds, d, f]."""
    n = h.shape[1]
    sigma = np.einsum("sxc,syc->sxy", h, h) / h.shape[2]
    x = np.arange(n)
    diagonals = np.stack([sigma[:, x, (x + d) % n] for d in range(n)], axis=1)
    return np.fft.fft(diagonals, axis=2)


def test_monte_carlo_fourier_modes_decay_by_the_footprint_eigenvalues() -> None:
    """Random circular Gaussian-kernel linear CNN (width 3, 16 positions, 64 channels, sigma_w2 = 1,
    sigma_b2 = 0, so chi_c = 1), 256 seeds, one fixed input whose covariance across positions has
    several Fourier modes. Averaging over one layer's weights gives E[Sigma^{l+1} | Sigma^l] = A Sigma^l
    exactly at any width, so each seed's Y_l(d, f) = e^l_d(f) - lambda(f)^l R_d(f) e^l_d(0), with
    R_d(f) = e^0_d(f) / e^0_d(0) the input's mode relative to its uniform mode, has mean exactly 0 for
    every layer l, separation d and mode f. Tolerance from the Monte Carlo standard error: the seed mean
    of Y (real and imaginary parts) is within 5 standard errors of 0 for all 4 x 16 x 16 x 2 numbers (a
    fluctuation that large has probability ~6e-7 each), and the alternatives lambda == 1 (the fully
    connected / delta-kernel prediction) and lambda of a width-5 kernel are rejected by more than
    10 standard errors. The measured per-layer factor of the strongest non-uniform mode is also within
    5 standard errors of lambda(f)."""
    rng = np.random.default_rng(0)
    n, c, k, depth, seeds = 16, 64, 3, 4, 256
    p = np.arange(n)
    profile = 1 + 0.6 * np.cos(2 * np.pi * p / n) + 0.4 * np.cos(4 * np.pi * p / n + 1.0)
    profile += 0.3 * np.cos(6 * np.pi * p / n + 2.0)
    rho = 0.5  # correlation across positions: the off-diagonals carry the same modes
    g = np.sqrt(1 - rho) * rng.standard_normal((n, c)) + np.sqrt(rho) * rng.standard_normal(c)
    x = np.sqrt(profile)[:, None] * g

    lam = cnn.footprint_eigenvalues(k, n)
    modes0 = _diagonal_modes(x[None])[0]  # [d, f]
    ratio0 = modes0 / modes0[:, :1]
    h = np.broadcast_to(x, (seeds, n, c))
    measured = []
    for _ in range(depth):
        w = rng.standard_normal((seeds, k, c, c)) / np.sqrt(k * c)  # sigma_w2 = 1
        h = _numpy_circular_layer(h, w)
        measured.append(_diagonal_modes(h))  # [seeds, d, f]

    def z_scores(lam_f: np.ndarray) -> np.ndarray:
        out = []
        for layer, e in enumerate(measured, start=1):
            y = e - lam_f**layer * ratio0 * e[:, :, :1]
            y = np.stack([y.real, y.imag])
            se = y.std(axis=1, ddof=1) / np.sqrt(seeds)
            out.append(np.where(se > 1e-9, y.mean(axis=1) / np.where(se > 1e-9, se, 1.0), 0.0))
        return np.array(out)

    assert np.abs(z_scores(lam)).max() < 5.0
    assert np.abs(z_scores(np.ones(n))).max() > 10.0
    assert np.abs(z_scores(cnn.footprint_eigenvalues(5, n))).max() > 10.0

    # Per-layer factor of the diagonal's mode f = 1 (lambda = 0.949), seed-averaged, layer 1 -> 2.
    e1, e2 = measured[0][:, 0, 1].real, measured[1][:, 0, 1].real
    factor = e2.mean() / e1.mean()
    se = np.std(e2 - lam[1] * e1, ddof=1) / np.sqrt(seeds) / abs(e1.mean())
    assert abs(factor - lam[1]) < 5 * se < 0.05
