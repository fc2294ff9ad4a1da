"""Everything the engine computes from an architecture's functions alone, for ONE variant.

- ``forward``: embed, the blocks by ``lax.scan`` over the stacked depth axis, readout; the forward
  signal of every layer from its tap (q^l = mean square per unit, c^l = correlation of input pairs).
- ``weight_norms``: the Frobenius norm of every layer's weight-matrix gradients (leaves with >= 2 axes
  per block), layers 1 + n_blocks + 1.
- ``sizes``: shapes by ``jax.eval_shape`` (nothing is computed), for memory, CPU passes and chunk cost.

Layers are numbered 1..n_layers = embed, blocks, readout (the MLP: 1..L+1).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sweep.nets.contract import Architecture, Spec, new_dynamic_defaults, resolve

N_PAIRS = 8  # input pairs whose pre-activation correlation c^l is measured


def architecture(spec: Spec) -> Architecture:
    return resolve(spec.arch)


def n_layers(spec: Spec) -> int:
    """Length of the layer axis: the embed, every block, the readout."""
    return architecture(spec).n_blocks(spec) + 2


def signal(tap: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean square q = mean(tap**2) over [B, ...], and the correlation c = (t_a . t_b) / (|t_a| |t_b|) of
    the pairs of rows (0, 1), (2, 3), ... (each row flattened): [n_pairs]."""
    h = tap.reshape(tap.shape[0], -1)
    n_pairs = min(N_PAIRS, h.shape[0] // 2)
    a, b = h[0 : 2 * n_pairs : 2], h[1 : 2 * n_pairs : 2]
    c = jnp.sum(a * b, axis=-1) / jnp.sqrt(jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1))
    return jnp.mean(h**2), c


def forward(
    arch: Architecture, params: dict, state: dict, x: jax.Array, spec: Spec
) -> tuple[jax.Array, dict[str, jax.Array], dict]:
    """Logits [B, C], the forward signal ``{"q": [n_layers], "c": [n_layers, n_pairs]}`` (unused outputs
    cost nothing under jit) and the new state."""
    s, embed_state, tap = arch.embed(params["embed"], state["embed"], x, spec)
    first = signal(tap)

    def layer(s: Any, block: tuple[Any, Any]) -> tuple[Any, tuple[Any, tuple[jax.Array, jax.Array]]]:
        s_next, block_state, tap = arch.block(*block, s, spec)
        return s_next, (block_state, signal(tap))

    s, (blocks_state, hidden) = jax.lax.scan(layer, s, (params["blocks"], state["blocks"]))
    logits, readout_state = arch.readout(params["readout"], state["readout"], s, spec)
    last = signal(logits)
    q = jnp.concatenate([first[0][None], hidden[0], last[0][None]])
    c = jnp.concatenate([first[1][None], hidden[1], last[1][None]])
    new_state = {"embed": embed_state, "blocks": blocks_state, "readout": readout_state}
    return logits, {"q": q, "c": c}, new_state


def _weights(tree: Any, stacked: bool) -> list[jax.Array]:
    """The weight matrices of a part: leaves with at least two axes (three where stacked over blocks)."""
    return [leaf for leaf in jax.tree.leaves(tree) if leaf.ndim >= 2 + stacked]


def _norm(leaves: list[jax.Array], stacked: bool, n_blocks: int) -> jax.Array:
    """The Frobenius norm of ``leaves`` together: a scalar, or [n_blocks] per block where stacked."""
    if not leaves:
        return jnp.zeros((n_blocks,) if stacked else ())
    if len(leaves) == 1 and not stacked:
        return jnp.linalg.norm(leaves[0])
    squares = [jnp.sum(leaf**2, axis=tuple(range(int(stacked), leaf.ndim))) for leaf in leaves]
    return jnp.sqrt(functools.reduce(operator.add, squares))


def weight_norms(grads: dict, n_blocks: int) -> jax.Array:
    """Frobenius norm of every layer's weight-matrix gradients, layers embed, blocks, readout: [n_layers].

    A layer with several weight matrices (e.g. a two-layer residual branch) gets the norm of all of them
    together; a layer without any gets 0."""
    return jnp.concatenate(
        [
            _norm(_weights(grads["embed"], False), False, n_blocks)[None],
            _norm(_weights(grads["blocks"], True), True, n_blocks),
            _norm(_weights(grads["readout"], False), False, n_blocks)[None],
        ]
    )


class Sizes(NamedTuple):
    """Shapes of one network of ``spec``, counted in values (float32 numbers), from ``jax.eval_shape``."""

    params: int  # every parameter
    state: int  # every state value (running statistics)
    weights: int  # weight-matrix entries (multiply-adds per example of the forward pass)
    block_weights: int  # weight-matrix entries of ONE block
    row_state: int  # values of the block state s per input row: the Jacobian's size n
    n_blocks: int


@functools.cache
def sizes(spec: Spec) -> Sizes:
    """Counted from the shapes ``init`` and ``embed`` return, never computed (cached per spec)."""
    arch = architecture(spec)
    dynamic = {name: jnp.float32(0.5) for name in ("sigma_w2", "sigma_b2", *arch.dynamic_fields)}
    dynamic |= new_dynamic_defaults(arch)
    params, state = jax.eval_shape(lambda key: arch.init(key, dynamic, spec), jax.random.key(0))
    s = jax.eval_shape(
        lambda p, st: arch.embed(p["embed"], st["embed"], jnp.zeros((1, spec.input_dim)), spec)[0],
        params,
        state,
    )
    count = lambda leaves: sum(math.prod(leaf.shape) for leaf in leaves)  # noqa: E731
    n_blocks = arch.n_blocks(spec)
    blocks = count(_weights(params["blocks"], True))
    weights = count(_weights(params["embed"], False)) + blocks + count(_weights(params["readout"], False))
    one_block = sum(math.prod(leaf.shape[1:]) for leaf in _weights(params["blocks"], True))
    return Sizes(
        params=count(jax.tree.leaves(params)),
        state=count(jax.tree.leaves(state)),
        weights=weights,
        block_weights=one_block,
        row_state=count(jax.tree.leaves(s)),
        n_blocks=n_blocks,
    )
