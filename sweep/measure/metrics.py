"""Per-variant measurements, pure functions called inside the compiled training program.

All functions here see ONE network of any architecture (``sweep.nets.forward``); ``sweep.runner.train`` vmaps
them. Shapes: ``x: [n, input_dim]``, ``y: [n]`` int, ``logits: [n, C]``; per-layer quantities have length
``n_layers`` (embed, blocks, readout: L+1 for an MLP).

A network that normalises with its batch's statistics (``Architecture.batch_statistics``: batch norm)
is measured as it is trained: on the measurement subset cut into ``k = n_eval // batch_size``
minibatches of ``batch_size`` rows (the batch size sets its gradients' growth), each with its own
statistics; the loss, the accuracy and q^l are the minibatches' means, a gradient norm the root mean
square ``sqrt(mean_k |dL_k/dW|^2)``, c^l taken from pairs of rows within minibatches. Test accuracy
uses the network's inference form (``spec.training = False``: batch norm's running statistics).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from sweep.nets.contract import Architecture, Spec, uses_batch_statistics
from sweep.nets.forward import N_PAIRS, forward, weight_norms


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


def minibatches(x: jax.Array, y: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """The first ``k * b`` rows cut into ``k = max(1, n // batch_size)`` minibatches of
    ``b = min(batch_size, n)`` rows: [k, b, ...] each."""
    b = min(batch_size, x.shape[0])
    k = x.shape[0] // b
    return x[: k * b].reshape(k, b, *x.shape[1:]), y[: k * b].reshape(k, b)


def _inference(spec: Spec) -> Spec:
    return dataclasses.replace(spec, training=False)


def measure(
    params: dict, state: dict, arch: Architecture, spec: Spec, data: EvalData, batch_size: int
) -> dict[str, jax.Array]:
    """Loss and accuracy on the training subset, test accuracy, and per-layer gradient norms.

    ``grad_norm[l] = || d loss(train subset) / d W^l ||_F`` for every layer's weight matrices: [n_layers]
    (in minibatches of ``batch_size`` rows where the network uses batch statistics; module docstring).
    """

    def eval_loss(p: dict, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = forward(arch, p, state, x, spec)[0]
        return cross_entropy(logits, y), accuracy(logits, y)

    def one_batch(batch: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        (loss, acc), grads = jax.value_and_grad(eval_loss, has_aux=True)(params, *batch)
        return loss, acc, weight_norms(grads, arch.n_blocks(spec))

    if uses_batch_statistics(arch, spec):
        loss, acc, norms = jax.lax.map(one_batch, minibatches(data.x_eval, data.y_eval, batch_size))
        loss, acc, norms = jnp.mean(loss), jnp.mean(acc), jnp.sqrt(jnp.mean(norms**2, axis=0))
    else:
        loss, acc, norms = one_batch((data.x_eval, data.y_eval))
    test_logits = forward(arch, params, state, data.x_test, _inference(spec))[0]
    return {
        "train_loss": loss,
        "train_accuracy": acc,
        "test_accuracy": accuracy(test_logits, data.y_test),
        "grad_norm": norms,
    }


def forward_signal(
    params: dict, state: dict, arch: Architecture, spec: Spec, x: jax.Array, batch_size: int
) -> dict[str, jax.Array]:
    """The forward signal on inputs x: ``q_layer`` [n_layers] = mean square of each layer's tap (the
    pre-activation) per unit, ``c_layer`` [n_layers, n_pairs] = correlation of input pairs' taps, and for
    taps with positions ``mode_power`` [n_layers, P] (``spatial_modes``)
    (rows 0-1, 2-3, ..; within minibatches of ``batch_size`` where the network uses batch statistics,
    the first ``min(8, n // 2)`` such pairs, NaN where the minibatches hold fewer)."""
    if not uses_batch_statistics(arch, spec):
        signal = forward(arch, params, state, x, spec)[1]
        modes = {"mode_power": signal["modes"]} if "modes" in signal else {}
        return {"q_layer": signal["q"], "c_layer": signal["c"]} | modes
    batches, _ = minibatches(x, jnp.zeros(x.shape[0], jnp.int32), batch_size)
    signal = jax.lax.map(lambda rows: forward(arch, params, state, rows, spec)[1], batches)
    n_pairs = min(N_PAIRS, x.shape[0] // 2)
    c = jnp.moveaxis(signal["c"], 0, 1).reshape(signal["c"].shape[1], -1)  # [n_layers, k * pairs]
    c = jnp.pad(c, ((0, 0), (0, max(0, n_pairs - c.shape[1]))), constant_values=jnp.nan)[:, :n_pairs]
    modes = {"mode_power": signal["modes"][0]} if "modes" in signal else {}  # the first minibatch's inputs
    return {"q_layer": jnp.mean(signal["q"], axis=0), "c_layer": c} | modes
