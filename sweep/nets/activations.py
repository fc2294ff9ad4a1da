"""The activation registry: one name -> one elementwise function of ``jax.numpy``.

Every activation is a scalar-to-scalar function applied elementwise; its derivatives are taken with
``jax.grad`` where needed (theory, tests), so only the function itself is registered. Adding an
activation is one entry in ``ACTIVATIONS``. Besides the functions this module holds the facts about them
that code relies on: ``OUTPUT_DERIVATIVES`` (φ' from φ's output, for the hand-written backward
pass) and ``STEP_DERIVATIVE`` (φ' ∈ {0, 1}). Their Gaussian averages (closed-form kernels) are in
``sweep.theory.kernels``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]


def _hard_tanh(x: jax.Array) -> jax.Array:
    return jnp.clip(x, -1.0, 1.0)


def _linear(x: jax.Array) -> jax.Array:
    return x


def _gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "erf": jax.scipy.special.erf,
    "sigmoid": jax.nn.sigmoid,
    "hard_tanh": _hard_tanh,
    "linear": _linear,
    "selu": jax.nn.selu,
    "gelu": _gelu,
    "swish": jax.nn.swish,
}


# The derivative phi'(h) as a function of the output a = phi(h), where there is one: the backward pass
# (``sweep.nets.mlp_layer``) then needs only the activations, not the pre-activations too. Keyed by function.
OUTPUT_DERIVATIVES: dict[Activation, Callable[[jax.Array], jax.Array]] = {
    jnp.tanh: lambda a: 1.0 - a * a,
    jax.nn.sigmoid: lambda a: a * (1.0 - a),
    jax.nn.relu: lambda a: (a > 0).astype(a.dtype),  # relu'(0) = 0, as jax.grad has it
    _linear: jnp.ones_like,
}


# Activations whose derivative takes only the values 0 and 1 (almost everywhere): D² = φ'(h)² is then a
# two-point law, {0: 1 - p, 1: p} with p = E[φ'(h)²] (``sweep.theory.spectral_moments``), and the spectrum
# of J Jᵀ solves a polynomial (``sweep.theory.free_probability``).
STEP_DERIVATIVE: frozenset[str] = frozenset({"relu", "hard_tanh", "linear"})


def get_activation(name: str) -> Activation:
    """Return the elementwise activation registered under ``name`` (KeyError lists the choices)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise KeyError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None
