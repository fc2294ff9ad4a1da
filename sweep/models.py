"""Network architectures, written for ONE variant; ``sweep.train`` vmaps them over variants.

An architecture is a ``Architecture(init, apply, n_layers)`` entry in ``ARCHITECTURES``:

- ``init(key, sigma_w2, sigma_b2, spec) -> params``: the standard parameterisation of the papers,
  ``W ~ N(0, sigma_w2 / fan_in)`` (or ``sigma_w`` times a random orthogonal matrix), ``b ~ N(0, sigma_b2)``.
  The unit draws depend only on ``key`` (the variant's seed) and the shapes, so variants that differ
  only in sigma_w2/sigma_b2 share them (common random numbers). ``init(..., mix=Mix(a, b, f))`` scales
  them (``W = sigma_w * s * unit draw``) by mixed scales, see ``weight_scales``.
- ``apply(params, x, phi) -> (logits, signal)`` with ``x: [batch, input_dim]``,
  ``logits: [batch, n_classes]`` and ``signal = {"q": [n_layers], "c": [n_layers, n_pairs]}``: the mean
  squared pre-activation per layer and the correlation of pairs of inputs' pre-activations.
- ``weight_matrices(params) -> [n_layers]`` pytree paths, used for per-layer gradient norms.

Layers are numbered 1..L+1: hidden layers 1..L (``model.depth = L``), then the readout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep.layers import hidden_layer

Params = dict[str, dict[str, jax.Array]]


@dataclass(frozen=True)
class ModelSpec:
    """Static shapes of one network."""

    input_dim: int
    width: int
    depth: int  # number of hidden layers L
    n_classes: int
    init: str  # "gaussian" | "orthogonal"
    mix: str = "none"  # mixed scales within a layer: "none" | "units" | "entries" (see weight_scales)
    layer_scales: tuple[float, ...] = (1.0,)  # per-layer scale pattern, repeated over layers 1..L


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


def weight_scales(spec: ModelSpec, mix: Mix | None) -> dict[str, jax.Array] | None:
    """The scale s of every weight of layers 1..L (input [d, N] or [1, N], hidden [L-1, N, N] or
    [L-1, 1, N]): the layer pattern (layer l takes ``layer_scales[(l - 1) % len]``) times the mixture
    (``mix``: scale a where ``_scale_mask``, b elsewhere). The readout is never scaled. None: no scales
    at all (the unmixed network, computed without a multiplication).
    """
    pattern = np.resize(np.asarray(spec.layer_scales, np.float32), spec.depth)  # layer 1..L
    if spec.mix == "none" and np.all(pattern == 1):
        return None
    shapes = {"input": (spec.input_dim, spec.width), "hidden": (spec.width, spec.width)}
    out = {}
    for name, (fan_in, fan_out) in shapes.items():
        layer = jnp.asarray(pattern[:1] if name == "input" else pattern[1:], jnp.float32)[:, None, None]
        if spec.mix != "none":
            within = jnp.where(_scale_mask(spec.mix, mix.fraction, fan_in, fan_out), mix.scale_a, mix.scale_b)
            layer = layer * within[None]
        out[name] = layer[0] if name == "input" else layer
    return out


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


def _unit_weight(z: jax.Array, init: str) -> jax.Array:
    """From unit Gaussians z [fan_in, fan_out]: a matrix whose entries have variance 1/fan_in.

    Gaussian: z / sqrt(fan_in). Orthogonal: orthonormal rows or columns have entries of variance
    1/max(fan_in, fan_out), rescaled to 1/fan_in (square layers: exactly an orthogonal matrix).
    """
    fan_in, fan_out = z.shape[-2:]
    if init == "gaussian":
        return z / jnp.sqrt(fan_in)
    q = jnp.vectorize(_orthogonalise, signature="(m,n)->(m,n)")(z)
    return q * jnp.sqrt(max(fan_in, fan_out) / fan_in)


def mlp_init(
    key: jax.Array, sigma_w2: jax.Array, sigma_b2: jax.Array, spec: ModelSpec, mix: Mix | None = None
) -> Params:
    """Parameters of an MLP: ``input`` [d, N], ``hidden`` stacked [L-1, N, N], ``readout`` [N, C].

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
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = jax.random.normal(key, (sum(sizes),))
    z = {
        name: part.reshape(shape)
        for (name, shape), part in zip(shapes.items(), jnp.split(flat, np.cumsum(sizes)[:-1]), strict=True)
    }
    sigma_w, sigma_b = jnp.sqrt(sigma_w2), jnp.sqrt(sigma_b2)
    params = {
        "input": {"w": sigma_w * _unit_weight(z["input_w"], spec.init), "b": sigma_b * z["input_b"]},
        "hidden": {"w": sigma_w * _unit_weight(z["hidden_w"], spec.init), "b": sigma_b * z["hidden_b"]},
        "readout": {"w": sigma_w * _unit_weight(z["readout_w"], spec.init), "b": sigma_b * z["readout_b"]},
    }
    scales = weight_scales(spec, mix)
    if scales is not None:
        for name, scale in scales.items():
            params[name]["w"] = params[name]["w"] * scale
    return params


