"""The fully connected network (``model.arch = "mlp"``) as an entry of the network contract.

Row-vector convention, layers 1..L+1 (``model.depth = L`` hidden layers, then the readout)::

    h^1 = x W^1 + b^1                   embed   (tap h^1)
    h^l = phi(h^{l-1}) W^l + b^l        block   l = 2..L, stacked [L-1, N, N] (tap h^l)
    logits = phi(h^L) W^{L+1} + b^{L+1}  readout

The state the blocks carry is the pre-activation ``h`` [B, N]. Parameters: ``embed`` {w [d, N], b [N]},
``blocks`` {w [L-1, N, N], b [L-1, N]}, ``readout`` {w [N, C], b [C]}; no state (empty parts).

With ``model.norm = "layer"`` or ``"batch"`` (``sweep.nets.normalisation``) every pre-activation of
layers 1..L is normalised, ``h^l = N(phi(h^{l-1}) W^l + b^l)`` (``h^1 = N(x W^1 + b^1)``): the carried
state and the tap are the normalised pre-activation, the input of phi. Each of those parts then also
holds ``"norm"`` (params: gain and offset [N], stacked [L-1, N] in the blocks; batch norm's state:
running mean and variance of the same shapes). The readout is never normalised.

Standard parameterisation of the papers: ``W = sigma_w u`` with unit weights ``u`` from
``sweep.nets.initialisers`` (variance 1/fan_in), ``b ~ N(0, sigma_b2)``. The unit draws depend only on
the variant's key and the shapes, so variants that differ only in sigma_w2/sigma_b2 share them (common
random numbers). Mixed weight scales (``model.mix``, ``model.layer_scales``; see ``sweep.config``)
multiply the weights of layers 1..L: ``W = sigma_w s u`` (``weight_scales``).

Fast paths of this entry: the block is ``sweep.nets.mlp_layer.hidden_layer`` (a backward pass written
for XLA's CPU kernels); its Jacobian is ``J = dx^L/dx^1`` with ``x^l = phi(h^l)``, the Jacobian of the
papers (``D_L W_L^T ... D_2 W_2^T``, L-1 factors), by ``sweep.measure.spectrum``'s factor products: the same
spectral law as the block stack's ``dh^L/dh^1`` (the D's shift by one layer), and the numbers this
engine has always recorded.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep.config import parse_layer_scales
from sweep.measure.spectrum import exact_log10_singular_values, matrix_free_log10_singular_values
from sweep.nets import normalisation
from sweep.nets.activations import OUTPUT_DERIVATIVES
from sweep.nets.block_jacobian import exact_log10_sv, matrix_free_log10_sv
from sweep.nets.contract import Architecture, Spec
from sweep.nets.initialisers import unit_draws, unit_draws_at_depth, unit_weight
from sweep.nets.mlp_layer import hidden_layer

KEPT_FROM_OUTPUT = 1.25  # values kept per unit and row where phi' comes from phi (mlp_layer), measured
ACTIVATION_VALUES = 2.0  # otherwise: h and phi(h)


def spec(
    input_dim: int,
    width: int,
    depth: int,
    n_classes: int,
    init: str = "gaussian",
    activation: str = "tanh",
    mix: str = "none",
    layer_scales: str = "1",
    norm: str = "none",
) -> Spec:
    """An MLP's ``Spec`` (for tests and scripts; the engine builds it from the config)."""
    return Spec(
        "mlp",
        activation,
        input_dim,
        width,
        depth,
        n_classes,
        init,
        (("mix", mix), ("layer_scales", layer_scales), ("norm", norm)),
    )


class Mix(NamedTuple):
    """The dynamic values of a within-layer mixture: scales a and b, and the fraction f at scale a."""

    scale_a: jax.Array
    scale_b: jax.Array
    fraction: jax.Array


