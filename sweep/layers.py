"""The hidden layer ``h_next = phi(h) W + b`` with a backward pass written for XLA's CPU matmul kernels.

The maths is plain backpropagation; only what is kept for the backward pass and the layout of the
weight-gradient product differ from what ``jax.grad`` would produce:

- the activations are kept transposed, ``a^T = phi(h)^T`` [N_in, B], so that the weight gradient
  ``dW = a^T g`` is a canonical row-major matrix product. ``jax.grad`` writes it as a product that
  contracts the rows of both operands, which XLA's CPU backend sends to a slower, generic kernel;
- for activations whose derivative is a function of their output (tanh, sigmoid, relu, linear), the
  derivative is computed from ``a^T`` and ``h`` is not kept at all: one stacked [L, B, N] buffer per
  layer scan instead of two.

Shapes (one network, as everywhere in ``sweep.models``): ``h`` [B, N_in], ``w`` [N_in, N_out],
``b`` [N_out] -> ``h_next`` [B, N_out].
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from sweep.activations import OUTPUT_DERIVATIVES, Activation


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def hidden_layer(h: jax.Array, w: jax.Array, b: jax.Array, phi: Activation) -> jax.Array:
    """``phi(h) @ w + b[None, :]``: [B, N_in] -> [B, N_out]."""
    return phi(h) @ w + b[None, :]


def _forward(h: jax.Array, w: jax.Array, b: jax.Array, phi: Activation):
    a = phi(h)
    kept_h = None if phi in OUTPUT_DERIVATIVES else h
    return a @ w + b[None, :], (a, w, kept_h)


def _backward(phi: Activation, residuals, g: jax.Array):
    """g = dL/dh_next [B, N_out] -> (dL/dh [B, N_in], dL/dw [N_in, N_out], dL/db [N_out])."""
    a, w, h = residuals
    # a.T materialised (the barrier stops XLA folding the transpose back into the product): XLA's
    # CPU backend then runs dW = a^T g in its fast matmul kernel; copying a^T costs less than the
    # generic kernel it would otherwise use for a product that contracts both operands' rows.
    dw = jax.lax.optimization_barrier(a.T) @ g
    da = g @ w.T
    from_output: Callable | None = OUTPUT_DERIVATIVES.get(phi)
    if from_output is not None:
        dh = da * from_output(a)
    else:
        dh = jax.vjp(phi, h)[1](da)[0]
    return dh, dw, jnp.sum(g, axis=0)


hidden_layer.defvjp(_forward, _backward)
