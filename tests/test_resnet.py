"""Residual networks (sweep.nets.resnet) against exact facts (SCIENCE: residual networks), and their
config fields. The contract's own tests run on "resnet" too (tests/test_contract.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import ConfigError, experiment_from_dict
from sweep.nets import resnet
from sweep.runner import engine
from sweep.runner.train import variant_key


def streams(spec, sigma_w2: float, alpha: float, seeds: int, x: np.ndarray) -> np.ndarray:
    """Per-unit mean square of the residual stream x^1..x^{L+1} of ``seeds`` networks at inputs x:
    [seeds, L + 1], each network from the engine's own init (keys as the engine draws them)."""

    def one(seed: jax.Array) -> jax.Array:
        dynamic = {"sigma_w2": jnp.float32(sigma_w2), "sigma_b2": jnp.float32(0.0), "branch_scale": alpha}
        params, state = resnet.init(variant_key(seed, 0), dynamic, spec)
        s = resnet.embed(params["embed"], state["embed"], jnp.asarray(x), spec)[0]

        def layer(s, block):
            s = resnet.block(*block, s, spec)[0]
            return s, jnp.mean(s**2)

        first = jnp.mean(s**2)
        _, rest = jax.lax.scan(layer, s, (params["blocks"], state["blocks"]))
        return jnp.concatenate([first[None], rest])

    return np.asarray(jax.jit(jax.vmap(one))(jnp.arange(seeds, dtype=jnp.uint32)))


@pytest.mark.slow
@pytest.mark.parametrize(("alpha", "sigma_w2"), [(0.5, 1.0), (1.0, 0.5)])
def test_linear_branch_grows_by_one_plus_alpha2_sigma_w2_per_block(alpha, sigma_w2):
    """x + alpha W x: E|x^{L+1}|^2 = (1 + alpha^2 sigma_w2)^L |x^1|^2 (any width, in expectation)."""
    depth, width, seeds = 8, 256, 64
    spec = resnet.spec(16, width, depth, 10, activation="linear", branch="reduced")
    x = np.random.default_rng(0).normal(size=(4, 16))
    q = streams(spec, sigma_w2, alpha, seeds, x)
    ratio = q[:, -1] / q[:, 0]  # the same networks' first stream: its own |x^1|^2
    expected = (1 + alpha**2 * sigma_w2) ** depth
    standard_error = ratio.std() / np.sqrt(seeds)
    assert abs(ratio.mean() - expected) < 4 * standard_error + 1e-3 * expected, (ratio.mean(), expected)
    assert standard_error < 0.05 * expected  # the test can tell a wrong exponent or factor apart


@pytest.mark.slow
def test_relu_full_branch_without_biases_grows_by_one_plus_alpha2_sigma_w4_over_2():
    depth, width, seeds, alpha, sigma_w2 = 6, 256, 64, 0.7, 1.5
    spec = resnet.spec(16, width, depth, 10, activation="relu", branch="full")
    x = np.random.default_rng(1).normal(size=(4, 16))
    q = streams(spec, sigma_w2, alpha, seeds, x)
    per_block = q[:, 1:] / q[:, :-1]  # [seeds, L]
    expected = 1 + alpha**2 * sigma_w2**2 / 2
    np.testing.assert_allclose(per_block.mean(0), expected, rtol=0.04)
    wrong = 1 + alpha**2 * sigma_w2 / 2  # sigma_w2 to the first power: what a one-matrix branch gives
    assert abs(per_block.mean() - expected) < abs(per_block.mean() - wrong) / 4


@pytest.mark.slow
def test_zero_learned_gains_make_every_jacobian_singular_value_exactly_one(tiny):
    """SkipInit / ReZero: at initialisation every block is exactly the identity."""
    tiny["model"] |= {
        "arch": "resnet",
        "branch_gain": "learned",
        "branch_scale": 0.0,
        "sigma_w2": [1.0, 4.0],
        "depth": 5,
    }
    tiny["measure"]["jacobian"] = True
    results = engine.run(tiny)
    at_init = results["jacobian_log10_sv"].isel(step=0).values
    assert np.array_equal(at_init, np.zeros_like(at_init))
    trained = results["jacobian_log10_sv"].isel(step=-1).values
    assert not np.array_equal(trained, np.zeros_like(trained))  # the gains learn: no longer the identity
    fixed = engine.run(tiny, overrides=("model.branch_gain=fixed", "model.branch_scale=0.5"))
    assert np.abs(fixed["jacobian_log10_sv"].isel(step=0).values).max() > 0.01


