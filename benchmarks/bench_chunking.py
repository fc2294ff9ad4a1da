"""Cost of chunking and saving: one run in many saved chunks against the same run in one chunk.

Prints the overhead ratio (target: at most 5% against one chunk). Both runs happen in this process
after a warm-up that compiles both chunk shapes, so compile time is excluded and only the cost of
splitting, saving (atomic .npz per chunk) and reassembling is measured.

    python benchmarks/bench_chunking.py [--variants 64] [--chunks 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from sweep import engine


def experiment(n_variants: int) -> dict:
    return {
        "model": {"width": 64, "depth": 10, "sigma_w2": list(np.linspace(1.0, 3.0, n_variants))},
        "data": {"name": "gaussian_mixture", "n_train": 2048, "n_test": 256},
        "train": {"steps": 200, "batch_size": 64},
        "measure": {"every": 50, "n_eval": 256},
    }


def timed(exp: dict, chunk_size: int, out: str | None) -> float:
    start = time.perf_counter()
    engine.run(exp, out, chunk_size=chunk_size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    exp, small = experiment(args.variants), args.variants // args.chunks
    timed(exp, args.variants, None)  # compile both shapes
    timed(exp, small, None)
    whole, chunked = [], []
    for _ in range(args.repeats):
        whole.append(timed(exp, args.variants, None))
        with tempfile.TemporaryDirectory() as out:
            chunked.append(timed(exp, small, f"{out}/run"))
    one, many = min(whole), min(chunked)
    print(
        f"{args.variants} variants: one chunk in memory {one:.2f} s; {args.chunks} saved chunks {many:.2f} s"
    )
    print(f"chunking + saving overhead: {many / one - 1:+.1%} (target <= +5%)")


if __name__ == "__main__":
    main()
