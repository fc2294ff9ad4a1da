"""Convolutional networks (``model.arch = "cnn"``) as an entry of the network contract (Xiao et al. 2018).

One input is ``x [*positions, c0]`` (a flat row reshaped by ``Spec.image_shape``: MNIST-1D ``(40, 1)``,
MNIST ``(28, 28, 1)``, CIFAR-10 ``(32, 32, 3)``); 1-D or 2-D convolutions follow from its rank. Channels
last, ``C = model.channels``, kernels ``[*taps, c_in, c_out]`` of ``k = model.kernel_size`` taps per
axis (odd), ``padding = model.padding`` (``"circular"``: positions mod n, as the theory assumes;
``"zero"``), ``m = model.downsample``, ``L = model.depth``::

    h^1 = conv_s(x, W^1) + b^1 ; then m - 1 times h = conv_2(phi(h), W) + b    embed: the stem (tap h^1)
    h^{l+1} = conv_1(phi(h^l), W^{l+1}) + b^{l+1}      l = 1..L                block (tap h^{l+1})
    logits = mean_positions(phi(h^{L+1})) W^out + b^out                         readout

``conv_s``: stride 2 if ``m >= 1`` (each stride-2 convolution halves the positions, rounding up), else
stride 1. The state the blocks carry is the pre-activation ``h [B, *positions, C]``: the body's Jacobian
``dh^{L+1}/dh^1`` has size ``positions * C`` (``sweep.nets.block_jacobian``'s generic routes: exact up to
1,024, matrix-free above). Layers of the gradient norms: 1 the stem (all its kernels together), 2..L+1
the body, L+2 the readout.

Initialisation (``model.init``; ``sweep.nets.conv_init``), ``W = sigma_w u``, ``b ~ N(0, sigma_b2)``:
``"gaussian"`` (entries of variance ``sigma_w2 / (taps c_in)``), ``"orthogonal"`` (the kernel as a
``(taps c_in) x c_out`` orthogonal matrix) and ``"delta_orthogonal"`` (only the centre tap, an orthogonal
matrix). A widening delta-orthogonal layer (the stem's first, ``c0 -> C``) has orthonormal rows times
``sqrt(c_out / c_in)``: then every output position's mean square equals its input's exactly, as the
fan-in convention and the mean field's ``q^1 = sigma_w2 q_in + sigma_b2`` have it (plain orthonormal rows
would divide it by ``C / c0``); square layers are exactly orthogonal. A layer that narrows (``c_out <
c_in``) cannot be delta-orthogonal: refused naming the layer. The readout is dense (``gaussian``, or
``orthogonal`` for the two orthogonal kernels). With delta-orthogonal kernels the network at
initialisation IS the orthogonal fully connected network applied at every position (stride-2 stem
layers keep every other position), so it follows the MLP's mean field exactly (``theory = "mlp"``:
q*, chi_1, xi_c); Gaussian kernels share the uniform Fourier mode's theory and decay every other mode
faster (``sweep.theory.cnn``).

With ``model.norm = "layer" | "batch"`` (``sweep.nets.normalisation``) every pre-activation of the stem's
output and the body is normalised per channel: layer norm over the channels of each position, batch
norm over the batch's rows and positions (the usual convolutional batch norm).

All unit draws come from one ``jax.random.normal`` call on the variant's key, cut in a fixed order
(common random numbers across sigma_w2 and sigma_b2).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sweep.nets import normalisation
from sweep.nets.contract import Architecture, NewField, Spec
from sweep.nets.conv_init import conv_kernel_shape, conv_unit_kernel
from sweep.nets.conv_ops import conv
from sweep.nets.initialisers import unit_draws, unit_draws_at_depth, unit_weight

PADDINGS = ("circular", "zero")


def _odd(value: int) -> str | None:
    return None if value >= 1 and value % 2 == 1 else f"must be an odd positive number of taps, got {value}"


def _positive(value: int) -> str | None:
    return None if value >= 1 else f"must be positive, got {value}"


def _non_negative(value: int) -> str | None:
    return None if value >= 0 else f"must be non-negative, got {value}"


def _padding(value: str) -> str | None:
    return None if value in PADDINGS else f"unknown value {value!r}; choose from {list(PADDINGS)}"


FIELDS = (
    NewField("channels", int, 16, True, _positive, "channels C of the repeated layers"),
    NewField("kernel_size", int, 3, True, _odd, "kernel taps k per spatial axis"),
    NewField("padding", str, "circular", True, _padding, "padding of the convolutions"),
    NewField("downsample", int, 0, True, _non_negative, "stride-2 convolutions in the stem"),
)


def spec(
    input_shape: tuple[int, ...],
    channels: int,
    depth: int,
    n_classes: int,
    init: str = "delta_orthogonal",
    activation: str = "tanh",
    kernel_size: int = 3,
    padding: str = "circular",
    downsample: int = 0,
    norm: str = "none",
) -> Spec:
    """A CNN's ``Spec`` (for tests and scripts; the engine builds it from the config)."""
    options = (
        ("norm", norm),
        ("channels", channels),
        ("kernel_size", kernel_size),
        ("padding", padding),
        ("downsample", downsample),
    )
    return Spec(
        "cnn", activation, math.prod(input_shape), channels, depth, n_classes, init, options, True,
        tuple(input_shape),
    )  # fmt: skip


