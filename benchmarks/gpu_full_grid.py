"""The full-size grid on an accelerator: networks per second, and the time for the whole grid.

tanh MLP, width 300, batch 256, 200 SGD steps, sigma_w2 in linspace(1, 4, 90) x depth in range(10, 101)
(8,190 networks) on 784-dimensional synthetic inputs (MNIST-shaped Gaussian mixture). Depths are run in
an order that samples the whole range early (10, 100, 55, ...); the script stops starting new depths
after --budget seconds and extrapolates the whole grid from the cost per layer measured so far.
Target: the whole grid in at most 10 minutes on one H200.

    python benchmarks/gpu_full_grid.py              # on a GPU box (pip install -e '.[cuda]')
    python benchmarks/gpu_full_grid.py --quick      # a tiny CPU check of the script itself
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import numpy as np

from sweep.runner import engine


def spread_order(values: list[int]) -> list[int]:
    """Ends first, then midpoints: any prefix covers the range."""
    order, intervals = [values[0], values[-1]], [(0, len(values) - 1)]
    while intervals:
        lo, hi = intervals.pop(0)
        if hi - lo > 1:
            mid = (lo + hi) // 2
            order.append(values[mid])
            intervals += [(lo, mid), (mid, hi)]
    return order


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=270.0, help="seconds before no new depth starts")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script on a CPU")
    args = parser.parse_args()
    width, batch, steps, n_sigma, depths = 300, 256, 200, 90, list(range(10, 101))
    if args.quick:
        width, batch, steps, n_sigma, depths = 32, 16, 10, 4, [2, 3, 4]
    print(f"devices: {jax.devices()}")
    total_layers = n_sigma * sum(depths)
    done_networks = done_layers = 0
    start = time.perf_counter()
    compile_s = run_s = 0.0
    for depth in spread_order(depths):
        if time.perf_counter() - start > args.budget:
            break
        exp = {
            "model": {
                "width": width,
                "depth": depth,
                "sigma_w2": {"linspace": [1.0, 4.0, n_sigma]},
                "sigma_b2": 0.05,
            },
            "data": {"name": "gaussian_mixture", "input_dim": 784, "n_train": 10_000, "n_test": 1000},
            "train": {"optimizer": "sgd", "learning_rate": 1e-3, "steps": steps, "batch_size": batch},
            "measure": {"every": steps, "n_eval": 512},
        }
        with tempfile.TemporaryDirectory() as out:
            ds = engine.run(exp, f"{out}/run")
        compile_s += ds.attrs["compile_seconds"]
        run_s += ds.attrs["run_seconds"]
        done_networks += n_sigma
        done_layers += n_sigma * depth
        compiled, ran = ds.attrs["compile_seconds"], ds.attrs["run_seconds"]
        print(f"depth {depth:3d}: compile {compiled:.1f} s, run {ran:.1f} s")
    wall = time.perf_counter() - start
    per_layer_run = run_s / done_layers
    per_group_compile = compile_s / max(1, done_networks // n_sigma)
    estimate = per_layer_run * total_layers + per_group_compile * len(depths)
    print(
        f"ran {done_networks} of {n_sigma * len(depths)} networks in {wall:.0f} s "
        f"({done_networks / run_s:.1f} networks/s training, excluding compile)"
    )
    training, compiling = per_layer_run * total_layers / 60, per_group_compile * len(depths) / 60
    print(
        f"estimated whole grid: {estimate / 60:.1f} min ({training:.1f} training + {compiling:.1f} compile)"
    )
    print("target: <= 10 min on one H200:", "met" if estimate <= 600 else "missed")
    np.testing.assert_(done_networks > 0)


if __name__ == "__main__":
    main()
