"""Weight initialisers: unit Gaussian draws -> matrices whose entries have variance 1/fan_in.

An initialiser maps unit Gaussians ``z [..., fan_in, fan_out]`` (any leading stacked axes) to unit
weights ``u`` with ``E u_ij^2 = 1 / fan_in``; an architecture multiplies them by ``sigma_w`` (standard
parameterisation, ``W ~ N(0, sigma_w2 / fan_in)`` or ``sigma_w`` times a random orthogonal matrix).
Adding one is one entry in ``INITIALISERS``; ``model.init`` accepts exactly these names.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _gram_schmidt(z: jax.Array) -> jax.Array:
    """Orthonormalise the columns of a tall ``z`` [m, n] (m >= n) by classical Gram-Schmidt with one
    reorthogonalisation pass (CGS2: orthogonal to float round-off), one column per ``lax.scan`` step.

    For Gaussian z this is the Q of its QR factorisation with a positive diagonal R: a Haar-random
    matrix. Written with plain matrix products rather than LAPACK's QR, whose custom call hung inside
    large vmapped programs on XLA's CPU backend.
    """
    m, n = z.shape

    def column(q: jax.Array, j: jax.Array) -> tuple[jax.Array, None]:
        v = jax.lax.dynamic_index_in_dim(z, j, axis=1, keepdims=False)
        for _ in range(2):  # the unset columns of q are zero, so they project out nothing
            v = v - q @ (q.T @ v)
        return jax.lax.dynamic_update_index_in_dim(q, v / jnp.linalg.norm(v), j, axis=1), None

    return jax.lax.scan(column, jnp.zeros((m, n), z.dtype), jnp.arange(n))[0]


def _orthogonalise(z: jax.Array) -> jax.Array:
    """A Haar-random matrix with orthonormal columns (or rows, if wide) from Gaussian ``z`` [m, n]."""
    wide = z.shape[0] < z.shape[1]
    q = _gram_schmidt(z.T if wide else z)
    return q.T if wide else q


def gaussian(z: jax.Array) -> jax.Array:
    """``z / sqrt(fan_in)``: i.i.d. entries of variance 1/fan_in."""
    return z / jnp.sqrt(z.shape[-2])


def orthonormal(z: jax.Array) -> jax.Array:
    """Haar-random matrices with orthonormal columns (tall) or rows (wide, fan_in < fan_out) from unit
    Gaussians ``z [..., fan_in, fan_out]`` (any leading stacked axes), by the engine's Gram-Schmidt; no
    rescaling (entries of variance 1/max(fan_in, fan_out))."""
    return jnp.vectorize(_orthogonalise, signature="(m,n)->(m,n)")(z)


def orthogonal(z: jax.Array) -> jax.Array:
    """Orthonormal rows or columns have entries of variance 1/max(fan_in, fan_out), rescaled to
    1/fan_in (square layers: exactly an orthogonal matrix)."""
    fan_in, fan_out = z.shape[-2:]
    return orthonormal(z) * jnp.sqrt(max(fan_in, fan_out) / fan_in)


INITIALISERS: dict[str, Callable[[jax.Array], jax.Array]] = {"gaussian": gaussian, "orthogonal": orthogonal}


def unit_draws(key: jax.Array, shapes: dict[str, tuple[int, ...]]) -> dict[str, jax.Array]:
    """Unit Gaussians of every named shape from ONE ``jax.random.normal`` call on ``key`` (one
    random-number kernel to compile, whatever the depth), cut in the order of ``shapes``."""
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = jax.random.normal(key, (sum(sizes),))
    parts = jnp.split(flat, np.cumsum(sizes)[:-1])
    return {name: part.reshape(shape) for (name, shape), part in zip(shapes.items(), parts, strict=True)}


def unit_draws_at_depth(
    key: jax.Array, shapes: dict[str, tuple[int, ...]], stacked: tuple[str, ...], active: jax.Array
) -> dict[str, jax.Array]:
    """``unit_draws`` of a network whose ``stacked`` entries (a leading depth axis of the shapes'
    length A) hold only ``active`` (a traced int, <= A) real blocks: the first ``active`` blocks of each
    stacked entry, and every other entry, get exactly the numbers ``unit_draws`` gives the network of
    ``active`` blocks (shapes cut to ``active``); the blocks past ``active`` get other unit Gaussians
    (a depth bucket masks them, ``sweep.runner.train``). Relies on ``jax.random.normal``'s threefry
    draws being a prefix of a longer draw (``jax_threefry_partitionable``, JAX's default)."""
    sizes = [math.prod(shape) for shape in shapes.values()]
    per_block = {name: math.prod(shape[1:]) for name, shape in shapes.items() if name in stacked}
    flat = jax.random.normal(key, (2 * sum(sizes),))  # room for any offset below
    out, offset = {}, jnp.zeros((), jnp.int32)
    for (name, shape), size in zip(shapes.items(), sizes, strict=True):
        out[name] = jax.lax.dynamic_slice(flat, (offset,), (size,)).reshape(shape)
        offset = offset + (per_block[name] * active if name in stacked else size)
    return out


def unit_weight(z: jax.Array, init: str) -> jax.Array:
    """Unit weights [..., fan_in, fan_out] from unit Gaussians ``z`` by the initialiser ``init``
    (KeyError naming the choices for an unknown one: never another initialiser in its place)."""
    if init not in INITIALISERS:
        raise KeyError(f"unknown init {init!r}; choose from {sorted(INITIALISERS)}")
    return INITIALISERS[init](z)