def _geometry(spec: Spec) -> tuple[int, tuple[int, ...], int, int]:
    """``(ndim, positions of the body, c0, C)``."""
    *positions, c0 = spec.image_shape
    body = tuple(positions)
    for _ in range(spec.option("downsample")):
        body = tuple(-(-n // 2) for n in body)
    return len(positions), body, c0, spec.option("channels")


def _stem_channels(spec: Spec) -> list[tuple[int, int]]:
    """``(c_in, c_out)`` of each stem convolution: ``c0 -> C``, then ``C -> C``."""
    _, _, c0, c = _geometry(spec)
    return [(c0, c)] + [(c, c)] * (max(spec.option("downsample"), 1) - 1)


def _kernel(z: jax.Array, spec: Spec, ndim: int, layer: str) -> jax.Array:
    """Unit kernel(s) ``[..., *taps, c_in, c_out]`` by ``model.init`` (see the module docstring)."""
    c_in, c_out = z.shape[-2:]
    if spec.init == "delta_orthogonal" and c_out < c_in:
        raise ValueError(
            f"model.init = 'delta_orthogonal' needs c_out >= c_in in every layer; the {layer} maps "
            f"{c_in} -> {c_out} channels (raise model.channels to at least {c_in})"
        )
    u = conv_unit_kernel(z, spec.init, ndim)
    if spec.init == "delta_orthogonal" and c_out > c_in:
        u = u * math.sqrt(c_out / c_in)  # orthonormal rows -> the fan-in convention's mean square
    return u


def spec_problem(spec: Spec) -> str | None:
    """A delta-orthogonal stem that narrows (fewer channels than the data has): ``"model.channels:
    <problem>"``, or None."""
    _, _, c0, c = _geometry(spec)
    if spec.init == "delta_orthogonal" and c < c0:
        return (
            f"model.channels: {c} is fewer than the data's {c0} input channels, and the stem's first layer "
            f"({c0} -> {c}) cannot be delta-orthogonal (its centre needs orthonormal rows: c_out >= c_in)"
        )
    return None


def init(key: jax.Array, dynamic: dict[str, jax.Array], spec: Spec) -> tuple[dict, dict]:
    """Parameters: ``embed`` {w [*taps, c0, C], b [C]; "w_more" [m-1, *taps, C, C], "b_more" [m-1, C]
    for m >= 2 stride-2 layers}, ``blocks`` {w [L, *taps, C, C], b [L, C]}, ``readout`` {w [C, n_classes],
    b [n_classes]}; normalisation's ``"norm"`` where ``model.norm`` asks. State: batch norm's running
    statistics, else empty parts."""
    ndim, _, c0, c = _geometry(spec)
    k, depth, stem = spec.option("kernel_size"), spec.depth, _stem_channels(spec)
    shapes = {
        "embed_w": conv_kernel_shape(k, ndim, c0, c),
        "readout_w": (c, spec.n_classes),
        "embed_b": (c,),
        "readout_b": (spec.n_classes,),
        "blocks_w": (depth, *conv_kernel_shape(k, ndim, c, c)),
        "blocks_b": (depth, c),
    }
    if len(stem) > 1:
        shapes |= {"more_w": (len(stem) - 1, *conv_kernel_shape(k, ndim, c, c)), "more_b": (len(stem) - 1, c)}
    if "depth" in dynamic:  # a depth bucket: this variant's own depth, at most spec.depth
        z = unit_draws_at_depth(key, shapes, ("blocks_w", "blocks_b"), dynamic["depth"])
    else:
        z = unit_draws(key, shapes)
    sigma_w, sigma_b = jnp.sqrt(dynamic["sigma_w2"]), jnp.sqrt(dynamic["sigma_b2"])
    dense = "gaussian" if spec.init == "gaussian" else "orthogonal"
    params = {
        "embed": {"w": sigma_w * _kernel(z["embed_w"], spec, ndim, "stem"), "b": sigma_b * z["embed_b"]},
        "blocks": {"w": sigma_w * _kernel(z["blocks_w"], spec, ndim, "body"), "b": sigma_b * z["blocks_b"]},
        "readout": {"w": sigma_w * unit_weight(z["readout_w"], dense), "b": sigma_b * z["readout_b"]},
    }
    if len(stem) > 1:
        params["embed"]["w_more"] = sigma_w * _kernel(z["more_w"], spec, ndim, "stem")
        params["embed"]["b_more"] = sigma_b * z["more_b"]
    state = {"embed": {}, "blocks": {}, "readout": {}}
    normalisation.add_to(params, state, spec.option("norm"), c, depth)
    return params, state


def normalise(params: dict, state: dict, h: jax.Array, spec: Spec) -> tuple[jax.Array, dict]:
    """``N(h)`` per channel (rows and positions flattened into rows) and the layer's new state."""
    return normalisation.apply_in(spec.option("norm"), params, state, h, spec.training)


def add_bias(h: jax.Array, b: jax.Array) -> jax.Array:
    """``h [B, *positions, C] + b [C]`` (explicit broadcasting)."""
    return h + b.reshape((1,) * (h.ndim - 1) + b.shape)


def embed(params: dict, state: dict, x: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    """The stem: ``x [B, d]`` (flat rows) -> ``h^1 [B, *positions, C]`` (its own tap)."""
    padding, downsample = spec.option("padding"), spec.option("downsample")
    image = x.reshape(x.shape[0], *spec.image_shape)
    h = add_bias(conv(image, params["w"], 2 if downsample else 1, padding), params["b"])
    for i in range(params["w_more"].shape[0] if "w_more" in params else 0):  # positions shrink: no scan
        h = add_bias(conv(spec.phi(h), params["w_more"][i], 2, padding), params["b_more"][i])
    h, state = normalise(params, state, h, spec)
    return h, state, h


def block(params: dict, state: dict, h: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    """``h^{l+1} = N(conv_1(phi(h^l), W) + b)``: [B, *positions, C] -> the same (its own tap)."""
    h_next = add_bias(conv(spec.phi(h), params["w"], 1, spec.option("padding")), params["b"])
    h_next, state = normalise(params, state, h_next, spec)
    return h_next, state, h_next


def readout(params: dict, state: dict, h: jax.Array, spec: Spec) -> tuple[jax.Array, dict]:
    """Global average pooling, then dense: [B, *positions, C] -> [B, n_classes]."""
    pooled = jnp.mean(spec.phi(h), axis=tuple(range(1, h.ndim - 1)))
    return pooled @ params["w"] + params["b"][None, :], state


def multiply_adds(spec: Spec) -> int:
    """One example's forward pass: every convolution's ``positions_out * taps * c_in * c_out``, and the
    readout's ``C * n_classes``."""
    ndim, body, _, c = _geometry(spec)
    taps = spec.option("kernel_size") ** ndim
    positions = tuple(spec.image_shape[:-1])
    total = 0
    for i, (c_in, c_out) in enumerate(_stem_channels(spec)):
        if spec.option("downsample") > i:
            positions = tuple(-(-n // 2) for n in positions)
        total += math.prod(positions) * taps * c_in * c_out
    return total + spec.depth * math.prod(body) * taps * c * c + c * spec.n_classes


def kept_per_unit(spec: Spec) -> float:
    """Per unit of the state and row: h and phi(h), the input's shifted copies where the convolution is
    written as one matrix product (``sweep.nets.conv_ops``); normalisation's input and output besides."""
    ndim = len(spec.image_shape) - 1
    return 2.0 + spec.option("kernel_size") ** ndim + (2.0 if spec.option("norm") != "none" else 0.0)


CNN = Architecture(
    init=init,
    embed=embed,
    block=block,
    readout=readout,
    n_blocks=lambda spec: spec.depth,
    static_fields=("norm",),
    new_fields=FIELDS,
    inits=("gaussian", "orthogonal", "delta_orthogonal"),
    theory="mlp",
    kept_per_unit=kept_per_unit,
    batch_statistics=lambda spec: spec.option("norm") == "batch",
    multiply_adds=multiply_adds,
    spec_problem=spec_problem,
    depth_buckets=True,
)
