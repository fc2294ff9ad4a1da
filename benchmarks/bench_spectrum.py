"""Throughput of the Jacobian singular-value measurements (``sweep.measure.spectrum``).

    .venv/bin/python benchmarks/bench_spectrum.py                   # defaults below
    .venv/bin/python benchmarks/bench_spectrum.py --mf-depth 50 --mf-variants 2

1. Exact route: the full spectrum of ``--variants`` (256) tanh MLPs of width 128 and depth 50 at one input
   each, ``jax.vmap`` over variants inside one ``jax.jit``; a warm call is timed after compilation and
   reported as variants/s.
2. Matrix-free route: top/bottom-k by Golub–Kahan–Lanczos for width 2048 (``--mf-variants`` networks,
   vmapped), reported in seconds per call. ``--compare-exact`` also times the exact route at that width
   and prints how far apart the top-k are (slow on a CPU: ~L · 2 N³ flops per variant).

Weights are drawn on the device inside the program that builds them (standard parameterisation at the tanh
critical point, sigma_w2 = 1.76, sigma_b2 = 0.05). Timings use ``block_until_ready``.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp

from sweep.measure.spectrum import exact_log10_singular_values, matrix_free_log10_singular_values

SIGMA_W2, SIGMA_B2 = 1.76, 0.05


@functools.partial(jax.jit, static_argnames=("variants", "depth", "width"))
def _networks(key: jax.Array, variants: int, depth: int, width: int) -> tuple[jax.Array, ...]:
    kw, kb, kh = jax.random.split(key, 3)
    w = jax.random.normal(kw, (variants, depth - 1, width, width)) * jnp.sqrt(SIGMA_W2 / width)
    b = jax.random.normal(kb, (variants, depth - 1, width)) * jnp.sqrt(SIGMA_B2)
    h1 = jax.random.normal(kh, (variants, width))
    return w, b, h1


def _timed(f, *args, repeats: int) -> tuple[float, float, object]:
    """(compile + first call seconds, best warm call seconds, output)."""
    start = time.perf_counter()
    out = jax.block_until_ready(f(*args))
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - start)
    return first, best, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--mf-width", type=int, default=2048)
    parser.add_argument("--mf-depth", type=int, default=20)
    parser.add_argument("--mf-variants", type=int, default=1)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--n-iter", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-exact", action="store_true")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()})")

    exact = jax.jit(jax.vmap(functools.partial(exact_log10_singular_values, phi=jnp.tanh)))
    nets = jax.block_until_ready(_networks(jax.random.key(0), args.variants, args.depth, args.width))
    first, best, out = _timed(exact, *nets, repeats=args.repeats)
    print(
        f"exact: {args.variants} variants, width {args.width}, depth {args.depth}: "
        f"compile+first {first:.2f} s, "
        f"warm {best:.3f} s = {args.variants / best:.0f} variants/s (finite: {bool(jnp.isfinite(out).all())})"
    )
    del nets

    svd = jax.jit(jax.vmap(functools.partial(jnp.linalg.svd, compute_uv=False)))
    _, best_svd, _ = _timed(
        svd,
        jax.random.normal(jax.random.key(3), (args.variants, args.width, args.width)),
        repeats=args.repeats,
    )
    print(f"  of which the final SVDs alone: {best_svd:.3f} s ({best_svd / best:.0%})")

    def one(w: jax.Array, b: jax.Array, h1: jax.Array, key: jax.Array) -> tuple[jax.Array, ...]:
        return matrix_free_log10_singular_values(w, b, h1, jnp.tanh, args.k, args.n_iter, key)

    mf = jax.jit(jax.vmap(one))
    nets = jax.block_until_ready(_networks(jax.random.key(1), args.mf_variants, args.mf_depth, args.mf_width))
    keys = jax.random.split(jax.random.key(2), args.mf_variants)
    first, best, (top, bottom, mean_sq) = _timed(mf, *nets, keys, repeats=args.repeats)
    print(
        f"matrix-free: {args.mf_variants} variant(s), width {args.mf_width}, depth {args.mf_depth}, "
        f"k {args.k}, n_iter {args.n_iter}: compile+first {first:.2f} s, warm {best:.3f} s per call "
        f"({best / args.mf_variants:.3f} s per variant)"
    )
    print(f"  top log10 sv {top[0]}, bottom {bottom[0]}, log10 mean sq {float(mean_sq[0]):.4f}")
    if args.compare_exact:
        first, best, full = _timed(exact, *nets, repeats=1)
        err = jnp.max(jnp.abs(10.0 ** (top - full[:, : args.k]) - 1.0))
        print(
            f"  exact at width {args.mf_width}: warm {best:.2f} s per call; max relative error of the "
            f"matrix-free top-{args.k}: {float(err):.2e}"
        )


if __name__ == "__main__":
    main()