def _scale_mask(mix: str, fraction: jax.Array, fan_in: int, fan_out: int) -> jax.Array:
    """Which weights of a [fan_in, fan_out] layer take scale a: [1, fan_out] (units) or [fan_in, fan_out].

    units: the first round(f fan_out) units (their incoming weights: columns). entries: entry (i, j) iff
    (i + j) mod M < round(f M), M = min(fan_in, fan_out): a fixed, balanced pattern, every row and
    every column of the smaller side holds exactly round(f M) of them.
    """
    if mix == "units":
        return (jnp.arange(fan_out) < jnp.floor(fraction * fan_out + 0.5))[None, :]
    m = min(fan_in, fan_out)
    cyclic = (jnp.arange(fan_in)[:, None] + jnp.arange(fan_out)[None, :]) % m
    return cyclic < jnp.floor(fraction * m + 0.5)


def weight_scales(spec: Spec, mix: Mix | None) -> dict[str, jax.Array] | None:
    """The scale s of every weight of layers 1..L (embed [d, N] or [1, N], blocks [L-1, N, N] or
    [L-1, 1, N]): the layer pattern (layer l takes ``layer_scales[(l - 1) % len]``) times the mixture
    (``mix``: scale a where ``_scale_mask``, b elsewhere). The readout is never scaled. None: no scales
    at all (the unmixed network, computed without a multiplication).
    """
    kind = spec.option("mix")
    pattern = np.resize(np.asarray(parse_layer_scales(spec.option("layer_scales")), np.float32), spec.depth)
    if kind == "none" and np.all(pattern == 1):
        return None
    shapes = {"embed": (spec.input_dim, spec.width), "blocks": (spec.width, spec.width)}
    out = {}
    for name, (fan_in, fan_out) in shapes.items():
        layer = jnp.asarray(pattern[:1] if name == "embed" else pattern[1:], jnp.float32)[:, None, None]
        if kind != "none":
            within = jnp.where(_scale_mask(kind, mix.fraction, fan_in, fan_out), mix.scale_a, mix.scale_b)
            layer = layer * within[None]
        out[name] = layer[0] if name == "embed" else layer
    return out


def init(key: jax.Array, dynamic: dict[str, jax.Array], spec: Spec) -> tuple[dict, dict]:
    """Parameters (see the module docstring) and an empty state.

    All unit draws come from ONE ``jax.random.normal`` call on the variant's key (one random-number
    kernel to compile, whatever the depth), cut into the layers in a fixed order. Mixed scales
    (``weight_scales``) multiply the weights of layers 1..L and leave the draws as they are.
    """
    d, n, c, hidden = spec.input_dim, spec.width, spec.n_classes, spec.depth - 1
    shapes = {
        "input_w": (d, n),
        "readout_w": (n, c),
        "input_b": (n,),
        "readout_b": (c,),
        "hidden_w": (hidden, n, n),
        "hidden_b": (hidden, n),
    }
    if "depth" in dynamic:  # a depth bucket: this variant's own depth, at most spec.depth
        z = unit_draws_at_depth(key, shapes, ("hidden_w", "hidden_b"), dynamic["depth"] - 1)
    else:
        z = unit_draws(key, shapes)
    sigma_w, sigma_b = jnp.sqrt(dynamic["sigma_w2"]), jnp.sqrt(dynamic["sigma_b2"])
    params = {
        part: {"w": sigma_w * unit_weight(z[f"{name}_w"], spec.init), "b": sigma_b * z[f"{name}_b"]}
        for part, name in (("embed", "input"), ("blocks", "hidden"), ("readout", "readout"))
    }
    if spec.option("mix") != "none":
        mix = Mix(dynamic["mix_scale_a"], dynamic["mix_scale_b"], dynamic["mix_fraction"])
    else:
        mix = None
    scales = weight_scales(spec, mix)
    if scales is not None:
        for name, scale in scales.items():
            params[name]["w"] = params[name]["w"] * scale
    state = {"embed": {}, "blocks": {}, "readout": {}}
    normalisation.add_to(params, state, spec.option("norm"), n, hidden)
    return params, state


