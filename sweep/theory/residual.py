"""Mean field of the residual networks of ``sweep.nets.resnet`` (Yang & Schoenholz 2017).

Blocks ``x^{l+1} = x^l + a F(x^l)``, ``a = branch_scale`` (times ``1/sqrt(L)`` with inv_sqrt_depth),
weights of variance sigma_w2/fan_in, biases sigma_b2. Write ``p^l`` for the per-unit mean square of the
stream x^l, ``q^l`` for the branch pre-activation's, ``V(q) = E[phi(sqrt(q) z)^2]`` and
``D(q) = E[phi'(sqrt(q) z)^2]`` (``mean_field.gaussian_kernel``). With ``q_x`` the inputs' mean square:

- embed: ``p^1 = sigma_w2 q_x + sigma_b2``;
- block l = 1..L: ``q^l = sigma_w2 p^l + sigma_b2``;
  full ``p^{l+1} = p^l + a^2 (sigma_w2 V(q^l) + sigma_b2)``;
  reduced ``p^{l+1} = p^l + 2 a m^l M(q^l) + a^2 V(q^l)``, ``m^{l+1} = m^l + a M(q^l)``, ``m^1 = 0``:
  a reduced branch adds ``phi``'s mean ``M(q) = E[phi(sqrt(q) z)]`` to every unit (relu's is
  ``sqrt(q / 2 pi)``), so the stream gains a common mean m whose cross term with the branch counts (a
  full branch's W2 has mean zero and adds none; for odd phi, M = 0);
- readout tap (the logits): ``sigma_w2 E[phi(x)^2] + sigma_b2``, x ~ N(m^{L+1}, p^{L+1} - (m^{L+1})^2);
- backward (gradient independence), the squared gradient of the stream ``G^l = E|dL/dx^l|^2``:
  ``G^l = G^{l+1} (1 + a^2 k D(q^l))`` with ``k = sigma_w2^2`` (full) or ``sigma_w2`` (reduced);
- block l's weight gradients, ``E|dL/dW^l|_F^2 = a^2 N G^{l+1} T^l`` with ``T^l = sigma_w2 p^l D(q^l) +
  V(q^l)`` (full: W1 and W2) or ``p^l D(q^l)`` (reduced). These assume a stream of mean zero: where a
  reduced branch gives it a mean (m^{L+1} != 0, e.g. relu) the backward signal correlates with the
  weights through it and the measured ratio falls below this recursion (0.4x at relu, depth 12, width
  256): ``grad_ratio`` is NaN there (the forward recursions above still hold). The prediction is for
  one example; the engine measures the gradient of a minibatch's mean loss, whose cross-example terms
  follow the inputs' correlations: tanh nets matched within 15% (depth 12, width 256, 16 seeds), relu
  full branches came out below it (0.86 of it at a = 0.5, 0.57 at a = 1).

Exact (in expectation, any width) for a linear branch: ``p^{L+1} = (1 + a^2 sigma_w2)^L p^1`` (reduced,
no biases); relu full branch without biases: ``1 + a^2 sigma_w2^2 / 2`` per block.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep.nets.activations import get_activation
from sweep.theory.kernels import gaussian_kernel
from sweep.theory.quadrature import _FINE, gaussian_expectation


class ResidualProfile(NamedTuple):
    """Per-variant mean-field profile; leading axes those of the inputs."""

    q_layer: np.ndarray  # [..., L + 2]: p^1 (embed), q^1..q^L (blocks), the logits' mean square
    p_stream: np.ndarray  # [..., L + 1]: p^1 .. p^{L+1}
    grad_ratio: np.ndarray  # [...]: |dL/dW| of block 1 over block L (sqrt of the expected squares)


@partial(jax.jit, static_argnames=("activation", "depth", "full"))
def _profile(
    activation: str, depth: int, full: bool, w2: jax.Array, b2: jax.Array, a2: jax.Array, qx: jax.Array
) -> tuple[jax.Array, ...]:
    kernel, phi = gaussian_kernel(activation), get_activation(activation)

    def one(w2: jax.Array, b2: jax.Array, a2: jax.Array) -> tuple[jax.Array, ...]:
        a = jnp.sqrt(a2)

        def block(carry: tuple[jax.Array, jax.Array], _: None) -> tuple[tuple, tuple[jax.Array, ...]]:
            p, mean = carry
            q = w2 * p + b2
            m = kernel.moments(q, _FINE)
            if full:
                p_next, mean_next = p + a2 * (w2 * m.var + b2), mean
            else:
                branch_mean = gaussian_expectation(phi, q)
                p_next = p + 2 * a * mean * branch_mean + a2 * m.var
                mean_next = mean + a * branch_mean
            back = 1 + a2 * (w2**2 if full else w2) * m.dvar
            weights = (w2 * p * m.dvar + m.var) if full else p * m.dvar
            return (p_next, mean_next), (q, p, back, weights)

        p1 = w2 * qx + b2
        init = (p1, jnp.zeros_like(p1))
        (p_last, mean), (q, p, back, weights) = jax.lax.scan(block, init, None, length=depth)
        if full:
            logits = w2 * kernel.moments(p_last, _FINE).var + b2
        else:  # the stream's units are N(m, p - m^2): phi's second moment about the shifted centre
            logits = w2 * gaussian_expectation(lambda u: phi(mean + u) ** 2, p_last - mean**2) + b2
        # G^{l+1} / G^{L+1} = prod_{k > l} back_k: block 1 over block L is prod_{k=2..L} back_k
        log_ratio = jnp.sum(jnp.log(back[1:])) + jnp.log(weights[0]) - jnp.log(weights[-1])
        q_layer = jnp.concatenate([p1[None], q, logits[None]])
        # a stream with a common mean correlates the backward signal with the weights: not predicted
        ratio = jnp.where(jnp.abs(mean) > 1e-6 * jnp.sqrt(p_last), jnp.nan, jnp.exp(0.5 * log_ratio))
        # a stream past float32's range (relu branches grow it by 1 + a^2 sigma_w2^2 / 2 per block) has
        # no finite profile: NaN, not the 0 or inf that exp(log inf - log inf) would give
        ratio = jnp.where(jnp.isfinite(log_ratio) & jnp.isfinite(p_last), ratio, jnp.nan)
        return q_layer, jnp.concatenate([p, p_last[None]]), ratio

    return jax.vmap(one)(w2, b2, a2)


def residual_profile(
    activation: str,
    sigma_w2: np.ndarray | float,
    sigma_b2: np.ndarray | float,
    alpha: np.ndarray | float,
    depth: int,
    branch: str = "full",
    q_input: float = 1.0,
) -> ResidualProfile:
    """The profile at every (sigma_w2, sigma_b2, alpha) (broadcast together; ``alpha`` the effective
    branch factor a, ``1/sqrt(L)`` included); ``q_input`` the inputs' mean square. One compile per
    (activation, depth, branch)."""
    if branch not in ("full", "reduced"):
        raise ValueError(f"unknown branch {branch!r}; choose from ['full', 'reduced']")
    w2, b2, a = np.broadcast_arrays(*(np.asarray(v, np.float32) for v in (sigma_w2, sigma_b2, alpha)))
    shape = w2.shape
    out = _profile(
        activation,
        depth,
        branch == "full",
        jnp.asarray(w2.ravel()),
        jnp.asarray(b2.ravel()),
        jnp.asarray(a.ravel() ** 2),
        jnp.asarray(q_input, jnp.float32),
    )
    q_layer, p_stream, ratio = (np.asarray(v) for v in out)
    return ResidualProfile(
        q_layer.reshape(*shape, depth + 2), p_stream.reshape(*shape, depth + 1), ratio.reshape(shape)
    )
