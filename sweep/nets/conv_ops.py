"""One convolution layer for ONE network, in two formulations that compute the same thing.

``x [B, *spatial, c_in]`` (1-D ``[B, n, c_in]``, 2-D ``[B, n1, n2, c_in]``), ``w [*taps, c_in, c_out]``
with ``ndim = w.ndim - 2`` tap axes, every tap size ``k`` odd (``h = (k - 1) / 2``); per output position
``p`` (a cross-correlation, the centre tap aligned with position ``stride * p``)::

    out[b, p, o] = sum_{t, i} w[t, i, o] * x[b, stride * p + t - h, i]

``padding="circular"`` takes positions mod ``n``; ``"zero"`` reads 0 outside ``[0, n)``. The output has
``ceil(n / stride)`` positions per axis (``n`` at stride 1). Written for one variant: the engine's
``jax.vmap`` over variants (of ``x`` and ``w``) goes around it; both methods differentiate under
``jax.grad``, ``jax.jvp`` and ``jax.linearize``, at the platform's default matmul precision (as the
rest of training).

- ``method="lax"``: ``jax.lax.conv_general_dilated`` on ``x`` padded by ``h`` per side
  (``jnp.pad(mode="wrap")`` then VALID for circular, explicit zero padding pairs for zero). Under a
  vmap over per-variant kernels XLA batches it as a grouped convolution (``feature_group_count = V``).
- ``method="taps"`` (im2col): ``x`` padded by ``h`` per side once (wrap or zeros), one strided slice per
  tap (the shifted copy ``x[stride * p + t - h]``; for circular padding the same values as
  ``jnp.roll``), stacked to ``[B * P_out, taps * c_in]`` and contracted with ``w`` reshaped to
  ``[taps * c_in, c_out]`` by ONE matrix product. Under vmap it is a batched ``dot_general``.
- ``method="auto"``: ``AUTO_METHOD[jax.default_backend()]`` (``"lax"`` on a platform not listed).

Why ``auto`` is ``"taps"`` on CPU: one training step of V = 16 variants (4 conv layers c -> c, tanh,
B = 32, circular, k = 3) by ``python benchmarks/bench_conv.py`` (run a; run b adds ``--repeats 7``):
jax 0.10.2, XLA defaults, one JAX device on a 2-core CPU shared with other work (load 1-3), ms per step:

    case        vmap lax      vmap taps     loop lax      loop taps     shared lax (d)
    1d 40 c16   12.1 / 6.5    7.5 / 5.1     8.2 / 5.2     5.2 / 4.9     5.2 / 3.5
    1d 40 c32   20.1 / 31.9   22.8 / 34.7   15.6 / 14.1   16.3 / 13.6   10.9 / 18.3
    1d 40 c64   68.0 / 105    53.9 / 94.1   35.6 / 42.2   45.7 / 42.7   38.8 / 67.6
    2d 8x8 c16  61.6 / 66.7   51.5 / 49.2   24.8 / 19.1   39.9 / 18.2   33.6 / 33.7
    2d 8x8 c32  266 / 320     117 / 207     52.3 / 74.9   39.7 / 77.0   143 / 164
    2d 8x8 c64  766 / 881     281 / 485     200 / 260     140 / 286     505 / 530

Under ``jax.vmap`` (the engine's setting) taps beat the grouped convolution in 16 of 18 measurements
(these two runs and one with ``--variants 4 --repeats 7``): 0.37-0.94x its time; the exceptions are
1-D c = 32 at V = 16 (1.13x and 1.09x). Without vmap (a Python loop of one jitted variant, as the
engine's CPU passes of one variant run) the two are within this machine's noise (taps / lax
0.64-1.61x, median 1.0). At V = 16 the best loop beats the best vmap in every case (the engine's CPU
passes keep vmaps small for this reason), and in 2-D even (d), one plain convolution of V * B = 512
rows (44-57 GFLOP/s, against 73-207 for the best loop), is no ceiling. On GPU (and TPU) ``"lax"`` is NOT
measured: cuDNN's grouped convolutions are the maintained fast path there.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp

PADDINGS = ("circular", "zero")
METHODS = ("auto", "lax", "taps")

# CPU measured (module docstring); accelerators not measured. A platform not listed gets "lax".
AUTO_METHOD: dict[str, str] = {"cpu": "taps", "gpu": "lax", "cuda": "lax", "rocm": "lax", "tpu": "lax"}


def resolve_method(method: str) -> str:
    """``"lax"`` or ``"taps"``: ``method`` itself, or for ``"auto"`` the choice for the default backend."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        return AUTO_METHOD.get(jax.default_backend(), "lax")
    return method


