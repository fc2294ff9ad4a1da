"""A sweep far larger than memory runs in chunks: the footprint estimate against the measured peak RSS.

One run of ``sweep.runner.engine.run(experiment, out=tmpdir)`` in a fresh worker process, on a grid chosen so
that ALL its variants at once would need far more memory than the machine has by ``sweep.runner.memory``'s
estimate (default: 10,000 tanh MLPs of width 256, depth 2/4/6/8 x 625 values of sigma_w2 x 4 seeds,
131 GB estimated), yet trains in about a minute on a 2-core CPU (2 SGD steps of batch 8, measured on
32 + 32 rows at step 0 and at the end; gaussian_mixture data). The engine picks the chunk size from the
estimate and the budget (``--budget-gb``, else its default: half the memory available, split over the
CPU devices). A CPU device trains its share of a chunk in passes of a few variants (``sweep.runner.passes``),
so there a chunk needs one pass's memory plus every variant's records, and chunks are cut by work
rather than memory; on accelerators every variant of a chunk trains at once.

Reported:

- variants, chunks and chunk size per group (the engine's own manifest), devices;
- the estimate per variant (``memory.variant_bytes``, per group), the budget (total and per device)
  and the estimated total if unchunked;
- RSS: the baseline (the worker's RSS after imports, JAX start-up and the dataset on the devices), the
  RSS just before the first chunk trains (plus the engine's own imports and its first compiled
  program), and the peak (the most of the worker's high-water marks and ``VmHWM`` polled from here);
- wall time (and the engine's compile and training seconds);
- ratios: estimated total / machine memory and / budget, peak RSS / machine memory, (peak - baseline)
  / budget, and per chunk the RSS rise while it trains over its estimate (``memory.share_bytes`` of
  each device's share, times the devices; on a CPU one pass of variants trains at a time;
  the high-water mark is reset before each chunk through ``/proc/self/clear_refs``), worst chunk shown.

The check (exit status 1 if it fails): peak RSS <= budget + the RSS before the first chunk. The budget
is for the chunks' buffers; the process's fixed footprint (JAX, data, compiled programs: about 0.3-0.6
GB here) comes on top, and with budgets of a few GB or more the estimate's safety factor covers it, so
peak <= budget + baseline holds too (printed as ``(peak RSS - baseline) / budget <= 1``).

    python benchmarks/bench_memory.py [--variants 10000] [--width 256] [--budget-gb GB] [--quick]
        [--jacobian exact|matrix_free] [--timeout 1800] [--json out.json]

``--quick`` runs 512 variants (a check of the script, about half a minute). ``--jacobian`` also records
the input-output Jacobian's singular values at 2 inputs, e.g. ``--variants 512 --budget-gb 1``.
``--timeout`` kills a worker that does not finish (a hang must not stall the benchmark).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

MARK = "@@BENCH@@ "  # the worker's result line on stdout
DEPTHS = (2, 4, 6, 8)
SEEDS = 4
GIB = 2**30


def experiment(n_variants: int, width: int, jacobian: str | None) -> dict:
    """At least ``n_variants``: len(DEPTHS) x SEEDS x as many sigma_w2 values as that needs."""
    n_sigma = max(2, math.ceil(n_variants / (len(DEPTHS) * SEEDS)))
    measure = {"every": 2, "n_eval": 32}
    if jacobian:
        measure |= {"jacobian": True, "jacobian_inputs": 2, "jacobian_mode": jacobian, "jacobian_k": 8}
    return {
        "model": {
            "activation": "tanh",
            "width": width,
            "depth": list(DEPTHS),
            "sigma_w2": {"linspace": [0.5, 4.0, n_sigma]},
            "sigma_b2": 0.05,
        },
        "data": {"name": "gaussian_mixture", "n_train": 512, "n_test": 32},
        "train": {
            "optimizer": "sgd",
            "learning_rate": 0.01,
            "steps": 2,
            "batch_size": 8,
            "seed": list(range(SEEDS)),
        },
        "measure": measure,
    }


def rss_bytes(pid: int | str = "self", field: str = "VmRSS") -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, from /proc; 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ------------------------------------------------------------------------------------------- worker
class ChunkMeter:
    """Wraps the engine's ``run_chunk``: the RSS before each chunk and the peak while it trains (the
    kernel's high-water mark is reset before each chunk, so the process's overall peak is kept here)."""

    def __init__(self, run_chunk, chunk_bytes: dict[int, Callable[[int], int]]):
        self.run_chunk, self.chunk_bytes = run_chunk, chunk_bytes
        self.chunks: list[dict] = []
        self.peak = rss_bytes("self", "VmHWM")

    def reset_peak(self) -> None:
        self.peak = max(self.peak, rss_bytes("self", "VmHWM"))
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # VmHWM := VmRSS
        except OSError:
            pass

    def __call__(self, compiled, hyper, data):
        self.reset_peak()
        before = rss_bytes()
        out = self.run_chunk(compiled, hyper, data)
        peak = rss_bytes("self", "VmHWM")
        self.peak = max(self.peak, peak)
        size = compiled.chunk_size
        self.chunks.append(
            {"size": size, "estimate": self.chunk_bytes[id(compiled)](size), "before": before, "peak": peak}
        )
        return out


def worker(exp: dict, budget_gb: float | None) -> None:
    """In a fresh process: the engine's plan and estimates, the baseline RSS, then ``engine.run``."""
    start = time.perf_counter()
    from sweep.runner.devices import use_every_cpu_core

    use_every_cpu_core()  # what engine.run does first: one XLA CPU device per core
    import jax

    from sweep.config.grid import groups
    from sweep.data import load_dataset
    from sweep.runner import engine, memory
    from sweep.runner.train import GroupSpec, train_data
    from sweep.storage import store

    experiment = engine.as_experiment(exp)
    dataset = load_dataset(experiment.base.data)
    n_eval, n_test = experiment.base.measure.n_eval, experiment.base.data.n_test
    data = train_data(dataset, n_eval)  # starts JAX; the engine puts the same arrays on the devices again
    jax.block_until_ready(data)
    baseline = rss_bytes()
    plan = groups(experiment)
    specs = {g.key: GroupSpec.from_config(g.static, dataset) for g in plan}
    budget = memory.budget_per_device(int(budget_gb * GIB) if budget_gb else None)
    estimate = {key: memory.variant_bytes(spec, n_eval, n_test) for key, spec in specs.items()}

    by_program: dict[int, Callable[[int], int]] = {}  # id(CompiledGroup) -> chunk size -> estimated bytes
    compile_group = engine.compile_group
    devices, platform = jax.local_device_count(), jax.local_devices()[0].platform

    def compile_and_note(spec, size, data):
        compiled, fresh = compile_group(spec, size, data)
        by_program[id(compiled)] = lambda size, spec=spec: (
            devices * memory.share_bytes(spec, size // devices, n_eval, n_test, platform)
        )
        return compiled, fresh

    meter = ChunkMeter(engine.run_chunk, by_program)
    engine.compile_group, engine.run_chunk = compile_and_note, meter  # instruments this process only
    ready = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        results = engine.run(exp, out=f"{out}/run", memory_budget_gb=budget_gb)
        sizes = store.read_manifest(Path(out) / "run")["chunk_sizes"]
    done = time.perf_counter()
    meter.reset_peak()
    groups_out = [
        {
            "key": g.key,
            "variants": len(g.variants),
            "chunk_size": sizes[g.key],
            "chunks": -(-len(g.variants) // sizes[g.key]),
            "variant_bytes": estimate[g.key],
        }
        for g in plan
    ]
    emit(
        {
            "variants": experiment.n_variants,
            "devices": jax.local_device_count(),
            "budget_per_device": budget,
            "budget_total": budget * jax.local_device_count(),
            "groups": groups_out,
            "baseline_rss": baseline,
            "first_chunk_rss": meter.chunks[0]["before"],
            "chunk_meter": meter.chunks,
            "peak_rss_self": meter.peak,
            "setup_seconds": ready - start,
            "run_seconds": done - ready,
            "engine_compile_seconds": float(results.attrs["compile_seconds"]),
            "engine_train_seconds": float(results.attrs["run_seconds"]),
            "diverged": int(results["diverged"].values.sum()),
        }
    )


def emit(result: dict) -> None:
    print(MARK + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------- driver
def run_worker(exp: dict, budget_gb: float | None, timeout: float) -> dict:
    """The worker in a fresh process, its VmHWM polled; returns its result with ``peak_rss`` and wall.
    A worker still running after ``timeout`` seconds is killed (exit status 2)."""
    command = [sys.executable, __file__, "--worker", json.dumps({"exp": exp, "budget_gb": budget_gb})]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.extend(process.stdout or []), daemon=True)
    reader.start()
    polled = 0
    while process.poll() is None:
        polled = max(polled, rss_bytes(process.pid, "VmHWM"))
        if time.perf_counter() - start > timeout:
            process.kill()
            process.wait()
            sys.stderr.write(
                f"worker still running after {timeout:.0f} s (peak RSS {polled / 1e9:.2f} GB): killed\n"
            )
            sys.exit(2)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    reader.join()
    if process.returncode:
        sys.exit(f"worker failed with exit status {process.returncode}")
    result = json.loads(next(line for line in stdout if line.startswith(MARK))[len(MARK) :])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    result |= {"peak_rss": max(polled, children, result["peak_rss_self"]), "wall_seconds": wall}
    return result


def report(r: dict, machine: int) -> bool:
    """Print the numbers and ratios; True when the peak RSS stayed within budget + baseline."""
    gb = 1e9
    groups, budget, peak, baseline = r["groups"], r["budget_total"], r["peak_rss"], r["baseline_rss"]
    total_estimate = sum(g["variants"] * g["variant_bytes"] for g in groups)
    ok = peak <= budget + r["first_chunk_rss"]
    rise = [(c["peak"] - c["before"]) / c["estimate"] for c in r["chunk_meter"]]
    worst = r["chunk_meter"][rise.index(max(rise))]
    largest = max(c["estimate"] for c in r["chunk_meter"])
    print(f"{r['variants']} variants in {len(groups)} groups on {r['devices']} CPU device(s)")
    for g in groups:
        print(
            f"  {g['key']}: {g['variants']} variants, {g['chunks']} chunks of {g['chunk_size']}, "
            f"estimate {g['variant_bytes'] / 1e6:.2f} MB/variant"
        )
    print(f"chunks in all: {sum(g['chunks'] for g in groups)}")
    print(
        f"machine memory {machine / gb:.1f} GB; budget {budget / gb:.2f} GB "
        f"({r['budget_per_device'] / gb:.2f} GB per device)"
    )
    print(f"estimated total if unchunked: {total_estimate / gb:.1f} GB")
    print(
        f"RSS: baseline (imports, JAX, data) {baseline / gb:.2f} GB; before the first chunk "
        f"(+ engine imports, first compile) {r['first_chunk_rss'] / gb:.2f} GB; peak {peak / gb:.2f} GB"
    )
    compile_s, train_s = r["engine_compile_seconds"], r["engine_train_seconds"]
    print(
        f"wall {r['wall_seconds']:.1f} s: setup {r['setup_seconds']:.1f} s, "
        f"engine.run {r['run_seconds']:.1f} s "
        f"(compile {compile_s:.1f} s, training {train_s:.1f} s); {r['diverged']} variants diverged"
    )
    rows = [
        ("estimated total if unchunked / machine memory", total_estimate / machine),
        ("estimated total if unchunked / budget", total_estimate / budget),
        ("budget / machine memory", budget / machine),
        ("peak RSS / machine memory", peak / machine),
        ("(peak RSS - baseline) / budget", (peak - baseline) / budget),
        ("(peak RSS - RSS before the first chunk) / budget", (peak - r["first_chunk_rss"]) / budget),
        ("largest chunk's estimate / budget", largest / budget),
        (f"worst chunk's RSS rise / its estimate ({worst['size']} variants)", max(rise)),
    ]
    for name, value in rows:
        print(f"  {name:<58} {value:8.3f}")
    print(f"peak RSS <= budget + RSS before the first chunk: {'yes' if ok else 'NO'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument(
        "--budget-gb", type=float, default=None, help="total budget in GiB (default: engine's)"
    )
    parser.add_argument("--quick", action="store_true", help="~500 variants: a check of the script")
    parser.add_argument("--jacobian", choices=("exact", "matrix_free"), default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--timeout", type=float, default=1800, help="kill the worker after this many seconds")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        task = json.loads(args.worker)
        worker(task["exp"], task["budget_gb"])
        return
    n = 500 if args.quick else args.variants
    result = run_worker(experiment(n, args.width, args.jacobian), args.budget_gb, args.timeout)
    ok = report(result, machine_bytes())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result | {"machine_bytes": machine_bytes(), "within_budget": ok}, f, indent=2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
