"""Residual convolutional networks (``model.arch = "residual_cnn"``): the CNN of ``sweep.nets.cnn`` with
a skip connection around every body layer.

The stem, the readout, the kernels and their initialisation are the CNN's (``model.channels``,
``kernel_size``, ``padding``, ``downsample``, ``init`` including ``"delta_orthogonal"``). The body carries
the residual stream ``x [B, *positions, C]``::

    x^{l+1} = x^l + a N(conv_1(phi(x^l), W^{l+1}) + b^{l+1})        l = 1..L   (tap: the branch N(...))

``a = model.branch_scale`` (vmapped: one program serves every value; it rides in the blocks' state as
``"scale"`` [L], not trained), times ``1/sqrt(L)`` (the state's ``"factor"``) with
``model.branch_scaling = "inv_sqrt_depth"`` (Stable ResNet, as in ``sweep.nets.resnet``). ``N`` is
``model.norm`` (per channel, as in the CNN; the identity by default). ``branch_scale = 0`` makes the
body the identity at initialisation. No mean-field predictions are attached (``theory = None``): the
CNN's fully connected theory does not describe the residual stream.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sweep.nets import cnn
from sweep.nets.contract import Spec
from sweep.nets.conv_ops import conv
from sweep.nets.resnet import depth_factor_state


def init(key: jax.Array, dynamic: dict[str, jax.Array], spec: Spec) -> tuple[dict, dict]:
    """The CNN's parameters; the blocks' state adds the fixed branch gain ``{"scale": [L]}``."""
    params, state = cnn.init(key, dynamic, spec)
    scale = jnp.full((spec.depth,), dynamic["branch_scale"], jnp.float32)
    state["blocks"] = state["blocks"] | {"scale": scale} | depth_factor_state(dynamic, spec)
    return params, state


def block(params: dict, state: dict, x: jax.Array, spec: Spec) -> tuple[jax.Array, dict, jax.Array]:
    """``x + a N(conv(phi(x)) + b)``: [B, *positions, C] -> the same; the tap is the branch."""
    branch = cnn.add_bias(conv(spec.phi(x), params["w"], 1, spec.option("padding")), params["b"])
    fixed = {k: v for k, v in state.items() if k in ("scale", "factor")}
    norm_state = {k: v for k, v in state.items() if k not in fixed}
    branch, norm_state = cnn.normalise(params, norm_state, branch, spec)
    scale = state["scale"] * (state["factor"] if "factor" in state else 1.0)
    return x + scale * branch, norm_state | fixed, branch


RESIDUAL_CNN = cnn.CNN._replace(
    init=init,
    block=block,
    static_fields=("norm", "branch_scaling"),
    dynamic_fields=("branch_scale",),
    theory=None,
    kept_per_unit=lambda spec: cnn.kept_per_unit(spec) + 1.0,  # the stream besides
)
