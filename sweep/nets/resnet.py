"""Residual networks (``model.arch = "resnet"``) as an entry of the network contract.

Blocks ``x^{l+1} = x^l + a_l F(x^l)`` for ``l = 1..L`` (``model.depth = L`` counts blocks), row vectors::

    x^1 = x W^in + b^in                               embed (tap x^1)
    F(x) = W2 phi(W1 x + b1) + b2    branch = "full"  (tap h = x W1 + b1, the branch pre-activation)
    F(x) = phi(W x + b)              branch = "reduced"
    logits = phi(x^{L+1}) W^out + b^out               readout, as in the MLP

``a_l = c g_l``: ``c = 1`` (``branch_scaling = "none"``) or ``1/sqrt(L)`` (``"inv_sqrt_depth"``: Stable
ResNet, depth-muP); ``g_l = model.branch_scale`` (``branch_gain = "fixed"``, a vmapped value) or a
learned scalar per block initialised at ``branch_scale`` (``"learned"``; branch_scale = 0 is SkipInit /
ReZero: every block starts as the identity). The state the blocks carry is the residual stream x [B, N].

Parameters (standard parameterisation, ``sweep.nets.initialisers``): ``embed`` {w [d, N], b [N]};
``blocks`` {w1 [L, N, N], b1 [L, N], and for "full" w2 [L, N, N], b2 [L, N]; "gain" [L] if learned};
``readout`` {w [N, C], b [C]}. All unit draws come from one ``jax.random.normal`` call on the variant's
key, cut in a fixed order (common random numbers across sigma_w2, sigma_b2 and branch_scale).
Layers of the gradient norms: 1 embed, 2..L+1 the blocks (W1 and W2 together), L+2 the readout.

With ``model.norm = "layer"`` or ``"batch"`` (``sweep.nets.normalisation``) the branch normalises its
pre-activation, ``phi(N(x W1 + b1))``; the blocks then also hold ``"norm"`` (gain and offset [L, N];
batch norm's running statistics in the state), and the tap is the normalised pre-activation. The stream,
the embedding and the readout are never normalised.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sweep.nets import normalisation
from sweep.nets.contract import Architecture, Spec
from sweep.nets.initialisers import unit_draws, unit_draws_at_depth, unit_weight


def spec(
    input_dim: int,
    width: int,
    depth: int,
    n_classes: int,
    init: str = "gaussian",
    activation: str = "tanh",
    branch: str = "full",
    branch_scaling: str = "none",
    branch_gain: str = "fixed",
    norm: str = "none",
) -> Spec:
    """A residual network's ``Spec`` (for tests and scripts; the engine builds it from the config)."""
    options = (
        ("branch", branch),
        ("branch_scaling", branch_scaling),
        ("branch_gain", branch_gain),
        ("norm", norm),
    )
    return Spec("resnet", activation, input_dim, width, depth, n_classes, init, options)


def depth_factor(spec: Spec) -> float:
    """``c``: 1, or ``1/sqrt(L)`` with ``branch_scaling = "inv_sqrt_depth"``."""
    return 1.0 / math.sqrt(spec.depth) if spec.option("branch_scaling") == "inv_sqrt_depth" else 1.0


def depth_factor_state(dynamic: dict[str, jax.Array], spec: Spec) -> dict[str, jax.Array]:
    """``{"factor": c [L]}`` for the blocks' state with ``branch_scaling = "inv_sqrt_depth"`` (else
    empty): ``c`` at the variant's own depth, which inside a depth bucket (``dynamic["depth"]``, traced)
    is not the program's ``spec.depth``."""
    if spec.option("branch_scaling") != "inv_sqrt_depth":
        return {}
    if "depth" in dynamic:
        c = jax.lax.rsqrt(jnp.asarray(dynamic["depth"], jnp.float32))
    else:
        c = jnp.float32(depth_factor(spec))
    return {"factor": jnp.full((spec.depth,), c, jnp.float32)}


