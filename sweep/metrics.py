"""Per-variant measurements, pure functions called inside the compiled training program.

All functions here see ONE network; ``sweep.train`` vmaps them. Shapes: ``x: [n, input_dim]``,
``y: [n]`` int, ``logits: [n, C]``; per-layer quantities have length ``n_layers`` (= L+1 for an MLP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from sweep.models import Architecture, Params


class EvalData(NamedTuple):
    """Fixed measurement sets, shared by all variants: a training subset and the test set."""

    x_eval: jax.Array  # [n_eval, d] first n_eval training examples
    y_eval: jax.Array  # [n_eval]
    x_test: jax.Array  # [n_test, d]
    y_test: jax.Array  # [n_test]


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of logits [n, C] against integer labels [n]: a scalar."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def accuracy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of rows whose arg-max logit is the label: a scalar."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == y)


def loss_fn(params: Params, arch: Architecture, phi: Callable, x: jax.Array, y: jax.Array) -> jax.Array:
    logits, _ = arch.apply(params, x, phi)
    return cross_entropy(logits, y)


def measure(params: Params, arch: Architecture, phi: Callable, data: EvalData) -> dict[str, jax.Array]:
    """Loss and accuracy on the training subset, test accuracy, and per-layer gradient norms.

    ``grad_norm[l] = || d loss(train subset) / d W^l ||_F`` for every weight matrix: [n_layers].
    """

    def eval_loss(p: Params) -> tuple[jax.Array, jax.Array]:
        logits, _ = arch.apply(p, data.x_eval, phi)
        return cross_entropy(logits, data.y_eval), logits

    (loss, logits), grads = jax.value_and_grad(eval_loss, has_aux=True)(params)
    test_logits, _ = arch.apply(params, data.x_test, phi)
    return {
        "train_loss": loss,
        "train_accuracy": accuracy(logits, data.y_eval),
        "test_accuracy": accuracy(test_logits, data.y_test),
        "grad_norm": arch.weight_norms(grads),
    }


def forward_signal(params: Params, arch: Architecture, phi: Callable, x: jax.Array) -> dict[str, jax.Array]:
    """The forward signal on inputs x: ``q_layer`` [n_layers] = mean squared pre-activation per layer and
    ``c_layer`` [n_layers, n_pairs] = correlation of the pre-activations of input pairs (rows 0-1, 2-3, ..).
    """
    signal = arch.apply(params, x, phi)[1]
    return {"q_layer": signal["q"], "c_layer": signal["c"]}
