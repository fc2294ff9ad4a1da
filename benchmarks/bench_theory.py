"""Throughput of the mean-field grid evaluation (``sweep.theory.mean_field.mean_field``).

    .venv/bin/python benchmarks/bench_theory.py              # 300 x 250 grid, float32
    .venv/bin/python benchmarks/bench_theory.py --x64        # the same in float64
    .venv/bin/python benchmarks/bench_theory.py --shape 600 500 --repeats 5

One call evaluates q*, c*, χ₁, χ_c, ξ_q, ξ_c on a (σ_w², σ_b²) grid spanning both phases, for tanh (the
generic quadrature path: sinh-mapped Gauss–Legendre + Mehler series) and erf (closed forms). The first call
(compilation + run) is reported separately; then the best of ``--repeats`` warm calls, as points per second,
and the ratio erf/tanh. ``--q-only`` also times ``q_star`` alone (no correlation map).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from sweep.theory import mean_field as mf


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    w2, b2 = np.meshgrid(np.linspace(0.3, 5.0, shape[0]), np.linspace(0.0, 2.0, shape[1]), indexing="ij")
    return w2, b2


def _time(fn, repeats: int) -> tuple[float, float]:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return first, best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", type=int, nargs=2, default=(300, 250), metavar=("N_W2", "N_B2"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--x64", action="store_true", help="float64 (default: float32)")
    parser.add_argument("--q-only", action="store_true", help="also time q_star alone")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", args.x64)

    w2, b2 = _grid(tuple(args.shape))
    points = w2.size
    dtype = "float64" if args.x64 else "float32"
    print(f"grid {args.shape[0]} x {args.shape[1]} = {points} points, {dtype}, {jax.devices()[0].platform}")
    rates = {}
    for activation, path in (("tanh", "quadrature"), ("erf", "closed form")):
        cases = [("mean_field", lambda a=activation: mf.mean_field(a, w2, b2))]
        if args.q_only:
            cases.append(("q_star", lambda a=activation: mf.q_star(a, w2, b2)))
        for name, fn in cases:
            first, best = _time(fn, args.repeats)
            rates[activation, name] = points / best
            print(
                f"{activation:5s} ({path:11s}) {name:10s}: first call {first:6.2f} s, warm {best:6.3f} s "
                f"= {points / best:12,.0f} points/s"
            )
    print(
        f"ratio erf/tanh (mean_field, warm): {rates['erf', 'mean_field'] / rates['tanh', 'mean_field']:.1f}"
    )


if __name__ == "__main__":
    main()