def init(key: jax.Array, dynamic: dict[str, jax.Array], spec: Spec) -> tuple[dict, dict]:
    """Parameters (see the module docstring) and the state: a fixed gain ``{"scale": [L]}`` in the
    blocks' part (not trained), nothing with a learned one; ``{"factor": [L]}`` besides (``c``, see
    ``depth_factor_state``) with ``inv_sqrt_depth``."""
    d, n, c, depth = spec.input_dim, spec.width, spec.n_classes, spec.depth
    full = spec.option("branch") == "full"
    shapes = {
        "in_w": (d, n),
        "out_w": (n, c),
        "in_b": (n,),
        "out_b": (c,),
        "w1": (depth, n, n),
        "b1": (depth, n),
        **({"w2": (depth, n, n), "b2": (depth, n)} if full else {}),
    }
    if "depth" in dynamic:  # a depth bucket: this variant's own depth, at most spec.depth
        z = unit_draws_at_depth(key, shapes, ("w1", "b1", "w2", "b2"), dynamic["depth"])
    else:
        z = unit_draws(key, shapes)
    sigma_w, sigma_b = jnp.sqrt(dynamic["sigma_w2"]), jnp.sqrt(dynamic["sigma_b2"])
    blocks = {"w1": sigma_w * unit_weight(z["w1"], spec.init), "b1": sigma_b * z["b1"]}
    if full:
        blocks |= {"w2": sigma_w * unit_weight(z["w2"], spec.init), "b2": sigma_b * z["b2"]}
    if spec.option("branch_gain") == "learned":
        blocks["gain"] = jnp.full((depth,), dynamic["branch_scale"], jnp.float32)
    params = {
        "embed": {"w": sigma_w * unit_weight(z["in_w"], spec.init), "b": sigma_b * z["in_b"]},
        "blocks": blocks,
        "readout": {"w": sigma_w * unit_weight(z["out_w"], spec.init), "b": sigma_b * z["out_b"]},
    }
    # a fixed gain is not trained: it rides in the state (a vmapped value, one compile for every alpha)
    fixed = {} if "gain" in blocks else {"scale": jnp.full((depth,), dynamic["branch_scale"], jnp.float32)}
    fixed |= depth_factor_state(dynamic, spec)
    if spec.option("norm") != "none":
        blocks["norm"], fixed["norm"] = normalisation.init(spec.option("norm"), n, depth)
    return params, {"embed": {}, "blocks": fixed, "readout": {}}


def embed(params: dict, state: dict, x: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    """``x^1 = x W^in + b^in``: [B, d] -> [B, N] (its own tap)."""
    h = x @ params["w"] + params["b"][None, :]
    return h, state, h


def block(params: dict, state: dict, x: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    """``x + a F(x)``: [B, N] -> [B, N]; the tap is the branch pre-activation ``N(x W1 + b1)``."""
    h = x @ params["w1"] + params["b1"][None, :]
    if spec.option("norm") != "none":
        h, norm_state = normalisation.apply(
            spec.option("norm"), params["norm"], state["norm"], h, spec.training
        )
        state = state | {"norm": norm_state}
    branch = spec.phi(h)
    if spec.option("branch") == "full":
        branch = branch @ params["w2"] + params["b2"][None, :]
    gain = params["gain"] if "gain" in params else state["scale"]
    factor = state["factor"] if "factor" in state else 1.0
    return x + (factor * gain) * branch, state, h


def readout(params: dict, state: dict, x: jax.Array, spec: Spec) -> tuple[jax.Array, dict]:
    """``logits = phi(x^{L+1}) W^out + b^out``: [B, N] -> [B, C]."""
    return spec.phi(x) @ params["w"] + params["b"][None, :], state


def kept_per_unit(spec: Spec) -> float:
    """Per unit of the stream and row: h and phi(h) of the branch, its output for "full", the stream;
    normalisation's input and output besides."""
    kept = 4.0 if spec.option("branch") == "full" else 3.0
    return kept + (2.0 if spec.option("norm") != "none" else 0.0)


RESNET = Architecture(
    init=init,
    embed=embed,
    block=block,
    readout=readout,
    n_blocks=lambda spec: spec.depth,
    static_fields=("branch", "branch_scaling", "branch_gain", "norm"),
    dynamic_fields=("branch_scale",),
    theory="resnet",
    kept_per_unit=kept_per_unit,
    batch_statistics=lambda spec: spec.option("norm") == "batch",
    depth_buckets=True,
)
