"""What measuring Jacobian spectra adds to a training run (target: spectra at 3 steps add <= 25%).

A typical sweep group (tanh MLP width 128, depth 20, batch 64, 300 SGD steps, 32 variants) is trained
twice in this process — without spectra, and with the exact spectrum at one input measured at steps 0,
150 and 300 — after a warm-up that compiles both programs; the ratio of run times is printed.

    python benchmarks/bench_spectrum_overhead.py [--width 128] [--depth 20] [--variants 32]
"""

from __future__ import annotations

import argparse

import numpy as np

from sweep.runner import engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--variants", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    experiment = {
        "model": {
            "width": args.width,
            "depth": args.depth,
            "sigma_w2": list(np.linspace(1, 3, args.variants)),
        },
        "data": {"name": "gaussian_mixture", "n_train": 2048, "n_test": 256},
        "train": {"steps": 300, "batch_size": 64},
        "measure": {"every": 50, "n_eval": 256, "jacobian_every": 150, "jacobian_inputs": 1},
    }
    times: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats + 1):  # the first round compiles
        for jacobian in (False, True):
            ds = engine.run(experiment, overrides=(f"measure.jacobian={str(jacobian).lower()}",))
            if repeat:
                times[jacobian].append(ds.attrs["run_seconds"])
    plain, with_spectra = min(times[False]), min(times[True])
    print(f"{args.variants} variants, width {args.width}, depth {args.depth}, 300 steps")
    print(f"training alone {plain:.2f} s; with spectra at steps 0/150/300 {with_spectra:.2f} s")
    print(f"spectra add {with_spectra / plain - 1:+.1%} (target <= +25%)")


if __name__ == "__main__":
    main()
