"""A gated (highway) network, written against sweep's network contract: the worked example of
docs/custom_architectures.md. Run it from the repository root with ``sweep run examples/gated.toml``.

Each block mixes a new layer and the state it got, unit by unit, through a learned gate::

    h = s W + b                      the block's pre-activation (its tap: q^l and c^l are measured on it)
    g = sigmoid(a (s W_g + b_g))     the gate, b_g = -3 at initialisation (g ~ 0.05: mostly carrying s)
    s' = g * phi(h) + (1 - g) * s    [B, N] -> [B, N]

The gate scale ``a`` is a ``[model]`` field this architecture adds, ``model.gate_scale`` (default 1: the
gate above; dynamic, so a sweep of it is one compiled program). It multiplies the gate's
pre-activation, so at initialisation g = sigmoid(-3 a) on average: a = 0.5 opens the gates (g ~ 0.18),
a = 2 closes them (g ~ 0.0025). It is fixed, not trained, and reaches the network as a traced scalar in
``init``'s ``dynamic``; ``init`` keeps it in the blocks' state, where ``block`` reads it.

``model.depth`` counts the blocks; the embed is ``s^1 = phi(x W^1 + b^1)`` and the readout
``s^L W + b``. Weights follow ``model.init`` at ``sigma_w2 / fan_in``, biases ``N(0, sigma_b2)``.
Gradient norms come per layer: embed, each block (W and W_g together), readout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sweep.nets import Architecture, NewField, Spec
from sweep.nets.initialisers import unit_weight

GATE_BIAS = -3.0


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be non-negative, got {value}"


GATE_SCALE = NewField(
    "gate_scale",
    float,
    default=1.0,
    static=False,
    check=_non_negative,
    doc="gate scale a: the gate is sigmoid(a (s W_g + b_g))",
)


def init(key: jax.Array, dynamic: dict, spec: Spec) -> tuple[dict, dict]:
    """Parameters from the variant's key and its sigma_w2, sigma_b2 (traced scalars); the state holds the
    gate scale (a traced scalar too, not trained) once per block."""
    d, n, c, depth = spec.input_dim, spec.width, spec.n_classes, spec.depth
    sigma_w, sigma_b = jnp.sqrt(dynamic["sigma_w2"]), jnp.sqrt(dynamic["sigma_b2"])
    k = jax.random.split(key, 6)

    def weight(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return sigma_w * unit_weight(jax.random.normal(key, shape), spec.init)

    params = {
        "embed": {"w": weight(k[0], (d, n)), "b": sigma_b * jax.random.normal(k[1], (n,))},
        "blocks": {
            "w": weight(k[2], (depth, n, n)),
            "b": sigma_b * jax.random.normal(k[3], (depth, n)),
            "w_gate": weight(k[4], (depth, n, n)),
            "b_gate": jnp.full((depth, n), GATE_BIAS),
        },
        "readout": {"w": weight(k[5], (n, c)), "b": jnp.zeros((c,))},
    }
    gate_scale = jnp.full((depth,), dynamic["gate_scale"], jnp.float32)
    return params, {"embed": {}, "blocks": {"gate_scale": gate_scale}, "readout": {}}


def embed(params: dict, state: dict, x: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    h = x @ params["w"] + params["b"][None, :]
    return spec.phi(h), state, h


def block(params: dict, state: dict, s: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    h = s @ params["w"] + params["b"][None, :]
    gate = jax.nn.sigmoid(state["gate_scale"] * (s @ params["w_gate"] + params["b_gate"][None, :]))
    return gate * spec.phi(h) + (1.0 - gate) * s, state, h


def readout(params: dict, state: dict, s: jax.Array, spec: Spec) -> tuple[jax.Array, dict]:
    return s @ params["w"] + params["b"][None, :], state


GATED = Architecture(
    init=init,
    embed=embed,
    block=block,
    readout=readout,
    n_blocks=lambda spec: spec.depth,
    new_fields=(GATE_SCALE,),
    kept_per_unit=lambda spec: 6.0,  # s, h, phi(h), the gate and its pre-activation per unit and row
)
