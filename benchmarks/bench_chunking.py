"""Cost of chunking, saving and verifying: one run in many saved chunks against the same run in one chunk,
and the share of the chunked run spent on durability (checksums, directory flushes).

Prints two overheads:

- chunking + saving (atomic, checksummed .npz per chunk, read back and verified before the results
  file): target at most 5% against one chunk in memory;
- durability alone: the time inside the CRC-32s (``sweep.storage.integrity``: chunks written and read back,
  results file) and the directory flushes after each rename, measured directly as a share of the
  chunked run (target at most 2%), and the same run timed with them switched off.

Both runs happen in this process after a warm-up that compiles both chunk shapes, so compile time is
excluded.

    python benchmarks/bench_chunking.py [--variants 64] [--chunks 8] [--repeats 3]

Measured on 2 shared CPU cores with ``--variants 64 --chunks 32 --repeats 5`` (a 3 s run): checksums
0.09% and directory flushes 0.47% of the run (worst of 5); the wall-clock comparison with both switched
off varied between -17% and +20% from one invocation to the next (other work on the machine), so only
the direct measurement resolves a cost this small.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy as np

from sweep.runner import engine
from sweep.storage import integrity, store


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


@contextlib.contextmanager
def patched(module: object, name: str, make: Callable[[Callable], Callable]) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, make(original))
    try:
        yield
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def durability_timer(spent: dict[str, float]) -> Iterator[None]:
    """Add the time inside every checksum to ``spent["checksums"]``, inside every directory flush to
    ``spent["flushes"]``."""

    def timing(key: str) -> Callable[[Callable], Callable]:
        def wrap(function: Callable) -> Callable:
            def timed_call(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    spent[key] = spent.get(key, 0.0) + time.perf_counter() - start

            return timed_call

        return wrap

    with (
        patched(integrity, "crc32", timing("checksums")),
        patched(integrity, "dataset_crc32", timing("checksums")),
        patched(store, "_sync_directory", timing("flushes")),
    ):
        yield


@contextlib.contextmanager
def no_durability() -> Iterator[None]:
    """Checksums that cost nothing (every CRC 0) and no directory flushes: the same files otherwise."""
    with (
        patched(integrity, "crc32", lambda f: lambda array, value=0: 0),
        patched(integrity, "dataset_crc32", lambda f: lambda dataset: "0"),
        patched(store, "_sync_directory", lambda f: lambda folder: None),
    ):
        yield


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    exp, small = experiment(args.variants), args.variants // args.chunks
    timed(exp, args.variants, None)  # compile both shapes
    timed(exp, small, None)
    whole, chunked, bare, checksums, flushes = [], [], [], [], []
    for _ in range(args.repeats):
        whole.append(timed(exp, args.variants, None))
        with tempfile.TemporaryDirectory() as out:
            spent: dict[str, float] = {}
            with durability_timer(spent):
                chunked.append(timed(exp, small, f"{out}/run"))
            checksums.append(spent.get("checksums", 0.0) / chunked[-1])
            flushes.append(spent.get("flushes", 0.0) / chunked[-1])
        with tempfile.TemporaryDirectory() as out, no_durability():
            bare.append(timed(exp, small, f"{out}/run"))
    one, many, without = min(whole), min(chunked), min(bare)
    print(
        f"{args.variants} variants: one chunk in memory {one:.2f} s; "
        f"{args.chunks} saved chunks {many:.2f} s; the same without checksums or directory flushes "
        f"{without:.2f} s (best of {args.repeats})"
    )
    print(f"chunking + saving overhead: {many / one - 1:+.1%} (target <= +5%)")
    print(
        f"durability, measured inside the chunked run (worst of {args.repeats}): "
        f"checksums {max(checksums):.3%}, directory flushes {max(flushes):.3%}; "
        f"timed against switching both off: {many / without - 1:+.1%} "
        "(target <= 2%)"
    )


if __name__ == "__main__":
    main()
