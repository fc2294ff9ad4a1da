"""The vmapped engine against the script a user would otherwise write, and against the matmul roofline.

For each case (the same problem everywhere: tanh MLP, Gaussian-mixture data, SGD, sigma_w2 x seed
variants), in the same run:

- **engine**: ``sweep.runner.engine.run`` on the experiment, in a fresh process, timed whole (interpreter
  start, imports, data, compile, training, results); the engine's own ``compile_seconds``/``run_seconds``
  (``Dataset.attrs``) are reported too. ``--xla-flags`` sets XLA_FLAGS for it (default: inherited). The
  compilation cache is off (every program compiled afresh: the ratio targets are judged on this); one more run
  after a run that filled a fresh cache shows what a user's second run of these shapes costs (``engine, cache
  warm``).
- **pytorch loop**: the sequential script, one ``nn.Sequential`` per variant with the same init
  (``W ~ N(0, sigma_w2/fan_in)``, ``b ~ N(0, sigma_b2)``), SGD, same batch and steps, cross-entropy,
  measured (loss, accuracies, gradient norms) at step 0 and at the end like the engine; a fresh process,
  timed whole. Threads: ``--threads``, else the faster of (cores, 1) on a short probe (two variants of
  40 steps; on a shared machine PyTorch's OpenMP threads can be many times slower than one thread).
- **roofline**: the best batched-matmul throughput at the training shape ``[V, B, N] x [V, N, N]``: the
  fastest of XLA's batched dot (``jax.jit`` of ``einsum`` and of ``lax.dot_general``; with the engine's
  XLA_FLAGS and with one XLA CPU device per core, the batch axis sharded) and ``torch.bmm`` (cores and
  one thread).

Printed ratios: engine speed-up over the PyTorch loop (whole process; targets 6x small, 1.5x medium) and
the engine's steady-state training FLOP rate (model FLOPs ``6 B sum(fan_in fan_out)`` per variant-step,
over ``run_seconds``, which excludes compile) as a fraction of the roofline (target 0.6).

    python benchmarks/bench_engine.py [--case small|medium|all] [--repeats 1] [--torch-variants K]
        [--threads N] [--xla-flags "..."] [--json out.json]

PyTorch is a benchmark extra (``pip install -e '.[bench]'``; the CPU wheel is enough). The machine may be
shared: ``--repeats`` runs engine and PyTorch alternately and keeps each one's best time. The PyTorch loop
is sequential, so ``--torch-variants K`` times K variants and extrapolates (start-up + V/K x loop), marked.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from torch_baselines import Case, cores, emit, run_worker, sequential_loop

CASES = {
    "small": Case(width=32, depth=20, batch=32, n_sigma=16, n_seeds=8, steps=300, speedup_target=6.0),
    "medium": Case(width=128, depth=20, batch=128, n_sigma=8, n_seeds=4, steps=200, speedup_target=1.5),
}
ROOFLINE_TARGET = 0.6


# ------------------------------------------------------------------------------------- workers
def engine_worker(case: Case) -> None:
    """What ``sweep run`` does for the experiment, in this (fresh) process."""
    start = time.perf_counter()
    import numpy as np

    from sweep.runner.engine import run

    imported = time.perf_counter()
    ds = run(case.experiment())
    done = time.perf_counter()
    final = ds["train_loss"].isel(step=-1).values
    emit(
        {
            "import_seconds": imported - start,
            "run_call_seconds": done - imported,
            "compile_seconds": float(ds.attrs["compile_seconds"]),
            "run_seconds": float(ds.attrs["run_seconds"]),
            "final_train_loss": [float(v) for v in np.ravel(final)],  # grid order: sigma_w2, seed
            "diverged": int(ds["diverged"].values.sum()),
        }
    )


def torch_worker(case: Case, threads: int, n_variants: int, steps: int | None = None) -> None:
    """The sequential PyTorch script (``torch_baselines.sequential_loop``): one network after another."""
    result = sequential_loop(case, threads, n_variants, steps)
    keys = ("setup_seconds", "loop_seconds", "variants_timed", "steps", "variant_seconds")
    emit({k: result[k] for k in (*keys, "final_train_loss", "diverged", "threads")})


def best_rate(fn, flops: float, seconds: float = 0.25, blocks: int = 7) -> float:
    """Best GFLOP/s over ``blocks`` timed blocks of repeated ``fn()`` calls (each about ``seconds``)."""
    fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < 0.05 or calls < 3:
        fn()
        calls += 1
    reps = max(3, round(calls * seconds / (time.perf_counter() - start)))
    best = math.inf
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps)
    return flops / best / 1e9


def roofline_xla_worker(case: Case) -> None:
    """XLA's batched dot at the training shape; with several (CPU) devices, sharded over the batch axis."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    v, b, n = case.n_variants, case.batch, case.width
    a = jax.random.normal(jax.random.key(0), (v, b, n))
    w = jax.random.normal(jax.random.key(1), (v, n, n)) / np.sqrt(n)
    devices = jax.device_count()
    if devices > 1 and v % devices == 0:
        mesh = jax.make_mesh((devices,), ("v",), axis_types=(jax.sharding.AxisType.Auto,))
        a, w = jax.device_put((a, w), NamedSharding(mesh, P("v")))
    einsum = jax.jit(lambda a, w: jnp.einsum("vbi,vij->vbj", a, w))
    dot_general = jax.jit(lambda a, w: jax.lax.dot_general(a, w, (((2,), (1,)), ((0,), (0,)))))
    flops = 2.0 * v * b * n * n
    rates = {
        name: best_rate(lambda f=f: f(a, w).block_until_ready(), flops)
        for name, f in (("einsum", einsum), ("dot_general", dot_general))
    }
    emit({"gflops": max(rates.values()), "detail": rates, "devices": devices})


