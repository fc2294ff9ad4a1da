"""Everything the engine computes from an architecture's functions alone, for ONE variant.

- ``forward``: embed, the blocks by ``lax.scan`` over the stacked depth axis, readout; the forward
  signal of every layer from its tap (q^l = mean square per unit, c^l = correlation of input pairs;
  for taps with positions, ``[B, *positions, channels]``, also the Fourier modes of the covariance
  across positions, ``spatial_modes``).
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
import numpy as np

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


MODE_ROWS = 4  # inputs whose covariance across positions is Fourier-transformed (spatial_modes)
MODE_POSITIONS_MAX = 256  # taps with more positions record no modes (the covariance is positions^2)


def spatial_modes(tap: jax.Array) -> jax.Array | None:
    """Power of each spatial Fourier mode of the covariance across positions, off its diagonal: [P].

    ``tap [B, *positions, C]`` (P = prod(positions), C channels; None for a tap without positions or with
    more than ``MODE_POSITIONS_MAX``). For each of the first ``MODE_ROWS`` inputs, ``Sigma(x, y) = mean_c
    h(x, c) h(y, c)``; along each diagonal ``e_d(x) = Sigma(x, x + d)`` (offsets mod the positions), its
    DFT over x, ``E_d(f) = P^-1 sum_x e_d(x) exp(-2 pi i f.x / n)``; the power of mode f is the mean of
    ``|E_d(f)|^2`` over the offsets d != 0 and the inputs. Modes in ``numpy.fft`` order, flattened C-order
    for 2-D. Mode f != 0 is zero for a translation-invariant covariance; a Gaussian-kernel CNN with
    circular padding multiplies it by ``(chi_c lambda(f))^2`` per layer (``sweep.theory.cnn``). Finite C
    leaves a floor of about ``q^2 (1 + c^2) / (C P)``."""
    if tap.ndim < 3 or math.prod(tap.shape[1:-1]) > MODE_POSITIONS_MAX:
        return None
    positions = tap.shape[1:-1]
    p = math.prod(positions)
    h = tap[:MODE_ROWS].reshape(-1, p, tap.shape[-1])
    sigma = jnp.einsum("bxc,byc->bxy", h, h) / tap.shape[-1]
    grid = np.stack(np.unravel_index(np.arange(p), positions), axis=-1)  # [P, ndim]
    shifted = (grid[None, :, :] + grid[:, None, :]) % np.asarray(positions)  # [d, x, ndim]: x + d
    y = np.ravel_multi_index(tuple(shifted.transpose(2, 0, 1)), positions)  # [d, x]
    diagonals = sigma[:, np.arange(p)[None, :], y]  # [b, d, x]
    axes = tuple(range(2, 2 + len(positions)))
    modes = jnp.fft.fftn(diagonals.reshape(*diagonals.shape[:2], *positions), axes=axes) / p
    power = jnp.abs(modes.reshape(*diagonals.shape[:2], p)) ** 2  # [b, d, f]
    return jnp.mean(power[:, 1:], axis=(0, 1))


def forward(
    arch: Architecture, params: dict, state: dict, x: jax.Array, spec: Spec
) -> tuple[jax.Array, dict[str, jax.Array], dict]:
    """Logits [B, C], the forward signal ``{"q": [n_layers], "c": [n_layers, n_pairs]}`` and, where the
    embed's tap has positions, ``"modes": [n_layers, P]`` (``spatial_modes``; NaN for the readout), and
    the new state. Unused outputs cost nothing under jit."""
    s, embed_state, tap = arch.embed(params["embed"], state["embed"], x, spec)
    first = signal(tap)
    first_modes = spatial_modes(tap)

    def layer(s: Any, block: tuple[Any, Any]) -> tuple[Any, tuple[Any, tuple[jax.Array, ...]]]:
        s_next, block_state, tap = arch.block(*block, s, spec)
        modes = spatial_modes(tap) if first_modes is not None else None
        return s_next, (block_state, (*signal(tap), *(() if modes is None else (modes,))))

    s, (blocks_state, hidden) = jax.lax.scan(layer, s, (params["blocks"], state["blocks"]))
    logits, readout_state = arch.readout(params["readout"], state["readout"], s, spec)
    last = signal(logits)
    q = jnp.concatenate([first[0][None], hidden[0], last[0][None]])
    c = jnp.concatenate([first[1][None], hidden[1], last[1][None]])
    out = {"q": q, "c": c}
    if first_modes is not None:
        no_modes = jnp.full_like(first_modes, jnp.nan)[None]  # the readout's logits have no positions
        out["modes"] = jnp.concatenate([first_modes[None], hidden[2], no_modes])
    new_state = {"embed": embed_state, "blocks": blocks_state, "readout": readout_state}
    return logits, out, new_state


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
    multiply_adds: int  # of one example's forward pass (``Architecture.multiply_adds``; else ``weights``)


@functools.cache
def sizes(spec: Spec) -> Sizes:
    """Counted from the shapes ``init`` and ``embed`` return, never computed (cached per spec)."""
    arch = architecture(spec)
    dynamic = {name: jnp.float32(0.5) for name in ("sigma_w2", "sigma_b2", *arch.dynamic_fields)}
    dynamic |= new_dynamic_defaults(arch)
    params, state = jax.eval_shape(lambda key: arch.init(key, dynamic, spec), jax.random.key(0))
    row = jnp.zeros((1, spec.input_dim), jnp.float32)
    s = jax.eval_shape(
        lambda p, st: arch.embed(p["embed"], st["embed"], row, spec)[0],
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
        multiply_adds=int(arch.multiply_adds(spec)) if arch.multiply_adds is not None else weights,
    )
