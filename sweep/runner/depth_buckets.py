"""Running a variant inside a depth bucket's program (``sweep.config.grid``: variants of several depths
share the program of the deepest).

The program has A = ``n_blocks(spec)`` blocks; a variant of depth L uses the first a = ``n_blocks(L)``
of them (a traced int: one program serves every depth of the bucket). Its parameters are drawn by the
architecture exactly as its own program would draw them (``Architecture.depth_buckets``), so:

- ``mask``: the blocks ``l >= a`` get zero parameters and are run as the identity
  (``s^{l+1} = where(l < a, block(s^l), s^l)``, the block's state kept likewise). Zero parameters keep
  every value of a masked block finite and their gradients are zero, so no optimizer moves them;
- ``own_layers``: the outputs with a layer axis (embed, A blocks, readout) are cut back to the
  variant's own a + 2 layers (embed, its blocks, the readout at position a + 1), NaN beyond, exactly
  the layout its own program gives.

The numbers equal those of the variant's own program up to float rounding (``tests/test_depth_buckets.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from sweep.nets.contract import Architecture, Spec

ACTIVE = "__active__"  # the per-block flag the blocks' state carries inside a bucket
LAYER_AXES = {"grad_norm": -1, "q_layer": 0, "c_layer": 0, "mode_power": 0}  # outputs with a layer axis


def active_blocks(arch: Architecture, spec: Spec, depth: jax.Array) -> jax.Array:
    """``n_blocks`` at the variant's own (traced) depth: the blocks it uses."""
    return jnp.asarray(arch.n_blocks(dataclasses.replace(spec, depth=depth)), jnp.int32)


def mask(arch: Architecture, params: dict, state: dict, active: jax.Array) -> tuple[Architecture, dict, dict]:
    """The architecture with its block run as the identity past ``active``, the parameters with those
    blocks zeroed, and the state carrying the per-block flag (``ACTIVE``, bool [A])."""
    n = jax.tree.leaves(params["blocks"])[0].shape[0] if jax.tree.leaves(params["blocks"]) else 0
    on = jnp.arange(n) < active

    def zero_past(leaf: jax.Array) -> jax.Array:
        return jnp.where(on.reshape((-1,) + (1,) * (leaf.ndim - 1)), leaf, jnp.zeros_like(leaf))

    params = params | {"blocks": jax.tree.map(zero_past, params["blocks"])}
    state = state | {"blocks": state["blocks"] | {ACTIVE: on}}

    def block(params_l: dict, state_l: dict, s: Any, spec: Spec) -> tuple[Any, dict, jax.Array]:
        flag = state_l[ACTIVE]
        inner = {k: v for k, v in state_l.items() if k != ACTIVE}
        s_next, inner_next, tap = arch.block(params_l, inner, s, spec)
        keep = lambda new, old: jnp.where(flag, new, old)  # noqa: E731
        return jax.tree.map(keep, s_next, s), jax.tree.map(keep, inner_next, inner) | {ACTIVE: flag}, tap

    return arch._replace(block=block), params, state


def unmask_state(state: dict) -> dict:
    """The state without the bucket's flag."""
    return state | {"blocks": {k: v for k, v in state["blocks"].items() if k != ACTIVE}}


def own_layers(out: dict[str, jax.Array], active: jax.Array) -> dict[str, jax.Array]:
    """Outputs with a layer axis (``LAYER_AXES``) cut back to the variant's own layers: positions
    ``0..active`` as they are, the readout (the program's last layer) at ``active + 1``, NaN beyond."""
    cut = dict(out)
    for name, axis in LAYER_AXES.items():
        if name not in out:
            continue
        x = out[name]
        n = x.shape[axis]
        j = jnp.arange(n)
        source = jnp.where(j <= active, j, n - 1)
        taken = jnp.take(x, source, axis=axis)
        shape = [1] * x.ndim
        shape[axis] = n
        cut[name] = jnp.where((j <= active + 1).reshape(shape), taken, jnp.nan)
    return cut
