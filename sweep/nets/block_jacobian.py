"""Singular values of the block stack's Jacobian ``J = ds^L / ds^1``, for any architecture.

Written for ONE variant at ONE input ``x`` [d]; the block state ``s`` of that input (batch of one row,
any shape) is flattened to a vector of ``n`` values, and each block to a map ``g_l: R^n -> R^n``. Only
``jax.linearize`` / ``jax.vjp`` of the blocks are used, never their weights, so every architecture gets
both routes from its ``block`` alone (an entry may bring a faster one: ``Architecture.exact_jacobian``).

- ``exact_log10_sv`` (n up to ~1,024): pushes the identity through the linearised blocks (``Jᵀ`` as n
  tangent rows, one ``jax.vmap`` of the block's linear map per block, in a ``lax.scan``), divides the
  product at every block by the power of two nearest its Frobenius norm (exact; the exponents are summed
  as integers), then the SVD of the normalised product: nothing over- or underflows at any depth.
- ``matrix_free_log10_sv`` (above): ``J v`` through ``jax.linearize`` and ``Jᵀ u`` through ``jax.vjp`` of
  the blocks at the stored block inputs, rescaled per block by probe growth, into the Golub–Kahan–Lanczos
  of ``sweep.measure.spectrum`` (same accuracy statements as there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from sweep.measure.spectrum import (
    _LOG10_2,
    N_PROBES,
    _exponent,
    _log10_nonnegative,
    lanczos_log10_singular_values,
    singular_values,
)
from sweep.nets.contract import Architecture, Spec


def _flat_blocks(
    arch: Architecture, params: dict, state: dict, x: jax.Array, spec: Spec
) -> tuple[jax.Array, Callable[[Any, jax.Array], jax.Array]]:
    """``(v^1 [n], g)`` with ``g(block, v) = v^{l+1}``: the state of input x flattened, and one block
    (``block = (params_l, state_l)``) as a map of flat vectors."""
    s1 = arch.embed(params["embed"], state["embed"], x[None], spec)[0]
    v1, unravel = ravel_pytree(s1)

    def g(block: Any, v: jax.Array) -> jax.Array:
        return ravel_pytree(arch.block(*block, unravel(v), spec)[0])[0]

    return v1, g


def exact_log10_sv(arch: Architecture, params: dict, state: dict, x: jax.Array, spec: Spec) -> jax.Array:
    """``log10`` singular values of ``J = ds^L/ds^1`` at one input x [d], descending: [n]."""
    v1, g = _flat_blocks(arch, params, state, x, spec)
    n = v1.shape[0]

    def layer(carry: tuple, block: Any) -> tuple[tuple, None]:
        v, product, exponent = carry  # product: [n tangents, n], row i = d v^l / d v^1 e_i
        v_next, linear = jax.linearize(lambda u: g(block, u), v)
        product = jax.vmap(linear)(product)
        e = _exponent(jnp.linalg.norm(product))
        return (v_next, jnp.ldexp(product, -e), exponent + e), None

    init = (v1, jnp.eye(n, dtype=v1.dtype), jnp.zeros((), jnp.int32))
    (_, product, exponent), _ = jax.lax.scan(layer, init, (params["blocks"], state["blocks"]))
    sv = singular_values(product)
    return _log10_nonnegative(sv) + exponent.astype(v1.dtype) * jnp.asarray(_LOG10_2, v1.dtype)


def matrix_free_log10_sv(
    arch: Architecture,
    params: dict,
    state: dict,
    x: jax.Array,
    spec: Spec,
    k: int,
    n_iter: int,
    key: jax.Array,
    *,
    n_probes: int = N_PROBES,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(top [k], bottom [k], log10 mean σ²)`` of ``J = ds^L/ds^1`` at one input, matrix-free."""
    v1, g = _flat_blocks(arch, params, state, x, spec)
    n, dtype = v1.shape[0], v1.dtype
    if not 1 <= k <= n_iter <= n:
        raise ValueError(f"need 1 <= k <= n_iter <= state size, got k={k}, n_iter={n_iter}, n={n}")
    blocks = (params["blocks"], state["blocks"])
    if arch.n_blocks(spec) == 0:  # J = I
        zeros = jnp.zeros((k,), dtype)
        return zeros, zeros, jnp.zeros((), dtype)
    z = jax.random.normal(key, (n_probes + 1, n), dtype)
    probes = jnp.where(z[:n_probes] >= 0, 1.0, -1.0).astype(dtype) / jnp.sqrt(jnp.asarray(n, dtype))
    target = jnp.sqrt(jnp.asarray(n_probes, dtype))

    def forward_layer(carry: tuple, block: Any) -> tuple[tuple, tuple]:
        """The block inputs v^l and the exponent e_l of the probes' growth at block l."""
        v, pushed = carry
        v_next, linear = jax.linearize(lambda u: g(block, u), v)
        pushed = jax.vmap(linear)(pushed)
        e = _exponent(jnp.linalg.norm(pushed) / target)
        return (v_next, jnp.ldexp(pushed, -e)), (v, e)

    (_, pushed), (inputs, exponents) = jax.lax.scan(forward_layer, (v1, probes), blocks)
    log10_c = jnp.sum(exponents).astype(dtype) * jnp.asarray(_LOG10_2, dtype)

    def apply_j(t: jax.Array) -> jax.Array:
        def layer(t: jax.Array, xs: tuple) -> tuple[jax.Array, None]:
            block, v, e = xs
            return jnp.ldexp(jax.jvp(lambda u: g(block, u), (v,), (t,))[1], -e), None

        return jax.lax.scan(layer, t, (blocks, inputs, exponents))[0]

    def apply_jt(t: jax.Array) -> jax.Array:
        def layer(t: jax.Array, xs: tuple) -> tuple[jax.Array, None]:
            block, v, e = xs
            return jnp.ldexp(jax.vjp(lambda u: g(block, u), v)[1](t)[0], -e), None

        return jax.lax.scan(layer, t, (blocks, inputs, exponents), reverse=True)[0]

    return lanczos_log10_singular_values(apply_j, apply_jt, probes, pushed, log10_c, z[n_probes], k, n_iter)
