"""The compiled training program (MLP): no retrace, divergence isolation, gradient norms equal jax.grad's,
initial weight statistics, common random numbers. vmap equals single-variant runs, for every
architecture: tests/test_contract.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import experiment_from_dict
from sweep.data import load_dataset
from sweep.measure.metrics import cross_entropy
from sweep.nets import mlp
from sweep.nets.forward import forward
from sweep.runner import engine
from sweep.runner.train import TRACE_COUNT, variant_key

OUTPUTS = ("train_loss", "train_accuracy", "test_accuracy", "grad_norm", "q_layer")


def test_second_run_of_same_shape_does_not_retrace(tiny):
    tiny["model"]["width"] = 24  # a shape no other test uses
    engine.run(tiny)
    spec_count = {spec: n for spec, n in TRACE_COUNT.items() if spec.model.width == 24}
    tiny["model"]["sigma_w2"] = [0.5, 3.0]  # new values, same shapes
    tiny["train"]["learning_rate"] = 0.2
    engine.run(tiny)
    after = {spec: n for spec, n in TRACE_COUNT.items() if spec.model.width == 24}
    assert spec_count == after and set(after.values()) == {1}


@pytest.mark.slow
def test_chunking_and_position_do_not_change_a_variant(tiny):
    tiny["model"]["sigma_w2"] = [1.0, 2.0, 3.0]
    whole = engine.run(tiny)
    chunked = engine.run(tiny, chunk_size=2)  # chunks of 2, the last padded
    for name in OUTPUTS:
        np.testing.assert_allclose(whole[name].values, chunked[name].values, rtol=2e-4, atol=1e-6)
    alone = engine.run(tiny, overrides=("model.sigma_w2=[3.0]",))
    np.testing.assert_allclose(
        whole["train_loss"].sel(sigma_w2=3.0).values, alone["train_loss"].sel(sigma_w2=3.0).values, rtol=2e-4
    )


@pytest.mark.slow
def test_divergence_is_isolated_and_frozen(tiny):
    tiny["model"].update(activation="relu", depth=4, sigma_w2=2.0)
    tiny["train"].update(learning_rate=[0.01, 1e6], steps=8)
    both = engine.run(tiny)
    good_alone = engine.run(tiny, overrides=("train.learning_rate=[0.01]",))
    bad = both.sel(learning_rate=1e6)
    assert bool(bad["diverged"]) and 0 <= int(bad["diverged_step"]) < 8
    assert np.isnan(bad["train_loss"].values[-1]) and np.isfinite(bad["train_loss"].values[0])
    assert not bool(both["diverged"].sel(learning_rate=0.01))
    for name in OUTPUTS:
        np.testing.assert_allclose(
            both[name].sel(learning_rate=0.01).values,
            good_alone[name].sel(learning_rate=0.01).values,
            rtol=2e-4,
        )


@pytest.mark.slow
def test_gradient_norms_equal_jax_grad(tiny):
    tiny["train"]["steps"] = 0
    tiny["model"]["depth"] = 5
    exp = experiment_from_dict(tiny)
    results = engine.run(exp)
    dataset = load_dataset(exp.base.data)
    spec = mlp.spec(dataset.input_dim, 16, 5, dataset.n_classes, "gaussian")
    x, y = dataset.x_train[:64], dataset.y_train[:64]
    # one compile for both networks (op by op, jax.grad compiled a hundred small programs)
    grad = jax.jit(jax.grad(lambda p, state: cross_entropy(forward(mlp.MLP, p, state, x, spec)[0], y)))
    for sigma_w2 in (1.0, 2.0):
        dynamic = {"sigma_w2": jnp.float32(sigma_w2), "sigma_b2": jnp.float32(0.05)}
        params, state = mlp.init(variant_key(jnp.uint32(0), 0), dynamic, spec)
        grads = grad(params, state)
        expected = [np.linalg.norm(grads["embed"]["w"])]
        expected += [np.linalg.norm(g) for g in grads["blocks"]["w"]]
        expected += [np.linalg.norm(grads["readout"]["w"])]
        measured = results["grad_norm"].sel(sigma_w2=sigma_w2, step=0).values
        np.testing.assert_allclose(measured, expected, rtol=1e-4)


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_initial_weight_statistics(init):
    n, sigma_w2, sigma_b2 = 256, 1.7, 0.3
    spec = mlp.spec(100, n, 4, 10, init)
    dynamic = {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2}
    params, _ = mlp.init(variant_key(jnp.uint32(5), 0), dynamic, spec)
    hidden = np.asarray(params["blocks"]["w"])  # [3, n, n]
    # the entry variance is sigma_w2 / fan_in: 3 * 65536 entries give a relative standard error of 0.3%
    assert hidden.var() * n == pytest.approx(sigma_w2, rel=0.02)
    assert np.asarray(params["embed"]["w"]).var() * 100 == pytest.approx(sigma_w2, rel=0.03)
    biases = np.asarray(params["blocks"]["b"])  # 768 draws: relative standard error ~5%
    assert biases.var() == pytest.approx(sigma_b2, rel=0.2)
    if init == "orthogonal":  # exactly sigma_w times an orthogonal matrix
        for w in hidden:
            np.testing.assert_allclose(w @ w.T, sigma_w2 * np.eye(n), atol=2e-5)


def test_common_random_numbers_share_unit_draws():
    spec = mlp.spec(10, 32, 3, 10, "gaussian")

    def init(seed: int, sigma_w2: float, sigma_b2: float) -> dict:
        return mlp.init(variant_key(jnp.uint32(seed), 0), {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2}, spec)[
            0
        ]

    a, b, c = init(7, 1.0, 0.04), init(7, 4.0, 0.16), init(8, 1.0, 0.04)
    np.testing.assert_allclose(2 * a["blocks"]["w"], b["blocks"]["w"], rtol=1e-6)
    np.testing.assert_allclose(2 * a["readout"]["b"], b["readout"]["b"], rtol=1e-6)
    assert not np.allclose(a["blocks"]["w"], c["blocks"]["w"])


def test_zero_steps_measures_initialisation_only(tiny):
    tiny["train"]["steps"] = 0
    results = engine.run(tiny)
    assert results["step"].values.tolist() == [0]
    assert np.isfinite(results["train_loss"]).all() and np.isfinite(results["q_layer"]).all()


@pytest.mark.slow
def test_every_optimizer_trains(tiny):
    tiny["model"]["sigma_w2"] = 1.5
    tiny["train"].update(optimizer="adam", learning_rate=0.01, steps=30)
    tiny["measure"]["every"] = 30
    for optimizer, lr in (("adam", 0.01), ("rmsprop", 0.003), ("momentum", 0.05), ("sgd", 0.2)):
        results = engine.run(tiny, overrides=(f"train.optimizer={optimizer}", f"train.learning_rate={lr}"))
        loss = results["train_loss"].values
        assert loss[-1] < 0.9 * loss[0], optimizer


def test_the_process_keeps_at_most_max_programs(tiny, monkeypatch):
    """Compiled programs are evicted least recently used first: a long session (or `sweep figures`,
    every experiment in one process) must not hold every executable it ever compiled (each holds
    memory mappings; ~155 of them passed the kernel's default limit and crashed the next compile)."""
    from sweep.runner import engine as run_engine
    from sweep.runner import train as run_train

    monkeypatch.setattr(run_train, "MAX_PROGRAMS", 2)
    monkeypatch.setattr(run_train, "_COMPILED", run_train.OrderedDict())
    for width in (5, 6, 7):  # at initialisation only: quicker to compile, and eviction is all that counts
        run_engine.run(tiny, overrides=(f"model.width={width}", "model.sigma_w2=[1.0]", "train.steps=0"))
    assert [key[0].model.width for key in run_train._COMPILED] == [6, 7]
