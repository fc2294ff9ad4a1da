"""Normalisation of pre-activations (``model.norm``), for the architectures that offer it.

Written for ONE network on a batch ``h`` [B, N] (rows = examples, columns = units), as a layer that
architectures call inside their blocks: ``phi(N(h))`` with ``h = x W + b``.

- ``"layer"``: each row over its units, ``N(h) = g (h - mean_units) / sqrt(var_units + eps) + o``
  (Ba et al. 2016): no coupling between rows, the same in training and in inference.
- ``"batch"``: each unit over the rows of the batch, ``(h - mean_rows) / sqrt(var_rows + eps)`` with the
  biased batch variance (Ioffe & Szegedy 2015), when ``spec.training``: the rows of a minibatch are
  coupled, so the engine measures such a network in minibatches of ``train.batch_size`` rows
  (``Architecture.batch_statistics``). It keeps running statistics ``m <- (1 - r) m + r mean_rows`` and
  ``v <- (1 - r) v + r var_rows (B / (B - 1))`` (r = ``RUNNING_RATE``; the unbiased variance, as
  PyTorch does) in its state, and in inference (``spec.training`` False: test accuracy) normalises by
  them instead.

Both have a learned gain g and offset o per unit (params ``{"gain": [N], "offset": [N]}``, starting at 1
and 0: at initialisation the output is exactly the normalised pre-activation, the case of the theory in
``sweep.theory.normalisation``). They are vectors, so the gradient norms of the weight matrices do not
count them. ``"none"``: the identity, no parameters, no state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NORMS = ("none", "layer", "batch")
EPS = 1e-5
RUNNING_RATE = 0.1


def init(kind: str, width: int, depth: int | None = None) -> tuple[dict, dict]:
    """``(params, state)`` of one normalisation layer, or of ``depth`` of them stacked ([depth, N])."""
    if kind == "none":
        return {}, {}
    shape = (width,) if depth is None else (depth, width)
    params = {"gain": jnp.ones(shape, jnp.float32), "offset": jnp.zeros(shape, jnp.float32)}
    if kind == "layer":
        return params, {}
    return params, {"mean": jnp.zeros(shape, jnp.float32), "var": jnp.ones(shape, jnp.float32)}


def apply(kind: str, params: dict, state: dict, h: jax.Array, training: bool) -> tuple[jax.Array, dict]:
    """``N(h)`` for ``h`` [B, N] and the layer's new state (running statistics: updated only when
    ``training`` with batch statistics)."""
    if kind == "none":
        return h, state
    if kind == "layer":
        mean = jnp.mean(h, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
        new_state = state
    elif training:  # per-unit statistics [1, N]
        mean = jnp.mean(h, axis=0, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=0, keepdims=True)
        rows = h.shape[0]
        unbiased = var[0] * (rows / max(rows - 1, 1))
        new_state = {
            "mean": (1 - RUNNING_RATE) * state["mean"] + RUNNING_RATE * jax.lax.stop_gradient(mean[0]),
            "var": (1 - RUNNING_RATE) * state["var"] + RUNNING_RATE * jax.lax.stop_gradient(unbiased),
        }
    else:
        mean, var, new_state = state["mean"][None, :], state["var"][None, :], state
    normalised = (h - mean) * jax.lax.rsqrt(var + EPS)
    return params["gain"][None, :] * normalised + params["offset"][None, :], new_state


def add_to(params: dict, state: dict, kind: str, width: int, n_blocks: int) -> None:
    """Put a layer's parameters and state under ``"norm"`` in the ``"embed"`` part and ``n_blocks``
    stacked ones in the ``"blocks"`` part of ``params`` and ``state`` (in place; nothing for "none")."""
    if kind == "none":
        return
    for part, depth in (("embed", None), ("blocks", n_blocks)):
        params[part]["norm"], state[part]["norm"] = init(kind, width, depth)


def apply_in(kind: str, params: dict, state: dict, h: jax.Array, training: bool) -> tuple[jax.Array, dict]:
    """``N(h)`` for ``h`` [..., N] with the layer kept under ``"norm"`` in one part's ``params`` and
    ``state`` (``add_to``), rows = every leading index (a CNN's examples and positions), and that part's
    new state; the identity (state unchanged) for "none"."""
    if kind == "none":
        return h, state
    out, norm_state = apply(kind, params["norm"], state.get("norm", {}), h.reshape(-1, h.shape[-1]), training)
    return out.reshape(h.shape), (state | {"norm": norm_state}) if norm_state else state
