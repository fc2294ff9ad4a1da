"""How a theory function becomes a compiled program: jitted twice, called on flat, bucketed arrays.

``_theory_program`` wraps a function of (activation, arrays...) as a ``_TheoryProgram``: one jit as usual
and one without LLVM optimisation, which compiles faster for the small inputs of a sweep's predictions.
``_flat_call`` validates the activation, broadcasts and flattens the arrays, pads small sizes to a power
of two (nearby sizes share one program), picks the program and restores the broadcast shape. Every public
function of the mean-field modules (``fixed_points``, ``maps``, ``critical_line``) goes through it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from sweep.theory.kernels import ActivationLike, gaussian_kernel
from sweep.theory.quadrature import _inputs

_QUICK_COMPILE = {"xla_backend_optimization_level": 0}


class _TheoryProgram:
    """A theory function jitted twice: as usual, and without LLVM optimisation for small inputs.

    Compiling a theory program takes seconds on a CPU; for the few hundred points a sweep's predictions
    need, an unoptimised program compiles ~1.5x faster and still runs in milliseconds. Large grids
    (plots, ``sweep theory``) and calls from inside another trace (which may not carry compiler options)
    get the optimised program, which runs ~3x faster.
    """

    def __init__(self, fn: Callable, static_argnames: tuple[str, ...]):
        self.optimised = jax.jit(fn, static_argnames=static_argnames)
        self.quick = jax.jit(fn, static_argnames=static_argnames, compiler_options=_QUICK_COMPILE)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.optimised(*args, **kwargs)


def _theory_program(*static_argnames: str) -> Callable[[Callable], _TheoryProgram]:
    return lambda fn: _TheoryProgram(fn, static_argnames)


_BUCKET_MAX = 4096  # inputs up to this size are padded to a power of two: fewer distinct programs


def _flat_call(
    fn: Callable[..., object], activation: ActivationLike, *args: object, **static: object
) -> object:
    """Validate ``activation``, cast and broadcast ``args``, flatten them (small sizes padded to a power of
    two so that nearby sizes share one compiled program), call ``fn`` and restore the broadcast shape on
    every output (outputs may have trailing axes)."""
    gaussian_kernel(activation)  # raises KeyError / TypeError before any tracing
    arrays = _inputs(*args)
    shape = arrays[0].shape
    n = math.prod(shape)
    size = n if n > _BUCKET_MAX else max(8, 1 << max(n - 1, 0).bit_length())
    flat = [a.reshape(-1) for a in arrays]
    if size > n:
        flat = [
            jnp.concatenate([a, jnp.broadcast_to(a[-1:] if n else jnp.ones((1,), a.dtype), (size - n,))])
            for a in flat
        ]
    traced = any(isinstance(a, jax.core.Tracer) for a in flat)  # inside jit/grad: a nested jit
    program = fn.quick if isinstance(fn, _TheoryProgram) and size <= _BUCKET_MAX and not traced else fn
    out = program(activation, *flat, **static)
    return jax.tree.map(lambda x: x[:n].reshape(shape + x.shape[1:]), out)
