"""Variants trained in passes (sweep.runner.passes): the same numbers as one vmap, and the pass sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.runner.passes import CPU_PASS_BYTES, in_passes, largest_pass, one_layer_bytes, variants_per_pass


def network_like(x: dict) -> dict:
    """A per-variant function with a pytree in and out, a product and a reduction."""
    w = jnp.outer(x["a"], x["b"])
    return {"norm": jnp.sum(w @ w), "row": jnp.tanh(w[0]) * x["s"]}


@pytest.mark.parametrize("per_pass", [1, 3, 4, 7, 8])  # 7 variants: exact, padded and single passes
def test_passes_equal_one_vmap(per_pass):
    rng = np.random.default_rng(0)
    xs = {"a": rng.normal(size=(7, 5)), "b": rng.normal(size=(7, 5)), "s": rng.normal(size=7)}
    xs = jax.tree.map(jnp.asarray, xs)
    expected = jax.vmap(network_like)(xs)
    got = jax.jit(lambda xs: in_passes(network_like, xs, per_pass))(xs)
    for name in expected:
        assert got[name].shape == expected[name].shape
        # a pass of one variant runs an unbatched product: float32 rounding of the sums may differ
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=1e-6)


def test_passes_on_a_cpu_hold_a_cache_of_one_layer():
    for width, batch in [(32, 32), (64, 64), (128, 32), (128, 128), (256, 64), (1024, 16)]:
        layer = 4 * (batch * width + width * width)
        largest = largest_pass(layer, "cpu")
        assert largest * layer <= CPU_PASS_BYTES or largest == 1
        assert (largest + 1) * layer > CPU_PASS_BYTES
    # the shapes measured in the module docstring
    shapes = [(32, 32, 64), (64, 64, 7), (128, 32, 64), (32, 128, 64), (128, 128, 64)]
    picks = [variants_per_pass(4 * (b * w + w * w), n, "cpu") for w, b, n in shapes]
    assert picks == [6, 1, 1, 2, 1]  # 64 variants in 11 passes of 6 (the last of 4)


@pytest.mark.parametrize("n", [1, 2, 5, 17, 20, 21, 64, 1000])
def test_passes_are_balanced_and_never_larger_than_allowed(n):
    layer = 4 * (32 * 32 + 32 * 32)
    largest = largest_pass(layer, "cpu")  # 6
    k = variants_per_pass(layer, n, "cpu")
    passes = -(-n // k)
    assert k <= largest and k <= n
    assert passes == -(-n // largest)  # no more passes than needed
    assert passes * k - n < passes  # the padding of the last pass is less than one variant per pass


def test_accelerators_train_every_variant_at_once():
    assert largest_pass(4 * 2 * 1024**2, "gpu") is None
    assert variants_per_pass(4 * 2 * 1024**2, 300, "gpu") == 300
    assert variants_per_pass(4 * 2 * 32**2, 300, "tpu") == 300


def test_one_layer_is_counted_from_the_shapes():
    """An MLP's block: its weight matrix [N, N] and a minibatch [B, N] of its state, in float32."""
    from sweep.nets import mlp

    for width, depth, batch in [(32, 20, 32), (128, 4, 16), (64, 1, 8)]:
        spec = mlp.spec(40, width, depth, 10)
        assert one_layer_bytes(spec, batch) == 4 * (batch * width + width * width)
