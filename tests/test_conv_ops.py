"""``sweep.nets.conv_ops.conv``: both methods against a NumPy loop reference, their gradients, vmap."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.nets.conv_ops import conv, out_size, resolve_method

METHODS = ("lax", "taps")


def reference(x: np.ndarray, w: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """out[b, p, o] = sum_{t, i} w[t, i, o] x[b, stride p + t - h, i], by explicit loops (float64)."""
    ndim = w.ndim - 2
    taps, spatial = w.shape[:ndim], x.shape[1:-1]
    sizes = [out_size(n, stride) for n in spatial]
    out = np.zeros((x.shape[0], *sizes, w.shape[-1]))
    for p in itertools.product(*(range(s) for s in sizes)):
        for t in itertools.product(*(range(k) for k in taps)):
            q = [stride * pi + ti - (k - 1) // 2 for pi, ti, k in zip(p, t, taps, strict=True)]
            if padding == "circular":
                q = [qi % n for qi, n in zip(q, spatial, strict=True)]
            elif any(qi < 0 or qi >= n for qi, n in zip(q, spatial, strict=True)):
                continue
            out[(slice(None), *p)] += x[(slice(None), *q)].astype(np.float64) @ w[t].astype(np.float64)
    return out


def _draw(seed: int, batch: int, spatial: tuple[int, ...], taps: tuple[int, ...], c_in: int, c_out: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *spatial, c_in)).astype(np.float32)
    w = (rng.standard_normal((*taps, c_in, c_out)) / np.sqrt(np.prod(taps) * c_in)).astype(np.float32)
    return x, w


KS, STRIDES, PADDINGS = (1, 3, 5), (1, 2), ("circular", "zero")


def _all_cases(x: jax.Array, ws: dict, method: str) -> dict:
    """Every (k, stride, padding) of one input shape in ONE jitted program (one compile, not twelve)."""

    @jax.jit
    def run(x, ws):
        cases = itertools.product(KS, STRIDES, PADDINGS)
        return {(k, s, pad): conv(x, ws[k], s, pad, method) for k, s, pad in cases}

    return jax.device_get(run(x, ws))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("spatial", [(7,), (8,), (5, 6)], ids=["1d-odd", "1d-even", "2d-odd-even"])
def test_matches_reference(method, spatial):
    x, _ = _draw(0, 3, spatial, (1,) * len(spatial), 2, 3)
    ws = {k: _draw(k, 1, spatial, (k,) * len(spatial), 2, 3)[1] for k in KS}
    outs = _all_cases(jnp.asarray(x), {k: jnp.asarray(w) for k, w in ws.items()}, method)
    for (k, s, pad), out in outs.items():
        assert out.dtype == np.float32
        assert out.shape == (3, *(out_size(n, s) for n in spatial), 3), (k, s, pad)
        np.testing.assert_allclose(
            out, reference(x, ws[k], s, pad), rtol=1e-5, atol=1e-5, err_msg=str((k, s, pad))
        )


def test_2d_rectangular_kernel():
    x, w = _draw(0, 2, (5, 6), (3, 1), 2, 2)
    for method, pad in itertools.product(METHODS, PADDINGS):
        out = conv(jnp.asarray(x), jnp.asarray(w), stride=2, padding=pad, method=method)
        np.testing.assert_allclose(np.asarray(out), reference(x, w, 2, pad), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("spatial", "k", "stride", "padding"),
    [((9,), 3, 2, "zero"), ((8,), 5, 1, "circular"), ((5, 6), 3, 2, "circular")],
)
def test_gradients_agree(spatial, k, stride, padding):
    x, w = _draw(1, 2, spatial, (k,) * len(spatial), 3, 2)
    x, w = jnp.asarray(x), jnp.asarray(w)
    rng = np.random.default_rng(2)
    target = jnp.asarray(
        rng.standard_normal((2, *(out_size(n, stride) for n in spatial), 2)).astype(np.float32)
    )
    dx = jnp.asarray(rng.standard_normal(x.shape).astype(np.float32))

    @jax.jit
    def both(x, w):
        """Per method: loss gradients (reverse mode) and a jvp (forward mode, as Jacobian measures use)."""
        out = {}
        for method in METHODS:
            f = lambda x, w, m=method: conv(x, w, stride, padding, m)  # noqa: E731
            loss = lambda x, w, f=f: jnp.mean((jnp.tanh(f(x, w)) - target) ** 2)  # noqa: E731
            out[method] = (
                *jax.grad(loss, argnums=(0, 1))(x, w),
                jax.jvp(lambda x, f=f: f(x, w), (x,), (dx,))[1],
            )
        return out

    got = jax.device_get(both(x, w))
    for a, b in zip(got["lax"], got["taps"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("spatial", "stride", "padding"), [((8,), 2, "circular"), ((4, 5), 1, "zero")])
def test_vmap_over_variants_equals_loop(method, spatial, stride, padding):
    variants = 3
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((variants, 2, *spatial, 2)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((variants, *(3,) * len(spatial), 2, 4)).astype(np.float32))
    batched = jax.jit(jax.vmap(lambda x, w: conv(x, w, stride, padding, method)))(x, w)
    looped = np.stack([np.asarray(conv(x[v], w[v], stride, padding, method)) for v in range(variants)])
    np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-5, atol=1e-5)


def test_auto_is_a_method_and_agrees():
    assert resolve_method("auto") in METHODS
    x, w = _draw(4, 2, (6,), (3,), 2, 2)
    np.testing.assert_allclose(
        np.asarray(conv(jnp.asarray(x), jnp.asarray(w))), reference(x, w, 1, "circular"), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs"),
    [
        ((2, 6, 3), (2, 3, 4), {}),  # even tap
        ((2, 6, 3), (3, 2, 4), {}),  # channel mismatch
        ((2, 6, 6, 3), (3, 3, 4), {}),  # spatial rank mismatch
        ((2, 6, 3), (3, 3, 4), {"padding": "reflect"}),
        ((2, 6, 3), (3, 3, 4), {"method": "fft"}),
        ((2, 6, 3), (3, 3, 4), {"stride": 0}),
    ],
)
def test_rejects_bad_arguments(x_shape, w_shape, kwargs):
    with pytest.raises(ValueError):
        conv(jnp.zeros(x_shape), jnp.zeros(w_shape), **kwargs)
