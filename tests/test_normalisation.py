"""Normalisation (``model.norm``): the layers, their theory against exact values, Monte Carlo and the
engine's measurements of wide networks, and the experiment file's refusals."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import ConfigError, experiment_from_dict
from sweep.measure.metrics import EvalData, measure
from sweep.nets import mlp, normalisation
from sweep.nets.forward import forward
from sweep.runner import engine
from sweep.theory.normalisation import (
    batch_norm_growth,
    layer_norm_c_map,
    layer_norm_critical_sigma_w2,
    layer_norm_mean_field,
    unit_moments,
)


# ------------------------------------------------------------------------------------------ the layers
def test_layer_norm_normalises_each_row_and_batch_norm_each_unit():
    h = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (32, 24))
    params, _ = normalisation.init("layer", 24)
    out, _ = normalisation.apply("layer", params, {}, h, training=True)
    np.testing.assert_allclose(np.mean(out, axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.mean(np.square(out), axis=1), 1, atol=1e-4)  # var / (var + eps)
    params, state = normalisation.init("batch", 24)
    out, new = normalisation.apply("batch", params, state, h, training=True)
    np.testing.assert_allclose(np.mean(out, axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(np.mean(np.square(out), axis=0), 1, atol=1e-4)
    rate = normalisation.RUNNING_RATE  # running statistics: one step from (0, 1) toward the batch's
    np.testing.assert_allclose(new["mean"], rate * np.mean(h, axis=0), rtol=1e-5)
    np.testing.assert_allclose(new["var"], (1 - rate) + rate * np.var(h, axis=0, ddof=1), rtol=1e-5)
    inference, same = normalisation.apply("batch", params, new, h, training=False)  # by those statistics
    expected = (h - new["mean"][None]) / np.sqrt(new["var"][None] + normalisation.EPS)
    np.testing.assert_allclose(inference, expected, rtol=1e-5, atol=1e-5)
    assert same is new


# --------------------------------------------------------------------------------------------- theory
def test_batch_norm_growth_exact_values():
    """(B - 2)/(B - 3) for linear nets; E[phi'(z)^2] / Var phi(z) as B grows, in closed form where it
    has one (relu: pi / (pi - 1); erf: 2 / (sqrt 5 arcsin(2/3)))."""
    for b, growth in ((4, 2.0), (8, 1.2), (16, 14 / 13), (32, 30 / 29)):
        assert batch_norm_growth("linear", b) == (pytest.approx(growth, rel=1e-12), True)
    assert batch_norm_growth("linear", 3).growth == math.inf
    assert batch_norm_growth("relu", 64).growth == pytest.approx(math.pi / (math.pi - 1), rel=1e-9)
    assert batch_norm_growth("erf", 64).growth == pytest.approx(
        2 / (math.sqrt(5) * math.asin(2 / 3)), rel=1e-9
    )
    assert batch_norm_growth("tanh", 64).growth == pytest.approx(1.178, abs=5e-4)
    assert batch_norm_growth("sigmoid", 64).growth == pytest.approx(1.034, abs=5e-4)
    assert not batch_norm_growth("tanh", 64).exact


def test_layer_norm_correlation_map_equals_monte_carlo():
    """The map's Gaussian expectations against 400,000 NumPy draws of correlated unit Gaussians (standard
    error ~ 2e-3 on the ratio)."""
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((2, 400_000))
    for activation, phi in (("tanh", np.tanh), ("relu", lambda u: np.maximum(u, 0))):
        for c in (0.2, 0.7):
            u1, u2 = z1, c * z1 + math.sqrt(1 - c * c) * z2
            sigma_w2, sigma_b2 = 1.8, 0.1
            mc = (sigma_w2 * np.mean(phi(u1) * phi(u2)) + sigma_b2) / (
                sigma_w2 * np.mean(phi(u1) ** 2) + sigma_b2
            )
            assert float(layer_norm_c_map(activation, sigma_w2, sigma_b2, np.float64(c))) == pytest.approx(
                mc, abs=6e-3
            )


def test_layer_norm_phases():
    """chi_1 = sigma_w2 D / (sigma_w2 V + sigma_b2): linear and relu (D = V) are ordered with biases and
    critical without; tanh (D > V) turns chaotic above sigma_b2 / (D - V)."""
    assert layer_norm_mean_field("linear", 2.0, 0.0).chi_1 == pytest.approx(1.0)
    assert layer_norm_mean_field("relu", 2.0, 0.5).chi_1 == pytest.approx(1.0 / 1.5)
    m = unit_moments("tanh")
    critical = layer_norm_critical_sigma_w2("tanh", 0.05)
    assert critical == pytest.approx(0.05 / (m.dvar - m.var))
    below, above = (
        layer_norm_mean_field("tanh", 0.9 * critical, 0.05),
        layer_norm_mean_field("tanh", 2.0, 0.05),
    )
    assert below.chi_1 < 1 and below.c_star == 1.0 and math.isfinite(below.xi_c)
    assert above.chi_1 > 1 and 0 < above.c_star < 1 and above.chi_c < 1
    c = float(layer_norm_c_map("tanh", 2.0, 0.05, np.float64(above.c_star)))
    assert c == pytest.approx(above.c_star, abs=1e-9)  # a fixed point
    assert layer_norm_mean_field("tanh", 50.0, 0.05).chi_1 < m.dvar / m.var  # the bound sigma_w2 -> inf


@pytest.mark.slow
def test_layer_norm_correlations_of_a_wide_network_follow_the_map():
    """Two inputs of correlation 0.3 through a width-1024 layer-normalised tanh MLP (8 draws): c^l
    measured against the map iterated from the measured c^1 (fluctuations O(1/sqrt(N)) = 0.03 per draw)."""
    spec = mlp.spec(64, 1024, 8, 2, activation="tanh", norm="layer")
    z = jax.random.normal(jax.random.key(7), (2, 64))
    x = jnp.stack([z[0], 0.3 * z[0] + math.sqrt(1 - 0.09) * z[1]])

    @jax.jit  # one compile for the 8 draws (run op by op, each forward pass took ~1 s)
    def correlations(seed: jax.Array) -> jax.Array:
        params, state = mlp.MLP.init(jax.random.key(seed), {"sigma_w2": 2.0, "sigma_b2": 0.05}, spec)
        return forward(mlp.MLP, params, state, x, spec)[1]["c"][:-1, 0]

    measured = np.mean([np.asarray(correlations(seed)) for seed in range(8)], axis=0)
    predicted = [measured[0]]
    for _ in range(len(measured) - 1):
        predicted.append(float(layer_norm_c_map("tanh", 2.0, 0.05, np.float64(predicted[-1]))))
    np.testing.assert_allclose(measured, predicted, atol=0.03)
    assert measured[-1] > 0.45  # toward c* = 0.55: the map, not a guess, moved it there


# -------------------------------------------------------------------------------- the engine measures it
def _growth(activation: str, norm: str, batch_size: int, n_eval: int, sigma_w2=1.0, sigma_b2=0.0, seeds=4):
    """The measured growth per layer of the squared gradient norm toward the input (width 256, depth 30,
    a fit of log |dL/dW^l|^2 over layers 4..27), averaged over ``seeds`` networks."""
    depth = 30
    spec = mlp.spec(32, 256, depth, 10, activation=activation, norm=norm)
    run = jax.jit(lambda p, st, data: measure(p, st, mlp.MLP, spec, data, batch_size)["grad_norm"])
    out = []
    for seed in range(seeds):
        dynamic = {"sigma_w2": jnp.float32(sigma_w2), "sigma_b2": jnp.float32(sigma_b2)}
        params, state = mlp.MLP.init(jax.random.key(seed), dynamic, spec)
        x = jax.random.normal(jax.random.key(100 + seed), (n_eval, 32))
        y = jax.random.randint(jax.random.key(200 + seed), (n_eval,), 0, 10)
        g = np.asarray(run(params, state, EvalData(x, y, x, y)))
        layers = np.arange(len(g))[3 : depth - 3]
        out.append(math.exp(-np.polyfit(layers, np.log(g[3 : depth - 3] ** 2), 1)[0]))
    return float(np.mean(out))


@pytest.mark.slow
def test_batch_norm_gradients_explode_at_the_predicted_rate():
    """Linear nets: (B - 2)/(B - 3) exactly (measured 1.1996 at B = 8, 1.0753 at 16); relu and tanh at
    B = 128 against the large-batch limit (measured 1.462 vs 1.467 and 1.198 vs 1.178: the finite batch
    adds ~1/B)."""
    for batch_size in (8, 16):
        measured = _growth("linear", "batch", batch_size, 2 * batch_size)
        assert measured == pytest.approx(batch_norm_growth("linear", batch_size).growth, rel=0.02)
    assert _growth("relu", "batch", 128, 256) == pytest.approx(
        batch_norm_growth("relu", 128).growth, rel=0.03
    )
    assert _growth("tanh", "batch", 128, 256) == pytest.approx(
        batch_norm_growth("tanh", 128).growth, rel=0.03
    )


@pytest.mark.slow
def test_layer_norm_gradients_grow_by_chi_1():
    """A chaotic layer-normalised tanh net (sigma_w2 = 2, sigma_b2 = 0.05), one example's gradient:
    measured 1.098 per layer against chi_1 = 1.108; and no growth for a linear one (chi_1 = 1)."""
    chi_1 = layer_norm_mean_field("tanh", 2.0, 0.05).chi_1
    assert _growth("tanh", "layer", 1, 1, sigma_w2=2.0, sigma_b2=0.05, seeds=8) == pytest.approx(
        chi_1, rel=0.03
    )
    assert _growth("linear", "layer", 1, 1, seeds=4) == pytest.approx(1.0, abs=0.02)


# ------------------------------------------------------------------------------------ the engine runs it
@pytest.mark.slow
def test_normalised_networks_train_and_pin_the_forward_signal(tiny):
    tiny["model"].update(norm=["none", "layer", "batch"], sigma_w2=[1.0, 4.0], depth=4)
    results = engine.run(tiny)
    for norm in ("layer", "batch"):
        one = results.sel(norm=norm)
        q = one["q_layer"].values  # layers 1..L: the normalised pre-activation, mean square 1 per unit
        np.testing.assert_allclose(q[..., :-1], 1.0, atol=2e-3)
        assert np.all(np.isfinite(one["test_accuracy"].values)) and not bool(one["diverged"].any())
    q = results.sel(norm="none")["q_layer"].values[..., 1]
    assert q[1] > 3 * q[0]  # without normalisation sigma_w2 sets it


def test_batch_norm_and_jacobians_are_refused(tiny):
    tiny["model"]["norm"] = "batch"
    tiny["measure"]["jacobian"] = True
    with pytest.raises(
        ConfigError, match=r"^<dict>: measure.jacobian: is not measured with model.norm = 'batch'"
    ):
        experiment_from_dict(tiny, "<dict>")
    tiny["model"]["norm"] = "group"
    with pytest.raises(
        ConfigError, match=r"model.norm: unknown value 'group'; choose from \['none', 'layer'"
    ):
        experiment_from_dict(tiny, "<dict>")
    tiny["measure"]["jacobian"] = False
    tiny["model"].update(norm="layer", arch="examples.gated_mlp:GATED")
    with pytest.raises(ConfigError, match=r"model\.norm: has no effect with model\.arch"):
        experiment_from_dict(tiny, "<dict>")


def test_gradient_growth_recovers_a_geometric_profile():
    """|dL/dW^l|^2 = r^(L - l) exactly (with a readout and an input layer off the line, and a shorter
    net padded with NaN as a results Dataset holds it) gives r; too few layers give NaN."""
    import xarray as xr

    from sweep.measure.predictions import gradient_growth

    layers = np.arange(1, 22)
    deep = 1.3 ** ((21 - layers) / 2)
    deep[0], deep[-1] = 50.0, 1e-3  # the input layer and the readout follow other rules
    short = np.full(21, np.nan)
    short[:10] = 1.1 ** ((10 - np.arange(1, 11)) / 2)
    too_short = np.full(21, np.nan)
    too_short[:6] = 1.0
    da = xr.DataArray(np.stack([deep, short, too_short]), dims=("depth", "layer"), coords={"layer": layers})
    growth = gradient_growth(da).values
    np.testing.assert_allclose(growth[:2], [1.3, 1.1], rtol=1e-12)
    assert np.isnan(growth[2])