def roofline_torch_worker(case: Case, threads: int) -> None:
    """torch.bmm with ``threads`` threads and with one (on a busy machine one thread can be faster)."""
    import torch

    v, b, n = case.n_variants, case.batch, case.width
    a, w, out = torch.randn(v, b, n), torch.randn(v, n, n), torch.empty(v, b, n)
    rates = {}
    for count in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(count)
        rates[f"{count} threads"] = best_rate(lambda: torch.bmm(a, w, out=out), 2.0 * v * b * n * n)
    emit({"gflops": max(rates.values()), "detail": rates})


def worker(args: argparse.Namespace) -> None:
    case = CASES[args.case]
    if args.worker == "engine":
        engine_worker(case)
    elif args.worker == "torch":
        torch_worker(case, args.threads or cores(), args.torch_variants or case.n_variants, args.probe_steps)
    elif args.worker == "roofline-xla":
        roofline_xla_worker(case)
    elif args.worker == "roofline-torch":
        roofline_torch_worker(case, args.threads or cores())


# ------------------------------------------------------------------------------------- driver
def spawn(
    kind: str,
    case_name: str,
    threads: int,
    torch_variants: int | None = None,
    xla_flags: str | None = None,
    probe_steps: int | None = None,
    cache_dir: str | None = None,
) -> dict:
    """Run one worker in a fresh interpreter; its result plus the whole process's wall-clock seconds.
    ``xla_flags`` (a string) replaces XLA_FLAGS for that process; ``cache_dir`` is the engine's
    compilation cache (``SWEEP_CACHE_DIR``; default: off, every program compiled afresh)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--case", case_name]
    command += ["--threads", str(threads)]
    if torch_variants:
        command += ["--torch-variants", str(torch_variants)]
    if probe_steps:
        command += ["--probe-steps", str(probe_steps)]
    env = dict(os.environ) | {"SWEEP_CACHE_DIR": cache_dir or "off"}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    return run_worker(command, env, f"{kind} worker")


def has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def xla_roofline(name: str, xla_flags: str | None) -> dict:
    """XLA's batched dot with the engine's XLA_FLAGS and, on a multi-core CPU, with one XLA device per core
    (the variant axis sharded over them): the better of the two."""
    configs = {"engine flags": xla_flags}
    base = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    if cores() > 1 and "device_count" not in base:
        configs[f"{cores()} CPU devices"] = f"{base} --xla_force_host_platform_device_count={cores()}".strip()
    results = {label: spawn("roofline-xla", name, 1, xla_flags=flags) for label, flags in configs.items()}
    detail = {f"{label} {kind}": rate for label, r in results.items() for kind, rate in r["detail"].items()}
    return {"gflops": max(detail.values()), "detail": detail}


def torch_threads(name: str, case: Case, threads: int | None) -> tuple[int, dict]:
    """The PyTorch loop's thread count: ``threads`` if given, else the faster of (cores, 1) on a short probe
    (two variants of at most 40 steps, the second timed; on a shared machine PyTorch's OpenMP threads can
    be many times slower than one thread)."""
    if threads is not None:
        return threads, {}
    steps = min(case.steps, 40)
    probe = {t: spawn("torch", name, t, 2, probe_steps=steps) for t in sorted({cores(), 1}, reverse=True)}
    per_step = {t: r["variant_seconds"][-1] / steps for t, r in probe.items()}
    return min(per_step, key=per_step.get), per_step


def bench_case(
    name: str, repeats: int, threads: int | None, torch_variants: int | None, xla_flags: str | None
) -> dict:
    case = CASES[name]
    print(
        f"\n== {name}: width {case.width}, depth {case.depth}, batch {case.batch}, "
        f"{case.n_variants} variants ({case.n_sigma} sigma_w2 x {case.n_seeds} seeds), {case.steps} steps; "
        f"{case.flops_per_variant_step() / 1e6:.2f} MFLOP per variant-step, "
        f"{case.total_flops() / 1e9:.0f} GFLOP in all",
        flush=True,
    )
    torch_ok = has_torch()
    if not torch_ok:
        print("   (PyTorch not installed: pip install -e '.[bench]'; PyTorch rows skipped)")
    if torch_variants is not None:
        torch_variants = min(torch_variants, case.n_variants)
    rows: dict = {"case": asdict(case), "engine": [], "torch": []}
    rows["roofline_xla"] = xla_roofline(name, xla_flags)
    if torch_ok:
        rows["roofline_torch"] = spawn("roofline-torch", name, cores())
        chosen, probe = torch_threads(name, case, threads)
        if probe:
            print(
                "   pytorch thread probe (ms per step): "
                + ", ".join(f"{t} threads {1e3 * s:.1f}" for t, s in probe.items())
                + f" -> {chosen} threads",
                flush=True,
            )
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(repeats):
            rows["engine"].append(spawn("engine", name, 1, xla_flags=xla_flags))
            print(f"   engine run: {rows['engine'][-1]['process_seconds']:.1f} s", flush=True)
            if torch_ok:
                rows["torch"].append(spawn("torch", name, chosen, torch_variants))
                print(f"   pytorch run: {rows['torch'][-1]['process_seconds']:.1f} s", flush=True)
        spawn("engine", name, 1, xla_flags=xla_flags, cache_dir=cache)  # fills the compilation cache
        rows["engine_warm"] = spawn("engine", name, 1, xla_flags=xla_flags, cache_dir=cache)
        print(f"   engine run, compilation cache warm: {rows['engine_warm']['process_seconds']:.1f} s")
    return summarise(name, case, rows)


def summarise(name: str, case: Case, rows: dict) -> dict:
    engine = min(rows["engine"], key=lambda r: r["process_seconds"])
    steady = case.total_flops() / engine["run_seconds"] / 1e9
    xla = rows["roofline_xla"]["gflops"]
    bmm = rows.get("roofline_torch", {}).get("gflops", 0.0)
    roofline = max(xla, bmm)
    summary = {
        "case": name,
        "engine_seconds": engine["process_seconds"],
        "engine_compile_seconds": engine["compile_seconds"],
        "engine_run_seconds": engine["run_seconds"],
        "engine_steady_gflops": steady,
        "roofline_xla_gflops": xla,
        "roofline_torch_bmm_gflops": bmm,
        "roofline_gflops": roofline,
        "roofline_fraction": steady / roofline,
        "engine_runs": [r["process_seconds"] for r in rows["engine"]],
    }
    rest = engine["run_call_seconds"] - engine["compile_seconds"] - engine["run_seconds"]
    summary["engine_rest_seconds"] = rest  # data, init transfer, assembly, theory predictions
    print(f"   {'':30s}{'whole process':>15s}   detail")
    print(
        f"   {'engine (sweep.runner.engine.run)':30s}{engine['process_seconds']:13.1f} s   "
        f"imports {engine['import_seconds']:.1f} s, compile {engine['compile_seconds']:.1f} s, "
        f"run {engine['run_seconds']:.1f} s = {steady:.1f} GFLOP/s, rest of run() {rest:.1f} s; "
        f"diverged {engine['diverged']}"
    )
    warm = rows["engine_warm"]
    summary["engine_warm_seconds"] = warm["process_seconds"]
    print(
        f"   {'engine, cache warm':30s}{warm['process_seconds']:13.1f} s   "
        f"compile {warm['compile_seconds']:.1f} s: the programs come from the compilation cache of "
        "an earlier run"
    )
    if rows["torch"]:
        t = min(rows["torch"], key=lambda r: r["process_seconds"])
        k = t["variants_timed"]
        scale = case.n_variants / k
        seconds = t["process_seconds"] + t["loop_seconds"] * (scale - 1)
        note = f" (extrapolated from {k} variants)" if scale > 1 else ""
        torch_rate = case.total_flops() / (t["loop_seconds"] * scale) / 1e9
        print(
            f"   {'pytorch loop (' + str(t['threads']) + ' threads)':30s}{seconds:13.1f} s   "
            f"start-up+data {t['setup_seconds']:.1f} s, loop {t['loop_seconds'] * scale:.1f} s "
            f"= {torch_rate:.1f} GFLOP/s{note}; diverged {t['diverged']}"
        )
        mean = sum(engine["final_train_loss"][:k]) / k
        print(
            f"   final train loss, mean over the {k} variants both trained: engine {mean:.3f}, "
            f"pytorch {sum(t['final_train_loss']) / k:.3f} (same problem, different random streams)"
        )
        summary |= {
            "speedup_warm_cache": seconds / rows["engine_warm"]["process_seconds"],
            "torch_seconds": seconds,
            "torch_extrapolated": scale > 1,
            "torch_gflops": torch_rate,
            "speedup": seconds / engine["process_seconds"],
            "torch_runs": [r["process_seconds"] for r in rows["torch"]],
        }
    detail = ", ".join(f"{k} {v:.1f}" for k, v in rows["roofline_xla"]["detail"].items())
    if "roofline_torch" in rows:
        detail += "; torch.bmm " + ", ".join(
            f"{k} {v:.1f}" for k, v in rows["roofline_torch"]["detail"].items()
        )
    print(
        f"   roofline [{case.n_variants},{case.batch},{case.width}]x[{case.n_variants},{case.width},"
        f"{case.width}] batched matmul: {roofline:.1f} GFLOP/s (XLA: {detail})"
    )
    if "speedup" in summary:
        verdict = "ok" if summary["speedup"] >= case.speedup_target else "MISSED"
        print(
            f"   RATIO engine speed-up over the pytorch loop (whole process): {summary['speedup']:.2f}x "
            f"(target >= {case.speedup_target}x: {verdict}); with the compilation cache warm: "
            f"{summary['speedup_warm_cache']:.2f}x"
        )
    verdict = "ok" if summary["roofline_fraction"] >= ROOFLINE_TARGET else "MISSED"
    print(
        f"   RATIO engine steady-state FLOP rate / roofline: {summary['roofline_fraction']:.2f} "
        f"(target >= {ROOFLINE_TARGET}: {verdict})",
        flush=True,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=1, help="engine/PyTorch runs per case (best kept)")
    parser.add_argument(
        "--threads", type=int, default=None, help="PyTorch threads (default: the faster of cores and 1)"
    )
    parser.add_argument("--xla-flags", default=None, help="XLA_FLAGS for the engine (default: inherited)")
    parser.add_argument("--torch-variants", type=int, default=None, help="time K variants, extrapolate")
    parser.add_argument("--probe-steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the summaries here")
    parser.add_argument("--worker", choices=["engine", "torch", "roofline-xla", "roofline-torch"])
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import platform

    flags = os.environ.get("XLA_FLAGS", "") if args.xla_flags is None else args.xla_flags
    print(
        f"{platform.processor() or platform.machine()}, {cores()} cores, python {platform.python_version()}, "
        f"engine XLA_FLAGS={flags!r}, load average {os.getloadavg()[0]:.1f}"
    )
    if os.getloadavg()[0] > 0.5 * cores():
        print("   note: the machine is busy; timings (PyTorch's threads most) suffer; try --repeats 3")
    names = list(CASES) if args.case == "all" else [args.case]
    summaries = [
        bench_case(name, args.repeats, args.threads, args.torch_variants, args.xla_flags) for name in names
    ]
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2))


if __name__ == "__main__":
    main()
