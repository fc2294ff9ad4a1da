"""How many of a device's variants train at once: all of them on accelerators, a cache's worth on CPUs.

Within one compiled program a device trains its share of a chunk, ``V`` variants, in ``ceil(V / k)``
passes of ``k`` variants each: ``jax.vmap`` over the ``k`` variants of a pass, ``lax.map`` (a scan) over
the passes. The numbers are the same whatever ``k`` is: variants never meet.

- On an accelerator, ``k = V``: one vmap over every variant keeps the chip busy.
- On a CPU, a training step of a vmap over ``V`` variants walks through every variant's weights and
  activations of a layer before it moves to the next layer. Once those no longer fit close to the core,
  every product and every elementwise operation streams them from farther away. ``k`` is chosen so
  that one layer's weights and activations of the ``k`` variants of a pass fill about
  ``CPU_PASS_BYTES`` (one and a half times a 32 KB L1 data cache), and small nets still run several
  variants at once to amortise each operation's fixed cost.

Measured on a 2-core CPU (32 KB L1d, 1 MB L2 per core; depth-20 or -30 tanh MLPs, SGD, an interleaved
in-process A/B of ``run_seconds``, two rounds; width x batch, variants per device: ``k`` -> seconds):
32x32, 64: k=6 3.2-3.3, k=8 3.1-3.6, k=11 3.4-3.5, k=16 3.9-4.7, k=32 4.2-4.7, k=64 5.2;
64x64, 7 (the demo's groups): k=1 7.2-7.4, k=2 7.8-9.0, k=3 8.9-9.4, k=4 10.0-10.4, k=7 9.1-9.6;
128x32, 64: k=1 15.3-17.0, k=2 16.3-17.1; 32x128, 64: k=2 4.6-5.6, k=4 4.5-4.8, k=8 4.7-4.9.
The rule below gives k = 6, 1, 1 and 2 there (and 1 at 128x128). An earlier machine (512 KB L2)
measured 32x32: k=16 best and 64x64: k=2-4, both 0.85 of one vmap over all variants.

Passes also lower the memory a chunk needs: a pass's training buffers are reused by the next pass,
only the recorded measurements are held for every variant (``sweep.runner.memory``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from sweep.nets.contract import Spec

CPU_PASS_BYTES = 48 * 2**10  # one layer's weights and activations of one pass, on a CPU


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
