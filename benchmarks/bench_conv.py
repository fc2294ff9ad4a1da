"""One training step of V convolutional variants: grouped convolution, batched matmuls, or a loop.

The engine trains V variants at once with ``jax.vmap`` over per-variant kernels. A vmapped
``lax.conv_general_dilated`` whose kernel is batched becomes a grouped convolution
(``feature_group_count = V``); ``sweep.nets.conv_ops.conv(method="taps")`` becomes batched matrix
products instead. Each variant is a stack of ``--layers`` convolutions of ``c -> c`` channels (stride 1,
circular padding, tanh between them; input ``x [B, *spatial, c]``, its own per variant, as each variant
draws its own minibatch), loss ``mean((net(x) - y)^2)``; one step is ``jax.value_and_grad`` of the loss
with respect to the kernels and the input (so that every layer does its three products: forward, input
gradient, kernel gradient) and an SGD update of the kernels, jit-compiled. Formulations:

- ``vmap lax``: (a) ``jax.vmap`` over variants of the step with ``conv(method="lax")``: grouped conv;
- ``vmap taps``: (b) the same with ``conv(method="taps")``: im2col, batched ``dot_general``;
- ``loop lax`` / ``loop taps``: (c) a Python loop over the V variants of ONE jitted single-variant step
  (dispatch included; blocked once at the end);
- ``shared lax``: (d) the reference rate: ONE shared kernel stack on a batch of ``V * B`` rows,
  ``lax.conv_general_dilated`` without vmap: XLA's plain convolution of the same total size.

Timing excludes compilation (every program runs once first), blocks on the results, alternates the
formulations within each of ``--repeats`` rounds and keeps each one's best. FLOPs per step:
``3 * layers * V * 2 B P_out taps c^2`` (a multiply-add is 2 FLOPs). Printed per case: ms per step,
GFLOP/s and the time relative to (d) (``x shared``, 1 = as fast as XLA's plain convolution). XLA's
defaults throughout (no ``XLA_FLAGS``, one JAX CPU device using every core); the CPU count is printed.

    python benchmarks/bench_conv.py [--variants 16] [--batch 32] [--channels 16 32 64] [--layers 4]
        [--repeats 5] [--quick] [--json out.json]

``--quick``: channels 16 and 32, 3 repeats. Cases: 1-D (``--n1d`` = 40 positions, k = 3, like MNIST-1D)
and 2-D (``--n2d`` = 8 x 8 positions, 3 x 3 kernel). The measured tables, and the ``method="auto"``
choice they decided, are in the docstring of ``sweep.nets.conv_ops``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sweep.nets.conv_ops import conv

LEARNING_RATE = 0.01
FORMULATIONS = ("vmap lax", "vmap taps", "loop lax", "loop taps", "shared lax")


def net(ws: jax.Array, x: jax.Array, method: str) -> jax.Array:
    """``ws [L, *taps, c, c]``, ``x [B, *spatial, c]`` -> ``[B, *spatial, c]``: convs, tanh between."""
    h = x
    for layer in range(ws.shape[0]):
        h = conv(h, ws[layer], stride=1, padding="circular", method=method)
        if layer < ws.shape[0] - 1:
            h = jnp.tanh(h)
    return h


def step_fn(method: str) -> Callable:
    """One SGD step of one network: ``(ws, x, y) -> (loss, new ws, d loss / d x)``."""

    def step(ws, x, y):
        loss, (gw, gx) = jax.value_and_grad(
            lambda ws, x: jnp.mean((net(ws, x, method) - y) ** 2), argnums=(0, 1)
        )(ws, x)
        return loss, ws - LEARNING_RATE * gw, gx

    return step


def make_programs(ws, x, y) -> dict[str, Callable[[], object]]:
    """Each formulation as a no-argument call returning its (unblocked) results."""
    v, b = x.shape[:2]
    vmapped = {m: jax.jit(jax.vmap(step_fn(m))) for m in ("lax", "taps")}
    single = {m: jax.jit(step_fn(m)) for m in ("lax", "taps")}
    shared = jax.jit(step_fn("lax"))
    ws_list, x_list, y_list = list(ws), list(x), list(y)
    x_all, y_all = x.reshape(v * b, *x.shape[2:]), y.reshape(v * b, *y.shape[2:])
    return {
        "vmap lax": lambda: vmapped["lax"](ws, x, y),
        "vmap taps": lambda: vmapped["taps"](ws, x, y),
        "loop lax": lambda: [single["lax"](*a) for a in zip(ws_list, x_list, y_list, strict=True)],
        "loop taps": lambda: [single["taps"](*a) for a in zip(ws_list, x_list, y_list, strict=True)],
        "shared lax": lambda: shared(ws[0], x_all, y_all),
    }


def seconds(call: Callable[[], object], number: int) -> float:
    """Mean seconds of ``number`` blocked calls."""
    start = time.perf_counter()
    for _ in range(number):
        jax.block_until_ready(call())
    return (time.perf_counter() - start) / number


def bench_case(args: argparse.Namespace, spatial: tuple[int, ...], k: int, c: int) -> dict:
    """Best seconds per step of every formulation for one (spatial, k, c) case."""
    v, b, layers = args.variants, args.batch, args.layers
    taps = (k,) * len(spatial)
    rng = np.random.default_rng(0)
    ws = rng.standard_normal((v, layers, *taps, c, c)) / np.sqrt(np.prod(taps) * c)
    x = rng.standard_normal((v, b, *spatial, c))
    y = rng.standard_normal((v, b, *spatial, c))
    ws, x, y = (jnp.asarray(a, jnp.float32) for a in (ws, x, y))
    programs = make_programs(ws, x, y)
    # compile and warm up, then choose calls per timing so that each takes >= ~40 ms
    numbers = {}
    for name, call in programs.items():
        jax.block_until_ready(call())
        numbers[name] = max(1, int(0.04 / max(seconds(call, 1), 1e-6)))
    best = dict.fromkeys(programs, float("inf"))
    for _ in range(args.repeats):
        for name, call in programs.items():
            best[name] = min(best[name], seconds(call, numbers[name]))
    p_out = int(np.prod(spatial))
    flops = 3 * layers * v * 2 * b * p_out * int(np.prod(taps)) * c * c
    return {
        "spatial": list(spatial),
        "k": k,
        "channels": c,
        "flops": flops,
        "ms": {name: 1e3 * s for name, s in best.items()},
        "gflops": {name: flops / s / 1e9 for name, s in best.items()},
        "x_shared": {name: s / best["shared lax"] for name, s in best.items()},
    }


def print_table(results: list[dict]) -> None:
    width = 13
    head = f"{'case':<16}" + "".join(f"{n:>{width}}" for n in FORMULATIONS)
    print("\nms per step | GFLOP/s | time relative to (d) shared lax")
    print(head)
    for r in results:
        dims = "x".join(map(str, r["spatial"]))
        name = f"{len(r['spatial'])}d {dims} c{r['channels']}"
        print(f"{name:<16}" + "".join(f"{r['ms'][n]:>{width}.2f}" for n in FORMULATIONS))
        print(f"{'  GFLOP/s':<16}" + "".join(f"{r['gflops'][n]:>{width}.1f}" for n in FORMULATIONS))
        print(f"{'  x shared':<16}" + "".join(f"{r['x_shared'][n]:>{width}.2f}" for n in FORMULATIONS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--variants", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--n1d", type=int, default=40)
    parser.add_argument("--n2d", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="channels 16 and 32, 3 repeats")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.channels, args.repeats = [16, 32], 3
    print(
        f"jax {jax.__version__} on {jax.default_backend()} ({jax.device_count()} device(s)), "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print(
        f"V = {args.variants} variants, B = {args.batch} rows, {args.layers} conv layers, "
        f"{args.repeats} repeats (best)"
    )
    cases = [((args.n1d,), 3), ((args.n2d, args.n2d), 3)]
    results = []
    for spatial, k in cases:
        for c in args.channels:
            results.append(bench_case(args, spatial, k, c))
            r = results[-1]
            print(
                f"  {spatial} c={c}: " + ", ".join(f"{n} {r['ms'][n]:.2f} ms" for n in FORMULATIONS),
                flush=True,
            )
    print_table(results)
    if args.json is not None:
        meta = {"jax": jax.__version__, "backend": jax.default_backend(), "cpus": os.cpu_count()}
        args.json.write_text(
            json.dumps(
                {"meta": meta, "args": {**vars(args), "json": str(args.json)}, "results": results}, indent=1
            )
        )


if __name__ == "__main__":
    main()