def out_size(n: int, stride: int) -> int:
    """Output positions along an axis of ``n`` positions: ``ceil(n / stride)``."""
    return -(-n // stride)


def _check(x: jax.Array, w: jax.Array, stride: int, padding: str) -> tuple[int, ...]:
    ndim = w.ndim - 2
    if ndim < 1:
        raise ValueError(f"w must be [*taps, c_in, c_out] with at least one tap axis, got {w.shape}")
    if x.ndim != ndim + 2:
        raise ValueError(
            f"x must be [B, *spatial, c_in] with {ndim} spatial axes for w {w.shape}, got {x.shape}"
        )
    if x.shape[-1] != w.shape[-2]:
        raise ValueError(f"x has {x.shape[-1]} channels, w expects {w.shape[-2]}")
    taps = tuple(w.shape[:ndim])
    if any(k % 2 == 0 for k in taps):
        raise ValueError(f"every tap size must be odd (a centre tap), got {taps}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    return taps


def _pad(x: jax.Array, taps: tuple[int, ...], padding: str) -> jax.Array:
    """``x`` with ``h = (k - 1) / 2`` positions added on both sides of every spatial axis."""
    pairs = [(0, 0)] + [((k - 1) // 2, (k - 1) // 2) for k in taps] + [(0, 0)]
    return jnp.pad(x, pairs, mode="wrap" if padding == "circular" else "constant")


def _conv_lax(x: jax.Array, w: jax.Array, stride: int, padding: str, taps: tuple[int, ...]) -> jax.Array:
    ndim = len(taps)
    spatial = "HWDXYZ"[:ndim]
    dims = jax.lax.conv_dimension_numbers(
        x.shape, w.shape, ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    )
    if padding == "circular":
        x, pads = _pad(x, taps, padding), [(0, 0)] * ndim
    else:
        pads = [((k - 1) // 2, (k - 1) // 2) for k in taps]
    return jax.lax.conv_general_dilated(x, w, (stride,) * ndim, pads, dimension_numbers=dims)


def _conv_taps(x: jax.Array, w: jax.Array, stride: int, padding: str, taps: tuple[int, ...]) -> jax.Array:
    ndim = len(taps)
    sizes = [out_size(n, stride) for n in x.shape[1:-1]]
    xp = _pad(x, taps, padding)
    copies = []
    for offset in itertools.product(*(range(k) for k in taps)):  # row-major, as w.reshape below
        start = (0, *offset, 0)
        limit = (
            x.shape[0],
            *(t + stride * (p - 1) + 1 for t, p in zip(offset, sizes, strict=True)),
            x.shape[-1],
        )
        copies.append(jax.lax.slice(xp, start, limit, (1,) + (stride,) * ndim + (1,)))
    patches = jnp.stack(copies, axis=-2)  # [B, *P_out, taps, c_in]
    n_rows, n_cols = x.shape[0] * math.prod(sizes), math.prod(taps) * x.shape[-1]
    out = patches.reshape(n_rows, n_cols) @ w.reshape(n_cols, w.shape[-1])
    return out.reshape(x.shape[0], *sizes, w.shape[-1])


def conv(
    x: jax.Array, w: jax.Array, stride: int = 1, padding: str = "circular", method: str = "auto"
) -> jax.Array:
    """``out [B, *ceil(n / stride), c_out]``: the convolution of the module docstring, for one network.

    ``x [B, *spatial, c_in]``, ``w [*taps, c_in, c_out]`` (odd taps); ``stride`` 1 or 2 (any positive
    integer works); ``padding`` ``"circular"`` or ``"zero"``; ``method`` ``"lax"``, ``"taps"`` or
    ``"auto"``.
    """
    taps = _check(x, w, stride, padding)
    if resolve_method(method) == "lax":
        return _conv_lax(x, w, stride, padding, taps)
    return _conv_taps(x, w, stride, padding, taps)
