"""Mixed weight scales: the engine's weights follow the documented rule and leave the unmixed network
bit-identical; the mean field of ``sweep.theory.mixed_scales`` matches exact facts, Monte Carlo of wide
random nets (NumPy) and the engine's measured per-layer gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import experiment_from_dict
from sweep.config.grid import groups
from sweep.nets import mlp
from sweep.nets.contract import Spec
from sweep.nets.mlp import Mix, weight_scales
from sweep.runner import engine
from sweep.runner.train import variant_key
from sweep.theory.mean_field import chi_1, length_map_iterates
from sweep.theory.mixed_scales import (
    effective_sigma_w2,
    geometric_mean_chi,
    mean_square_scale,
    mixed_profile,
    realised_fraction,
)

HALF = {"scale_a": 0.5, "scale_b": 1.5, "fraction": 0.5}  # the learner's question


# ------------------------------------------------------------------------------------ engine weights
def _params(spec: Spec, mix: Mix | None = None, sigma_w2: float = 1.5) -> dict:
    key = variant_key(jnp.uint32(3), 0)
    dynamic = {"sigma_w2": jnp.float32(sigma_w2), "sigma_b2": jnp.float32(0.05)}
    if mix is not None:
        dynamic |= {"mix_scale_a": mix.scale_a, "mix_scale_b": mix.scale_b, "mix_fraction": mix.fraction}
    return mlp.init(key, dynamic, spec)[0]


def test_default_spec_is_the_unmixed_code_path():
    spec = mlp.spec(12, 16, 4, 10, "gaussian")
    assert weight_scales(spec, None) is None  # no multiplication at all: the code of the unmixed net
    ones = mlp.spec(12, 16, 4, 10, "gaussian", mix="units", layer_scales="1 1")
    same = jax.tree.map(
        lambda a, b: bool(jnp.array_equal(a, b)),
        _params(spec),
        _params(ones, Mix(jnp.float32(1), jnp.float32(1), jnp.float32(0.3))),
    )
    assert all(jax.tree.leaves(same))  # scales of exactly 1 change no bit


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_mixed_weights_are_the_same_draws_scaled_by_the_documented_rule(init):
    d, n, depth = 12, 16, 5
    plain = _params(mlp.spec(d, n, depth, 10, init))
    for mix in ("units", "entries"):
        spec = mlp.spec(d, n, depth, 10, init, mix=mix, layer_scales="0.5 2")
        mixed = _params(spec, Mix(jnp.float32(0.5), jnp.float32(1.5), jnp.float32(0.25)))
        for name in ("embed", "blocks"):
            w = np.asarray(plain[name]["w"]).reshape(-1, *plain[name]["w"].shape[-2:])
            s = np.asarray(mixed[name]["w"]).reshape(w.shape) / w  # common random numbers: same draws
            layers = [0.5] if name == "embed" else [2.0, 0.5, 2.0, 0.5]  # layer l: pattern[(l - 1) % 2]
            for layer, scale in zip(s, layers, strict=True):
                at_a = np.isclose(layer, 0.5 * scale, rtol=1e-5)
                assert np.all(at_a | np.isclose(layer, 1.5 * scale, rtol=1e-5))
                fan_in, fan_out = layer.shape
                if mix == "units":  # the first round(0.25 * 16) = 4 units, all their incoming weights
                    assert np.array_equal(at_a, np.broadcast_to(np.arange(fan_out) < 4, at_a.shape))
                else:  # round(f M) per column (M = min(fan_in, fan_out)) and per row of square layers
                    m = min(fan_in, fan_out)
                    assert np.all(at_a.sum(0) == round(0.25 * m))
                    assert fan_in != fan_out or np.all(at_a.sum(1) == round(0.25 * m))
        assert np.array_equal(mixed["readout"]["w"], plain["readout"]["w"])  # never scaled
        for name in ("embed", "blocks", "readout"):
            assert np.array_equal(mixed[name]["b"], plain[name]["b"])  # biases never scaled


@pytest.mark.slow
def test_scales_are_dynamic_and_scales_of_one_change_nothing(tiny):
    tiny["model"]["sigma_w2"] = 1.0
    tiny["train"]["steps"] = 4
    plain = engine.run(tiny)
    tiny["model"] |= {"mix": "units", "mix_scale_a": 1.0, "mix_scale_b": [1.0, 1.5, 2.0]}
    experiment = experiment_from_dict(tiny)
    assert len(groups(experiment)) == 1  # one compiled program serves every scale
    mixed = engine.run(experiment)
    ones = mixed.sel(mix_scale_b=1.0)
    for name in ("grad_norm", "q_layer", "train_loss"):  # another program (3 variants vmapped, not 1):
        np.testing.assert_allclose(ones[name].values, plain[name].values, rtol=1e-6)  # float32 round-off
    q_last = mixed["q_layer"].isel(layer=-2).values  # the last hidden layer grows with scale b
    assert q_last[0] < q_last[1] < q_last[2]


# ----------------------------------------------------------------------------------------- theory
def _profile(activation: str, mix: str, layer_scales=(1.0,), sigma_w2=1.0, sigma_b2=0.0, **kw):
    mixture = HALF | kw
    return mixed_profile(
        activation,
        sigma_w2,
        sigma_b2,
        1.0,
        depth=12,
        width=100,
        input_dim=40,
        mix=mix,
        layer_scales=layer_scales,
        **mixture,
    )


def test_exact_facts_of_linear_and_relu_nets():
    assert mean_square_scale(0.5, 1.5, 0.5) == 1.25
    for mix in ("units", "entries"):
        np.testing.assert_allclose(_profile("linear", mix).chi, 1.25, rtol=1e-6)  # explodes
        np.testing.assert_allclose(_profile("relu", mix, sigma_w2=2.0).chi, 1.25, rtol=1e-6)
        # the squared backward signal gains chi per layer (D = 1): R^{l-1} / R^l = sigma_w2 mean(s^2)
        r = _profile("linear", mix).delta_sq[:-1]
        np.testing.assert_allclose(r[:-1] / r[1:], 1.25, rtol=1e-6)
    alternating = _profile("linear", "none", (0.5, 1.5))
    np.testing.assert_allclose(alternating.chi[:4], [0.25, 2.25, 0.25, 2.25], rtol=1e-6)
    assert geometric_mean_chi(alternating) == pytest.approx(0.75, rel=1e-6)  # vanishes
    # relu, weights x t in layer l: its gradient is 1/t times its neighbours' (no net trend)
    g = np.sqrt(_profile("relu", "none", (0.5, 1.5), sigma_w2=2.0).grad_sq[1:11])  # layers 2..11
    np.testing.assert_allclose(g[1::2] / g[0::2], 3.0, rtol=1e-5)  # layers at 0.5 over those at 1.5


def test_entries_mixing_is_the_unmixed_map_at_the_effective_sigma_w2():
    w2_eff = effective_sigma_w2(1.76, **HALF)
    assert w2_eff == pytest.approx(2.2)
    p = _profile("tanh", "entries", sigma_w2=1.76, sigma_b2=0.05)
    q1 = w2_eff * 1.0 + 0.05
    expected = np.asarray(length_map_iterates("tanh", w2_eff, 0.05, q1, 11))
    np.testing.assert_allclose(p.q[1:12, 0], expected, rtol=1e-5)
    # deep layers sit at q*: chi^l is the unmixed chi_1 at the effective sigma_w2
    assert p.chi[-1] == pytest.approx(float(chi_1("tanh", w2_eff, 0.05)), rel=1e-4)
    # units mixing is not: its groups have different lengths and the saturated group has less slope
    units = _profile("tanh", "units", sigma_w2=1.76, sigma_b2=0.05)
    assert units.q[-2, 1] > 5 * units.q[-2, 0] and units.chi[-1] < p.chi[-1] - 0.02


def test_units_at_equal_scales_is_the_uniform_net_at_sigma_w2_s2():
    a = _profile("tanh", "units", sigma_w2=1.0, sigma_b2=0.05, scale_a=1.3, scale_b=1.3)
    b = _profile("tanh", "none", sigma_w2=1.69, sigma_b2=0.05)
    # the same net up to its readout, which is never scaled (sigma_w2 = 1 there, not 1.69)
    np.testing.assert_allclose(a.q[:-1], b.q[:-1], rtol=1e-5)
    np.testing.assert_allclose(a.act_sq, b.act_sq, rtol=1e-5)
    np.testing.assert_allclose(a.chi, b.chi, rtol=1e-5)
    np.testing.assert_allclose(a.delta_sq[:-1] / b.delta_sq[:-1], 1 / 1.69, rtol=1e-5)


def test_realised_fraction():
    assert realised_fraction(0.5, 64) == 0.5 and realised_fraction(0.3, 10) == 0.3
    assert realised_fraction(0.25, 6) == 2 / 6  # round(1.5) = 2: the engine's floor(f n + 0.5)


# ------------------------------------------------------------------------------ Monte Carlo (NumPy)
PHI = {
    "linear": (lambda h: h, lambda h: np.ones_like(h)),
    "relu": (lambda h: np.maximum(h, 0), lambda h: (h > 0).astype(h.dtype)),
    "tanh": (np.tanh, lambda h: 1 - np.tanh(h) ** 2),
}


def _scale_matrix(
    mix: str, fan_in: int, fan_out: int, scale_a: float, scale_b: float, fraction: float
) -> np.ndarray:
    """The documented rule, written independently of sweep.nets.mlp."""
    a, b, f = scale_a, scale_b, fraction
    if mix == "none":
        return np.ones((fan_in, fan_out))
    if mix == "units":
        return np.broadcast_to(
            np.where(np.arange(fan_out) < np.floor(f * fan_out + 0.5), a, b), (fan_in, fan_out)
        )
    m = min(fan_in, fan_out)
    cyclic = np.add.outer(np.arange(fan_in), np.arange(fan_out)) % m
    return np.where(cyclic < np.floor(f * m + 0.5), a, b)


def _monte_carlo(activation, mix, layer_scales, sigma_w2, sigma_b2, width, depth, draws, seed=0):
    """Per draw: q per group (a: the first units) and layer [L, 2], R^l = E_x ||dL/dh^l||^2 [L+1]
    (R^{L+1} = 1: the logits' gradient is a random unit vector), on 4 Gaussian inputs of 40 entries."""
    phi, dphi = PHI[activation]
    rng = np.random.default_rng(seed)
    d, c, n_in = 40, 10, 4
    t = np.resize(np.asarray(layer_scales, float), depth)
    qs, rs = [], []
    for _ in range(draws):
        x = rng.standard_normal((n_in, d))
        x /= np.sqrt(np.mean(x**2))  # q_x = 1 exactly
        hs, ws = [], []
        h = x
        for layer in range(depth + 1):
            fan_in, fan_out = h.shape[1], (width if layer < depth else c)
            s = t[layer] * _scale_matrix(mix, fan_in, fan_out, **HALF) if layer < depth else 1.0
            w = np.sqrt(sigma_w2) * s * rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
            h = (phi(h) if layer else h) @ w + np.sqrt(sigma_b2) * rng.standard_normal(fan_out)
            hs.append(h)
            ws.append(w)
        k = int(np.floor(0.5 * width + 0.5)) if mix == "units" else width
        q = np.array(
            [[np.mean(h[:, :k] ** 2), np.mean(h[:, k:] ** 2) if k < width else np.nan] for h in hs[:-1]]
        )
        delta = rng.standard_normal((n_in, c))
        delta /= np.linalg.norm(delta, axis=1, keepdims=True)  # |dL/dlogits| = 1 per input
        r = [1.0]
        for layer in range(depth, 0, -1):  # dL/dh^layer from dL/dh^{layer+1} through W^{layer+1}
            delta = dphi(hs[layer - 1]) * (delta @ ws[layer].T)
            r.append(np.mean(np.sum(delta**2, axis=1)))
        qs.append(q)
        rs.append(np.array(r[::-1]))
    return np.array(qs), np.array(rs)


def _agree(samples: np.ndarray, predicted: np.ndarray, n_se: float = 4.0, bias: float = 0.0) -> None:
    """|mean - predicted| <= n_se standard errors of the mean over draws (+ a relative finite-width bias)."""
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(len(samples))
    excess = np.abs(mean - predicted) - (n_se * se + bias * np.abs(predicted))
    assert np.all(excess <= 0), (mean, predicted, se)


@pytest.mark.parametrize(
    ("activation", "mix", "layer_scales", "sigma_w2", "sigma_b2"),
    [
        ("linear", "units", (1.0,), 1.0, 0.0),
        ("linear", "entries", (1.0,), 1.0, 0.0),
        ("relu", "none", (0.5, 1.5), 2.0, 0.0),
        ("tanh", "units", (1.0,), 1.76, 0.05),
    ],
)
@pytest.mark.slow
def test_wide_random_nets_follow_the_mixed_mean_field(activation, mix, layer_scales, sigma_w2, sigma_b2):
    width, depth = 2000, 5
    qs, rs = _monte_carlo(activation, mix, layer_scales, sigma_w2, sigma_b2, width, depth, draws=4)
    theory = mixed_profile(
        activation,
        sigma_w2,
        sigma_b2,
        1.0,
        depth=depth,
        width=width,
        input_dim=40,
        mix=mix,
        layer_scales=layer_scales,
        **HALF,
    )
    groups_measured = slice(0, 2) if mix == "units" else slice(0, 1)
    # forward: every unit's h^2 is a sample of q_g; bias O(depth / width) from the finite previous layer
    _agree(qs[:, :, groups_measured], theory.q[:depth, groups_measured], bias=depth / width)
    # backward: the gradient's squared norm per layer, relative to the logits' (R^{L+1} = 1)
    _agree(rs[:, :-1], theory.delta_sq[:-1], bias=depth / width)


# --------------------------------------------------------------------------------- engine physics
@pytest.mark.slow
def test_engine_gradients_follow_the_mixed_mean_field(tiny):
    """Linear nets at init: measured per-layer gradient norms against ``grad_norm_theory``, and every
    layer's gradient relative to the uniform net's (common random numbers) against sqrt(chi) per layer."""
    depth = 12
    tiny["model"] |= {
        "activation": "linear",
        "width": 256,
        "depth": depth,
        "sigma_w2": 1.0,
        "sigma_b2": 0.0,
        "mix": ["none", "units", "entries"],
        "mix_scale_a": 0.5,
        "mix_scale_b": 1.5,
        "layer_scales": ["1", "0.5 1.5"],
    }
    tiny["train"] |= {"steps": 0, "seed": [0, 1, 2, 3]}
    tiny["measure"] |= {"n_eval": 16}
    ds = engine.run(tiny)
    log_g = np.log(ds["grad_norm"].isel(step=0))
    log_t = np.log(ds["grad_norm_theory"])
    deviation = (log_g - log_t).mean("seed")  # seeds: independent networks
    se = (log_g - log_t).std("seed", ddof=1) / 2
    assert float(np.abs(deviation).max()) < 0.25
    assert bool((np.abs(deviation) <= 4 * se + 0.05).all())
    # the level every hidden layer reaches relative to the uniform net (common random numbers): the
    # product of the other layers' chi, sqrt(chi_mean)^(depth - 1), up to the loss-side factor
    # |dL/dlogits|, which is sqrt(1 - 1/C) for tiny logits and at most sqrt(2) times that for saturated
    # ones: |log| <= 0.35 (not the theory's; the readout anchors it in grad_norm_theory)
    level = (
        (log_g - log_g.sel(mix="none", layer_scales="1")).sel(layer=slice(2, depth)).mean(("seed", "layer"))
    )
    predicted = 0.5 * (depth - 1) * np.log(ds["chi_mean"].isel(seed=0))
    assert bool((np.abs(level - predicted) < 0.35 + 0.1).all())
