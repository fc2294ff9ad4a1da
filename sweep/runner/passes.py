"""How many of a device's variants train at once: all of them on accelerators, a cache's worth on CPUs.

Within one compiled program a device trains its share of a chunk, ``V`` variants, in ``ceil(V / k)``
passes of ``k`` variants each: ``jax.vmap`` over the ``k`` variants of a pass, ``lax.map`` (a scan) over
the passes. The numbers are the same whatever ``k`` is: variants never meet.

- On an accelerator, ``k = V``: one vmap over every variant keeps the chip busy.
- On a CPU, a training step of a vmap over ``V`` variants walks through every variant's weights and
  activations of a layer before it moves to the next layer. Once those no longer fit the core's L2
  cache, every product and every elementwise operation streams them from farther away. ``k`` is chosen
  so that one layer's weights and activations of the ``k`` variants of a pass fill about
  ``CPU_PASS_BYTES`` (a third of a 512 KB L2 cache), and small nets still run enough variants at once
  to amortise each operation's fixed cost.

Measured on a 2-core CPU (depth-20 tanh MLPs, SGD, an interleaved in-process A/B of ``run_seconds``
against one vmap over all variants; width x batch: best ``k``, its time relative to one vmap):
32x32: k=16, 0.85; 64x64: k=2-4, 0.85; 128x32: k=2, 0.70; 128x128: k=1-2, 0.87; 32x128: k=4, 0.95.
The rule below allows at most k = 20, 5, 2, 1 and 8 there (64 variants of 32x32: 4 passes of 16).

Passes also lower the memory a chunk needs: a pass's training buffers are reused by the next pass,
only the recorded measurements are held for every variant (``sweep.runner.memory``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from sweep.nets.contract import Spec

CPU_PASS_BYTES = 160 * 2**10  # one layer's weights and activations of one pass, on a CPU


def one_layer_bytes(model: Spec, batch_size: int) -> int:
    """Bytes of one block's weight matrices and one minibatch of its state (float32), from the shapes
    (``sweep.nets.forward.sizes``): an MLP's ``4 (B N + N^2)``."""
    from sweep.nets.forward import sizes

    size = sizes(model)
    return 4 * (batch_size * size.row_state + size.block_weights)


def largest_pass(layer_bytes: int, platform: str) -> int | None:
    """The most variants one pass may hold, for nets whose one layer (``one_layer_bytes``) takes
    ``layer_bytes``, on a device of ``platform`` ("cpu", "gpu", "tpu"); None: no limit."""
    if platform != "cpu":
        return None
    return max(1, CPU_PASS_BYTES // layer_bytes)


def variants_per_pass(layer_bytes: int, n_variants: int, platform: str) -> int:
    """``k``: variants trained at once out of a device's ``n_variants`` (see ``largest_pass``), the
    passes balanced: the last one is at most ``passes - 1`` variants short."""
    largest = largest_pass(layer_bytes, platform)
    if largest is None or largest >= n_variants:
        return n_variants
    passes = -(-n_variants // largest)
    return -(-n_variants // passes)


def in_passes(fn: Callable[[Any], Any], xs: Any, per_pass: int) -> Any:
    """``jax.vmap(fn)(xs)`` computed ``per_pass`` variants at a time.

    ``xs`` is a pytree of [V, ...] arrays. The last pass is filled up by repeating the last variant (its
    results are dropped), so that every pass runs the same vmapped body: one copy of it in the program.
    Returns ``fn``'s outputs stacked over the V variants, [V, ...]. Passes of one variant are a plain
    ``lax.map`` (no vmap): the same numbers up to float rounding (1.5e-7 relative, measured on
    gradient norms), and the normalisation layers' reductions run 1.8x faster without the size-1 axis.
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    if per_pass >= n:
        return jax.vmap(fn)(xs)
    if per_pass == 1:  # a scan over the variants, unbatched: XLA's CPU kernels are slower on a leading
        return jax.lax.map(fn, xs)  # axis of size 1 (normalised nets at width 128: 1.8x; MLPs alike)
    passes = -(-n // per_pass)
    pad = passes * per_pass - n
    padded = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), xs) if pad else xs
    out = jax.lax.map(fn, padded, batch_size=per_pass)
    return jax.tree.map(lambda y: y[:n], out)
