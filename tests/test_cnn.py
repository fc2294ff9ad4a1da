"""The convolutional architecture (``sweep.nets.cnn``): shapes, its exact facts at initialisation (the
delta-orthogonal CNN IS the orthogonal fully connected net at every position; a linear one's body
Jacobian is sigma_w^L times an isometry), the data's input shapes, and its one-line refusals."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import ConfigError, DataConfig, experiment_from_dict
from sweep.data import load_dataset
from sweep.data.datasets import input_shape
from sweep.nets import cnn, mlp
from sweep.nets.block_jacobian import exact_log10_sv
from sweep.nets.contract import network_problem, resolve
from sweep.nets.contract_checks import shape_problem
from sweep.nets.forward import forward, sizes

CNN = resolve("cnn")


def _init(spec, sigma_w2: float = 1.3, sigma_b2: float = 0.05, seed: int = 0):
    dynamic = {"sigma_w2": jnp.float32(sigma_w2), "sigma_b2": jnp.float32(sigma_b2)}
    return CNN.init(jax.random.key(seed), dynamic, spec)


def _centre(w: jax.Array, ndim: int) -> jax.Array:
    taps = w.shape[-ndim - 2 : -2]
    return w[(Ellipsis, *(t // 2 for t in taps), slice(None), slice(None))]


@pytest.mark.slow
def test_contract_and_sizes() -> None:
    assert shape_problem(CNN) is None
    spec = cnn.spec((28, 28, 1), 8, 3, 10, downsample=2, kernel_size=3)
    params, _ = _init(spec)
    assert params["embed"]["w"].shape == (3, 3, 1, 8) and params["embed"]["w_more"].shape == (1, 3, 3, 8, 8)
    assert params["blocks"]["w"].shape == (3, 3, 3, 8, 8)
    size = sizes(spec)
    assert size.row_state == 7 * 7 * 8 and size.n_blocks == 3  # 28 -> 14 -> 7 positions per axis
    # multiply-adds: 14^2 * 9 * 1 * 8 + 7^2 * 9 * 8 * 8 (stem) + 3 * 7^2 * 9 * 64 (body) + 8 * 10
    assert size.multiply_adds == 196 * 72 + 49 * 576 + 3 * 49 * 576 + 80
    x = jax.random.normal(jax.random.key(1), (5, 784))
    logits, signal, _ = forward(CNN, params, {"embed": {}, "blocks": {}, "readout": {}}, x, spec)
    assert logits.shape == (5, 10) and signal["q"].shape == (5,)
    assert np.all(np.isfinite(np.asarray(logits)))


@pytest.mark.parametrize(
    ("shape", "downsample", "padding"),
    [
        ((40, 1), 0, "circular"),
        pytest.param((12, 1), 1, "zero", marks=pytest.mark.slow),
        pytest.param((6, 6, 2), 0, "zero", marks=pytest.mark.slow),
        pytest.param((8, 8, 1), 2, "circular", marks=pytest.mark.slow),
    ],
)
def test_delta_orthogonal_cnn_is_the_fully_connected_net_at_every_position(shape, downsample, padding):
    """At initialisation a delta-orthogonal tanh CNN's pre-pooling output h^{L+1} equals, at every
    position it keeps, the fully connected network (``sweep.nets.mlp``, dense matrix products) whose
    weights are the kernels' centre taps, to float32 round-off (measured: at most 2.4e-7 on values of
    order 1; tolerance 1e-6). The centre taps are
    sigma_w times orthogonal matrices (the widening stem: orthonormal rows times sqrt(C / c0)), every
    other tap is zero, whatever the padding and the stride-2 stem layers."""
    ndim, channels, depth, sigma_w2 = len(shape) - 1, 6, 4, 1.3
    spec = cnn.spec(shape, channels, depth, 10, padding=padding, downsample=downsample, kernel_size=3)
    params, state = _init(spec, sigma_w2)
    sigma_w = math.sqrt(sigma_w2)
    stem = [params["embed"]["w"], *params["embed"].get("w_more", [])]
    kernels = stem + list(params["blocks"]["w"])
    for i, w in enumerate(kernels):
        w = np.asarray(w)
        centre = _centre(w, ndim) / sigma_w
        c_in, c_out = centre.shape
        np.testing.assert_allclose(centre @ centre.T, np.eye(c_in) * c_out / c_in, atol=2e-5)
        off_centre = w.copy()
        off_centre[(Ellipsis, *(t // 2 for t in w.shape[:ndim]), slice(None), slice(None))] = 0
        assert np.all(off_centre == 0), f"kernel {i} has a non-zero tap off the centre"
    x = jax.random.normal(jax.random.key(2), (3, math.prod(shape)))
    # h^{L+1} of the CNN: the embed and the blocks of the contract
    h, _, _ = CNN.embed(params["embed"], state["embed"], x, spec)
    for layer in range(depth):
        block = jax.tree.map(lambda leaf, i=layer: leaf[i], params["blocks"])
        h, _, _ = CNN.block(block, {}, h, spec)
    # the fully connected net at the positions the stride-2 layers keep (every 2^m-th)
    image = np.asarray(x).reshape(3, *shape)
    step = 2**downsample
    kept = image[(slice(None), *(slice(None, None, step),) * ndim)]
    rows = jnp.asarray(kept.reshape(-1, shape[-1]))
    fc_spec = mlp.spec(shape[-1], channels, depth + 1 + max(downsample - 1, 0), 10)
    biases = [params["embed"]["b"], *params["embed"].get("b_more", []), *params["blocks"]["b"]]
    centres = [_centre(w, ndim) for w in kernels]
    a = mlp.embed({"w": centres[0], "b": biases[0]}, {}, rows, fc_spec)[0]
    for w, b in zip(centres[1:], biases[1:], strict=True):
        a = mlp.plain_block({"w": w, "b": b}, {}, a, fc_spec)[0]
    expect = np.asarray(a).reshape(h.shape)
    np.testing.assert_allclose(np.asarray(h), expect, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_linear_delta_orthogonal_body_jacobian_singular_values_equal_sigma_w_to_the_depth() -> None:
    """The engine's generic Jacobian route (``block_jacobian``: the state is positions x channels, here
    10 x 4 = 40) on a linear delta-orthogonal CNN of L = 5 blocks: every one of the 40 singular values of
    dh^{L+1}/dh^1 is sigma_w^L (``sweep.theory.cnn``); Gaussian kernels spread them."""
    sigma_w2, depth = 1.44, 5
    expect = np.log10(math.sqrt(sigma_w2) ** depth)
    for init in ("delta_orthogonal", "gaussian"):
        spec = cnn.spec((10, 1), 4, depth, 3, init=init, activation="linear", padding="zero")
        params, state = _init(spec, sigma_w2, seed=3)
        x = jax.random.normal(jax.random.key(4), (10,))
        sv = np.asarray(exact_log10_sv(CNN, params, state, x, spec))
        assert sv.shape == (40,)
        if init == "delta_orthogonal":
            np.testing.assert_allclose(sv, expect, atol=5e-6)
        else:
            assert sv.max() - sv.min() > 0.5


def test_input_shapes_of_the_datasets() -> None:
    assert input_shape(DataConfig()) == (40, 1)
    assert input_shape(DataConfig(name="gaussian_mixture", input_dim=7)) == (7, 1)
    assert input_shape(DataConfig(name="cifar10")) == (32, 32, 3)
    assert input_shape(DataConfig(name="fashion_mnist")) == (28, 28, 1)
    data = load_dataset(DataConfig(name="synthetic_images", n_train=200, n_test=50, n_classes=4))
    assert data.input_shape == (8, 8, 1) and data.x_train.shape == (200, 64)
    assert data.n_classes == 4 and set(np.unique(data.y_train)) == {0, 1, 2, 3}
    again = load_dataset(DataConfig(name="synthetic_images", n_train=200, n_test=50, n_classes=4))
    np.testing.assert_array_equal(data.x_train, again.x_train)


def test_cifar_rows_are_reordered_channels_last(tmp_path) -> None:
    from tests.test_dataset_files import cifar_files, write_cifar_dir

    files, x_train, _, _, _ = cifar_files()
    directory = write_cifar_dir(tmp_path / "cifar-10-batches-bin", files)
    n = len(x_train)
    data = load_dataset(DataConfig(name="cifar10", path=str(directory), n_train=n, n_test=2))
    planes = x_train.reshape(n, 3, 32, 32).astype(np.float64)
    got = data.x_train.reshape(n, 32, 32, 3)
    # standardisation is one affine map of all pixels: compare up to it, channel by channel
    for c in range(3):
        r = np.corrcoef(got[..., c].ravel(), planes[:, c].ravel())[0, 1]
        assert r > 0.9999
    assert data.input_shape == (32, 32, 3)


def _experiment(model: dict, data: dict | None = None):
    return experiment_from_dict({"model": model, "data": data or {}}, "cnn.toml")


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"arch": "mlp", "init": "delta_orthogonal"}, r"cnn\.toml: model\.init: 'delta_orthogonal' does not"),
        ({"arch": "resnet", "init": ["gaussian", "delta_orthogonal"]}, r"model\.init: .*convolution kernels"),
        ({"arch": "cnn", "kernel_size": 4}, r"cnn\.toml: model\.kernel_size: .*odd"),
        ({"arch": "cnn", "padding": "reflect"}, r"model\.padding: unknown value 'reflect'"),
        ({"arch": "cnn", "channels": 0}, r"model\.channels: must be positive"),
        ({"arch": "mlp", "channels": 8}, r"model\.channels: has no effect with model\.arch = 'mlp'"),
    ],
)
def test_bad_fields_are_refused_in_one_line(model: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        _experiment(model)
    assert "\n" not in str(error.value)


def test_narrowing_delta_orthogonal_stem_is_refused_naming_the_layer() -> None:
    narrow = cnn.spec((32, 32, 3), 2, 3, 10)
    problem = network_problem(narrow)
    assert problem is not None and problem.startswith("model.channels: 2 is fewer than the data's 3")
    assert network_problem(cnn.spec((32, 32, 3), 2, 3, 10, init="gaussian")) is None
    with pytest.raises(ValueError, match="stem maps 3 -> 2 channels"):
        _init(narrow)


@pytest.mark.slow
def test_engine_trains_cnns_and_records_their_jacobian(tmp_path) -> None:
    """A tiny sweep through the whole engine: 1-D and 2-D data, both delta-orthogonal and Gaussian kernels,
    batch norm; everything finite, the MLP mean field attached, the Jacobian of positions x channels."""
    import sweep

    for data, model in (
        ({"name": "mnist1d", "n_train": 256, "n_test": 64}, {"init": ["delta_orthogonal", "gaussian"]}),
        ({"name": "synthetic_images", "n_train": 256, "n_test": 64, "n_classes": 4}, {"downsample": 1}),
    ):
        spec = {
            "model": {"arch": "cnn", "channels": 4, "depth": 3} | model,
            "data": data,
            "train": {"steps": 20, "batch_size": 16, "learning_rate": 0.05},
            "measure": {"every": 10, "n_eval": 32, "jacobian": True},
        }
        ds = sweep.run(spec, out=None, progress=False, log=lambda *a: None)
        assert bool(ds.completed.all()) and not bool(ds.diverged.any())
        assert np.all(np.isfinite(ds.train_loss.values))
        assert np.all(np.isfinite(ds.chi_1.values))
        positions = 40 if data["name"] == "mnist1d" else 16
        assert ds.sizes["sv"] == positions * 4
    batch = dict(spec, model=spec["model"] | {"norm": "batch"}, measure={"every": 10, "n_eval": 32})
    ds = sweep.run(batch, out=None, progress=False, log=lambda *a: None)
    assert bool(ds.completed.all()) and np.all(np.isfinite(ds.train_loss.values))


def test_residual_cnn_with_zero_branch_scale_is_the_identity_body() -> None:
    """x^{l+1} = x^l + a N(conv(phi(x^l)) + b): at a = 0 the body returns its input exactly, at a > 0
    it does not; the stem and readout are the CNN's."""
    arch = resolve("residual_cnn")
    spec = cnn.spec((12, 1), 4, 3, 5)
    spec = dataclasses.replace(spec, arch="residual_cnn", options=(*spec.options, ("branch_scaling", "none")))
    x = jax.random.normal(jax.random.key(5), (2, 12))
    outs = []
    for scale in (0.0, 0.5):
        dynamic = {
            "sigma_w2": jnp.float32(1.3),
            "sigma_b2": jnp.float32(0.05),
            "branch_scale": jnp.float32(scale),
        }
        params, state = arch.init(jax.random.key(0), dynamic, spec)
        h1, _, _ = arch.embed(params["embed"], state["embed"], x, spec)
        h = h1
        for layer in range(spec.depth):
            block = jax.tree.map(lambda leaf, i=layer: leaf[i], (params["blocks"], state["blocks"]))
            h = arch.block(*block, h, spec)[0]
        outs.append((np.asarray(h1), np.asarray(h)))
    np.testing.assert_array_equal(outs[0][1], outs[0][0])
    assert np.abs(outs[1][1] - outs[1][0]).max() > 0.1


def test_branch_fields_belong_to_the_residual_cnn_only() -> None:
    with pytest.raises(ConfigError, match=r"model\.branch_scale: has no effect with model\.arch = 'cnn'"):
        _experiment({"arch": "cnn", "branch_scale": 0.5})
    exp = _experiment({"arch": "residual_cnn", "branch_scale": [0.0, 0.5], "init": "delta_orthogonal"})
    assert exp.n_variants == 2
