"""Convolution kernels from unit Gaussian draws: delta-orthogonal and Gaussian (Xiao et al. 2018).

A kernel has shape ``[..., *taps, c_in, c_out]``: any leading stacked axes (variants, layers), then
``ndim`` spatial tap axes (1-D: ``(k,)``, 2-D: ``(k, k)``; every size odd, so that a centre tap
exists), then the input and output channels. As in ``sweep.nets.initialisers``, an initialiser maps
unit Gaussians ``z`` of the kernel's shape to a *unit* kernel ``u``; an architecture multiplies it by
``sigma_w``:

- ``gaussian_conv``: ``u = z / sqrt(taps * c_in)``, i.i.d. entries of variance ``1 / (taps * c_in)``
  (``taps`` = number of spatial taps, ``k**ndim``): the fan-in convention of the other initialisers, the
  fan-in of one output unit being every tap of every input channel. ``sigma_w * u`` is
  ``W ~ N(0, sigma_w2 / (taps * c_in))``.
- ``delta_orthogonal``: every tap zero except the centre, which is a ``c_in x c_out`` matrix with
  orthonormal rows (``M M^T = I``; needs ``c_out >= c_in``), built from the centre tap of ``z`` by the
  engine's Gram-Schmidt (``sweep.nets.initialisers.orthonormal``; never LAPACK's QR). At initialisation
  such a network is the same orthogonal fully connected network applied at every position, whatever
  the padding (the centre tap never reads a padded value). Square layers (``c_in = c_out``) are
  exactly orthogonal, like ``initialisers.orthogonal``; a widening layer keeps orthonormal rows, so its
  entries have variance ``1 / c_out`` rather than the fan-in convention's ``1 / c_in`` (its output's
  mean square is ``c_in / c_out`` times the input's; multiply by ``sqrt(c_out / c_in)`` to get the
  engine's ``orthogonal`` centre instead).

- ``orthogonal_conv``: the kernel read as one ``(taps * c_in) x c_out`` matrix (every tap of every
  input channel against the output channels) made orthogonal as ``initialisers.orthogonal`` makes a
  dense one (orthonormal columns, or rows if wide, rescaled to entries of variance ``1 / (taps c_in)``):
  the orthogonal initialisation of PyTorch's ``orthogonal_`` on a conv weight, every tap in use.

All are elementwise in the leading axes and work under ``jax.vmap`` and ``jax.jit``.
``CONV_INITIALISERS`` keys them by the values of ``model.init`` (``"gaussian"``, ``"orthogonal"``,
``"delta_orthogonal"``; the last only for architectures with kernels).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from sweep.nets.initialisers import orthogonal, orthonormal


def _kernel_axes(shape: tuple[int, ...], ndim: int) -> tuple[tuple[int, ...], int, int]:
    """``(taps, c_in, c_out)`` of a kernel shape ``[..., *taps, c_in, c_out]`` with ``ndim`` tap axes
    (ValueError for too few axes or an even tap size)."""
    if ndim < 1 or len(shape) < ndim + 2:
        raise ValueError(f"a {ndim}-D kernel needs shape [..., *taps ({ndim}), c_in, c_out]; got {shape}")
    taps = tuple(shape[-ndim - 2 : -2])
    if any(t % 2 == 0 for t in taps):
        raise ValueError(f"kernel taps {taps} must all be odd (a centre tap); kernel shape {shape}")
    return taps, shape[-2], shape[-1]


def conv_kernel_shape(kernel_size: int, ndim: int, c_in: int, c_out: int) -> tuple[int, ...]:
    """``(k,) * ndim + (c_in, c_out)``: the shape of one kernel (for ``initialisers.unit_draws``)."""
    return (kernel_size,) * ndim + (c_in, c_out)


def gaussian_conv(z: jax.Array, ndim: int) -> jax.Array:
    """``z / sqrt(taps * c_in)``: i.i.d. entries of variance ``1 / (taps * c_in)``. Shape of ``z``."""
    taps, c_in, _ = _kernel_axes(z.shape, ndim)
    return z / math.sqrt(math.prod(taps) * c_in)


def delta_orthogonal(z: jax.Array, ndim: int) -> jax.Array:
    """Delta-orthogonal unit kernel of the shape of ``z [..., *taps, c_in, c_out]``: zero at every tap
    but the centre, whose ``c_in x c_out`` matrix has orthonormal rows (Haar-random, from the centre tap
    of ``z``; the other taps of ``z`` are not used). ValueError if ``c_out < c_in``."""
    taps, c_in, c_out = _kernel_axes(z.shape, ndim)
    if c_out < c_in:
        raise ValueError(
            f"delta-orthogonal kernel needs c_out >= c_in for orthonormal rows; got kernel shape "
            f"{tuple(z.shape[-ndim - 2 :])} (taps {taps}, c_in {c_in}, c_out {c_out})"
        )
    centre = (Ellipsis, *(t // 2 for t in taps), slice(None), slice(None))
    return jnp.zeros_like(z).at[centre].set(orthonormal(z[centre]))


def orthogonal_conv(z: jax.Array, ndim: int) -> jax.Array:
    """The kernel as a ``(taps * c_in) x c_out`` matrix, orthogonal by ``initialisers.orthogonal``
    (entries of variance ``1 / (taps * c_in)``). Shape of ``z``."""
    taps, c_in, c_out = _kernel_axes(z.shape, ndim)
    lead = z.shape[: z.ndim - ndim - 2]
    flat = z.reshape(*lead, math.prod(taps) * c_in, c_out)
    return orthogonal(flat).reshape(z.shape)


CONV_INITIALISERS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "gaussian": gaussian_conv,
    "orthogonal": orthogonal_conv,
    "delta_orthogonal": delta_orthogonal,
}
KERNEL_ONLY_INITIALISERS = ("delta_orthogonal",)  # model.init values only kernels can take


def conv_unit_kernel(z: jax.Array, init: str, ndim: int) -> jax.Array:
    """Unit kernel ``[..., *taps, c_in, c_out]`` from unit Gaussians ``z`` by ``init`` (KeyError naming
    the choices for an unknown one)."""
    if init not in CONV_INITIALISERS:
        raise KeyError(f"unknown conv init {init!r}; choose from {sorted(CONV_INITIALISERS)}")
    return CONV_INITIALISERS[init](z, ndim)