N_PAIRS = 8  # input pairs whose pre-activation correlation c^l is measured at initialisation


def _signal(h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean squared pre-activation q = mean(h**2) over [batch, N], and the correlation
    c = (h_a . h_b) / sqrt(|h_a|^2 |h_b|^2) of the pairs of rows (0, 1), (2, 3), ...: [n_pairs]."""
    n_pairs = min(N_PAIRS, h.shape[0] // 2)
    a, b = h[0 : 2 * n_pairs : 2], h[1 : 2 * n_pairs : 2]
    c = jnp.sum(a * b, axis=-1) / jnp.sqrt(jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1))
    return jnp.mean(h**2), c


def mlp_apply(
    params: Params, x: jax.Array, phi: Callable[[jax.Array], jax.Array]
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``h^1 = x W^1 + b^1``, ``h^l = phi(h^{l-1}) W^l + b^l`` (hidden layers by ``lax.scan``), logits.

    Returns logits [batch, C] and the forward signal per layer: ``q`` [L+1] (mean squared pre-activation)
    and ``c`` [L+1, n_pairs] (correlations of input pairs); unused outputs cost nothing under jit.
    """
    h = x @ params["input"]["w"] + params["input"]["b"][None, :]

    def layer(h: jax.Array, wb: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        h_next = hidden_layer(h, *wb, phi)
        return h_next, _signal(h_next)

    first = _signal(h)
    h, hidden = jax.lax.scan(layer, h, (params["hidden"]["w"], params["hidden"]["b"]))
    logits = phi(h) @ params["readout"]["w"] + params["readout"]["b"][None, :]
    last = _signal(logits)
    q = jnp.concatenate([first[0][None], hidden[0], last[0][None]])
    c = jnp.concatenate([first[1][None], hidden[1], last[1][None]])
    return logits, {"q": q, "c": c}


def mlp_weight_norms(grads: Params) -> jax.Array:
    """Frobenius norm of every weight matrix's gradient, layer 1..L+1: [L+1]."""
    return jnp.concatenate(
        [
            jnp.linalg.norm(grads["input"]["w"])[None],
            jnp.sqrt(jnp.sum(grads["hidden"]["w"] ** 2, axis=(1, 2))),
            jnp.linalg.norm(grads["readout"]["w"])[None],
        ]
    )


def mlp_jacobian_factors(params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """What ``sweep.spectrum`` needs for J = dx^L/dx^1: hidden weights [L-1, N, N], biases [L-1, N] and
    the first layer's pre-activations h^1 at inputs x [n, d]: [n, N]."""
    h1 = x @ params["input"]["w"] + params["input"]["b"][None, :]
    return params["hidden"]["w"], params["hidden"]["b"], h1


class Architecture(NamedTuple):
    init: Callable[..., Params]  # (key, sigma_w2, sigma_b2, spec, mix=None) -> params
    apply: Callable[[Params, jax.Array, Callable], tuple[jax.Array, dict[str, jax.Array]]]
    weight_norms: Callable[[Params], jax.Array]
    n_layers: Callable[[ModelSpec], int]  # number of weight matrices = length of the layer axis
    jacobian_factors: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(
        mlp_init, mlp_apply, mlp_weight_norms, lambda spec: spec.depth + 1, mlp_jacobian_factors
    ),
}
