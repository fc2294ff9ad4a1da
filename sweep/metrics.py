"""Per-variant measurements, pure functions called inside the compiled training program.

All functions here see ONE network of any architecture (``sweep.nets.forward``); ``sweep.train`` vmaps
them. Shapes: ``x: [n, input_dim]``, ``y: [n]`` int, ``logits: [n, C]``; per-layer quantities have length
``n_layers`` (embed, blocks, readout: L+1 for an MLP).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from sweep.nets.contract import Architecture, Spec
from sweep.nets.forward import forward, weight_norms


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


def loss_fn(
    params: dict, state: dict, arch: Architecture, spec: Spec, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, dict]:
    """Mean cross-entropy of the network on (x, y), and the network's new state (aux)."""
    logits, _, new_state = forward(arch, params, state, x, spec)
    return cross_entropy(logits, y), new_state


def measure(
    params: dict, state: dict, arch: Architecture, spec: Spec, data: EvalData
) -> dict[str, jax.Array]:
    """Loss and accuracy on the training subset, test accuracy, and per-layer gradient norms.

    ``grad_norm[l] = || d loss(train subset) / d W^l ||_F`` for every layer's weight matrices: [n_layers].
    """

    def eval_loss(p: dict) -> tuple[jax.Array, jax.Array]:
        logits = forward(arch, p, state, data.x_eval, spec)[0]
        return cross_entropy(logits, data.y_eval), logits

    (loss, logits), grads = jax.value_and_grad(eval_loss, has_aux=True)(params)
    test_logits = forward(arch, params, state, data.x_test, spec)[0]
    return {
        "train_loss": loss,
        "train_accuracy": accuracy(logits, data.y_eval),
        "test_accuracy": accuracy(test_logits, data.y_test),
        "grad_norm": weight_norms(grads, arch.n_blocks(spec)),
    }


def forward_signal(
    params: dict, state: dict, arch: Architecture, spec: Spec, x: jax.Array
) -> dict[str, jax.Array]:
    """The forward signal on inputs x: ``q_layer`` [n_layers] = mean square of each layer's tap (the
    pre-activation) per unit and ``c_layer`` [n_layers, n_pairs] = correlation of input pairs' taps
    (rows 0-1, 2-3, ..)."""
    signal = forward(arch, params, state, x, spec)[1]
    return {"q_layer": signal["q"], "c_layer": signal["c"]}
