"""The hand-written backward pass of ``sweep.nets.mlp_layer.hidden_layer`` against ``jax.grad`` of the
formula."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.nets.activations import ACTIVATIONS, OUTPUT_DERIVATIVES
from sweep.nets.mlp_layer import hidden_layer


def _plain(h, w, b, phi):
    return phi(h) @ w + b[None, :]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_gradients_equal_autodiff(name):
    """All three gradients, through two stacked layers and a nonlinear loss, for every activation
    (both routes: derivative from the output, and from the kept pre-activation)."""
    phi = ACTIVATIONS[name]
    keys = jax.random.split(jax.random.key(0), 6)
    h = 1.5 * jax.random.normal(keys[0], (8, 12))
    w1, w2 = (jax.random.normal(k, (12, 12)) / np.sqrt(12) * 1.5 for k in keys[1:3])
    b1, b2 = (0.3 * jax.random.normal(k, (12,)) for k in keys[3:5])
    target = jax.random.normal(keys[5], (8, 12))

    def loss(layer, h, w1, b1, w2, b2):
        out = layer(layer(h, w1, b1, phi), w2, b2, phi)
        return jnp.sum(jnp.sin(out) * target)

    ours = jax.grad(lambda *a: loss(hidden_layer, *a), argnums=range(5))(h, w1, b1, w2, b2)
    reference = jax.grad(lambda *a: loss(_plain, *a), argnums=range(5))(h, w1, b1, w2, b2)
    for got, want in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(hidden_layer(h, w1, b1, phi), _plain(h, w1, b1, phi), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("phi", list(OUTPUT_DERIVATIVES), ids=lambda f: getattr(f, "__name__", "phi"))
def test_output_derivatives_equal_autodiff(phi):
    """phi'(h) from a = phi(h) equals jax.grad(phi)(h), off the kinks (relu at 0 included: both 0)."""
    h = jnp.concatenate([jnp.linspace(-6.0, 6.0, 241), jnp.zeros(1)])
    from_output = OUTPUT_DERIVATIVES[phi](phi(h))
    np.testing.assert_allclose(from_output, jax.vmap(jax.grad(phi))(h), rtol=1e-5, atol=1e-6)


def test_vmapped_under_scan_equals_autodiff():
    """The layer as the engine uses it: stacked weights applied by lax.scan, vmapped over variants."""
    keys = jax.random.split(jax.random.key(1), 3)
    ws = jax.random.normal(keys[0], (3, 5, 6, 6)) / np.sqrt(6)  # [variants, layers, N, N]
    bs = 0.1 * jax.random.normal(keys[1], (3, 5, 6))
    x = jax.random.normal(keys[2], (4, 6))

    def loss(layer, w, b):
        h, _ = jax.lax.scan(lambda h, wb: (layer(h, *wb, jnp.tanh), None), x, (w, b))
        return jnp.sum(h**2)

    ours = jax.vmap(jax.grad(lambda w, b: loss(hidden_layer, w, b), argnums=(0, 1)))(ws, bs)
    reference = jax.vmap(jax.grad(lambda w, b: loss(_plain, w, b), argnums=(0, 1)))(ws, bs)
    for got, want in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