def test_branch_scale_is_dynamic_and_scales_the_branch(tiny):
    tiny["model"] |= {"arch": "resnet", "branch": "reduced", "sigma_w2": 1.0, "branch_scale": [0.0, 0.5, 1.0]}
    tiny["train"]["steps"] = 0
    exp = experiment_from_dict(tiny)
    from sweep.config.grid import groups

    assert len(groups(exp)) == 1  # one compiled program serves every alpha
    q = engine.run(exp)["q_layer"]
    deep = q.isel(layer=-2).values  # the last block's branch pre-activation sees a longer stream
    assert deep[0] < deep[1] < deep[2]


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"branch": "reduced"}, "model.branch"),
        ({"branch_scale": 0.5}, "model.branch_scale"),
        ({"arch": "resnet", "mix": "units"}, "model.mix"),
        ({"arch": "resnet", "layer_scales": "1 2"}, "model.layer_scales"),
    ],
)
def test_a_field_the_architecture_does_not_read_is_refused(model, field):
    with pytest.raises(ConfigError, match=f"{field}: has no effect with model.arch"):
        experiment_from_dict({"model": model})
    experiment_from_dict({"model": {"arch": "resnet", "branch": "reduced", "branch_scale": 0.5}})


def test_residual_mean_field_exact_facts():
    from sweep.theory.residual import residual_profile

    linear = residual_profile("linear", 1.0, 0.0, 0.5, 8, "reduced", q_input=2.0)
    assert linear.p_stream[-1] / linear.p_stream[0] == pytest.approx(1.25**8, rel=1e-6)
    relu = residual_profile("relu", 1.5, 0.0, 0.7, 6, "full")
    np.testing.assert_allclose(relu.p_stream[1:] / relu.p_stream[:-1], 1 + 0.49 * 1.5**2 / 2, rtol=1e-6)
    tanh = residual_profile("tanh", 1.0, 0.05, [1.0, 1.0 / np.sqrt(200)], 200, "full")
    assert tanh.grad_ratio[0] > 10 * tanh.grad_ratio[1]  # alpha / sqrt(L) keeps the ratio bounded
    assert tanh.grad_ratio[1] < 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("activation", "branch"), [("tanh", "full"), ("relu", "full"), ("tanh", "reduced"), ("relu", "reduced")]
)
def test_engine_follows_the_residual_mean_field(tiny, activation, branch):
    """Width 256, 16 seeds: measured q of every layer and the gradient ratio first/last block at
    initialisation against the per-variant predictions in the results."""
    tiny["model"] |= {
        "arch": "resnet",
        "activation": activation,
        "branch": branch,
        "width": 256,
        "depth": 12,
        "sigma_w2": 1.5,
        "sigma_b2": 0.05 if activation == "tanh" else 0.0,
        "branch_scale": [0.5, 1.0],
    }
    tiny["train"] |= {"steps": 0, "seed": list(range(16))}
    results = engine.run(tiny)
    q = results["q_layer"].mean("seed")
    theory = results["q_layer_theory"].isel(seed=0).values
    np.testing.assert_allclose(q.values[:, :-1], theory[:, :-1], rtol=0.1)  # embed and blocks
    np.testing.assert_allclose(q.values[:, -1], theory[:, -1], rtol=0.25)  # the logits: 10 units only
    grad = results["grad_norm"].isel(step=0)
    measured = np.exp(np.log(grad.isel(layer=1) / grad.isel(layer=-2)).mean("seed"))
    predicted = results["grad_ratio_theory"].isel(seed=0).values
    if branch == "reduced" and activation == "relu":  # a stream with a mean: not predicted
        assert np.isnan(predicted).all()
    elif activation == "tanh":
        np.testing.assert_allclose(measured.values, predicted, rtol=0.15)
    else:  # relu, full branch: the minibatch's cross-example terms (see sweep.theory.residual)
        assert np.all(measured.values < predicted) and np.all(measured.values > 0.4 * predicted)
    assert "q_star" not in results or np.isnan(results["q_star"]).all()