def _normalise(params: dict, state: dict, h: jax.Array, spec: Spec) -> tuple[jax.Array, dict]:
    """``N(h)`` and the layer's new state; the identity (and no state) without ``model.norm``."""
    return normalisation.apply_in(spec.option("norm"), params, state, h, spec.training)


def embed(params: dict, state: dict, x: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    """``h^1 = N(x W^1 + b^1)``: [B, d] -> [B, N] (its own tap)."""
    h, state = _normalise(params, state, x @ params["w"] + params["b"][None, :], spec)
    return h, state, h


def block(params: dict, state: dict, h: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    """``h^{l+1} = N(phi(h^l) W + b)`` by the hand-written layer: [B, N] -> [B, N] (its own tap)."""
    h_next, state = _normalise(params, state, hidden_layer(h, params["w"], params["b"], spec.phi), spec)
    return h_next, state, h_next


def plain_block(params: dict, state: dict, h: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    """The formula ``block`` computes, written plainly (differentiable in both modes, ``jax.jvp``
    included, which the hand-written layer's ``custom_vjp`` is not)."""
    h_next, state = _normalise(params, state, spec.phi(h) @ params["w"] + params["b"][None, :], spec)
    return h_next, state, h_next


def readout(params: dict, state: dict, h: jax.Array, spec: Spec) -> tuple[jax.Array, dict]:
    """``logits = phi(h^L) W + b``: [B, N] -> [B, C]."""
    return spec.phi(h) @ params["w"] + params["b"][None, :], state


def exact_jacobian(params: dict, state: dict, x: jax.Array, spec: Spec) -> jax.Array:
    """``log10`` singular values of ``dx^L/dx^1`` at one input x [d]: [N] (``sweep.measure.spectrum``). With
    layer norm: those of the block stack ``dh^L/dh^1`` (``sweep.nets.block_jacobian``, plain blocks)."""
    if spec.option("norm") != "none":
        return exact_log10_sv(PLAIN_MLP, params, state, x, spec)
    h1 = x @ params["embed"]["w"] + params["embed"]["b"]
    return exact_log10_singular_values(params["blocks"]["w"], params["blocks"]["b"], h1, spec.phi)


def matrix_free_jacobian(
    params: dict, state: dict, x: jax.Array, spec: Spec, k: int, n_iter: int, key: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Top and bottom ``log10`` singular values of ``dx^L/dx^1`` and its log10 mean square, by Lanczos
    (with layer norm: of the block stack, as in ``exact_jacobian``)."""
    if spec.option("norm") != "none":
        return matrix_free_log10_sv(PLAIN_MLP, params, state, x, spec, k, n_iter, key)
    h1 = x @ params["embed"]["w"] + params["embed"]["b"]
    hidden_w, hidden_b = params["blocks"]["w"], params["blocks"]["b"]
    return matrix_free_log10_singular_values(hidden_w, hidden_b, h1, spec.phi, k, n_iter, key)


def kept_per_unit(spec: Spec) -> float:
    """The hand-written layer keeps phi(h) alone where phi' is a function of it, else h and phi(h);
    normalisation keeps its input and output besides."""
    kept = KEPT_FROM_OUTPUT if spec.phi in OUTPUT_DERIVATIVES else ACTIVATION_VALUES
    return kept + (2.0 if spec.option("norm") != "none" else 0.0)


MLP = Architecture(
    init=init,
    embed=embed,
    block=block,
    readout=readout,
    n_blocks=lambda spec: spec.depth - 1,
    static_fields=("mix", "layer_scales", "norm"),
    dynamic_fields=("mix_scale_a", "mix_scale_b", "mix_fraction"),
    theory="mlp",
    exact_jacobian=exact_jacobian,
    matrix_free_jacobian=matrix_free_jacobian,
    kept_per_unit=kept_per_unit,
    batch_statistics=lambda spec: spec.option("norm") == "batch",
    depth_buckets=True,
)
PLAIN_MLP = MLP._replace(block=plain_block, exact_jacobian=None, matrix_free_jacobian=None)
"""The same network with plainly written blocks (what the generic Jacobian routes differentiate)."""
