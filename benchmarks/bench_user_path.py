"""What a user runs: ``sweep run`` with its figures, in a fresh process, against the PyTorch programs a
user would write instead, each timed whole (interpreter start to exit).

The problem (``CASES``): tanh MLPs on MNIST-1D (4,000 training and 1,000 test rows), sigma_w2 swept over
[1, 2.5] around the critical 1.76 times seeds, sigma_b2 = 0.05, SGD at learning rate 0.01, measured every
50 steps (loss, accuracy, test accuracy, per-layer gradient norms; forward signal at step 0).

- **sweep run**: ``sweep run EXPERIMENT.toml --out DIR --force``: results, then the standard figures
  (PNG). *Cold*: ``SWEEP_CACHE_DIR`` a fresh folder (every program compiled, MNIST-1D generated); *warm*:
  a folder an earlier run filled (programs and data from the cache). Its phases are read from the
  wall-time line of its summary.
- **batched PyTorch**: ``torch_baselines.batched_program``: every variant in one program (stacked weights
  ``[V, fan_in, fan_out]``, ``torch.baddbmm``, autograd, the same SGD, the same per-seed initialisation
  and minibatches), then its results written (``.npz``) and four comparable figures drawn with matplotlib
  (gradient norms per layer, training curves, forward signal and gradient ratio, final accuracy against
  sigma_w2; PNG, no theory curves). Cold: MNIST-1D generated; warm: read from the file an earlier run
  kept.
- **sequential PyTorch**: ``torch_baselines.sequential_loop`` (one network after another, as in
  ``bench_engine.py``), its results and the same figures; data warm. ``--sequential-variants K`` times K
  variants and extrapolates (marked).

PyTorch runs with 2 threads (``--threads``), as the engine uses 2 cores, and the faster OpenMP wait policy
on a 40-step probe (``--omp-wait-policy``; on a busy shared machine PyTorch's spinning threads, its
default, ran 12x slower than sleeping ones, on a quiet one 1.4x faster). Contenders alternate
within each repeat; the best of ``--repeats`` (at least 2) is kept and every run is printed. Ratios:
seconds of the PyTorch program / seconds of ``sweep run`` (above 1: sweep is faster), whole process and
training only (sweep: its ``training`` phase; PyTorch: initialisation, the SGD steps and the
measurements).

    python benchmarks/bench_user_path.py [--case small|medium|all] [--repeats 2] [--threads 2]
        [--omp-wait-policy ACTIVE|PASSIVE] [--sequential-variants K] [--no-sequential] [--json out.json]

Needs the bench extra (``pip install -e '.[bench]'``: PyTorch, CPU wheel).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from torch_baselines import Case, batched_program, emit, run_worker, sequential_loop, write_results

MNIST1D = {"data": "mnist1d", "n_train": 4000, "n_test": 1000, "every": 50, "sigma_w2_range": (1.0, 2.5)}
CASES = {
    "small": Case(width=32, depth=20, batch=32, n_sigma=16, n_seeds=8, steps=300, **MNIST1D),
    "medium": Case(width=128, depth=20, batch=128, n_sigma=8, n_seeds=4, steps=200, **MNIST1D),
}
# sweep run's speed-up targets (issue 16): over the batched program, the sequential loop, training only
TARGETS = {"small": {"batched": 1.5, "sequential": 8.0, "training": 1.0}, "medium": {"batched": 1.2}}
PHASES = re.compile(r"wall time ([\d.]+) s = (.*)")


# ------------------------------------------------------------------------------------- figures
def draw_figures(case: Case, measured: dict, folder: Path) -> list[Path]:
    """Four figures comparable to sweep's standard set for a sigma_w2 x seed grid, with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sigma = np.asarray(case.sigma_w2())
    steps = np.asarray(case.record_steps())

    def by_sigma(key: str) -> np.ndarray:  # [sigma, seed, ...] -> seed mean
        values = np.asarray(measured[key], np.float64)
        return values.reshape(case.n_sigma, case.n_seeds, *values.shape[1:]).mean(axis=1)

    grad, q = by_sigma("grad_norm"), by_sigma("q_layer")  # [sigma, record, layer], [sigma, layer]
    picked = np.unique(np.linspace(0, case.n_sigma - 1, 5).round().astype(int))
    colours = plt.cm.coolwarm(np.linspace(0, 1, len(picked)))
    layers = np.arange(1, grad.shape[-1] + 1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(fig, name: str) -> None:
        fig.savefig(folder / f"{name}.png", dpi=120)
        plt.close(fig)
        paths.append(folder / f"{name}.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained", sharey=True)
    for ax, record, when in ((axes[0], 0, "at initialisation"), (axes[1], -1, f"at step {steps[-1]}")):
        for i, colour in zip(picked, colours, strict=True):
            ax.semilogy(
                layers, grad[i, record], "o-", ms=3, color=colour, label=rf"$\sigma_w^2$ = {sigma[i]:.2f}"
            )
        ax.set(xlabel="layer l", title=f"weight-gradient norm {when}")
    axes[0].set_ylabel(r"$\|\partial L / \partial W^l\|$")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Gradient norms per layer: tanh, depth {case.depth}, width {case.width} (PyTorch)")
    save(fig, "gradient_norms")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for i, colour in zip(picked, colours, strict=True):
        label = rf"$\sigma_w^2$ = {sigma[i]:.2f}"
        axes[0].plot(steps, by_sigma("train_loss")[i], color=colour, label=label)
        axes[1].plot(steps, by_sigma("test_accuracy")[i], color=colour, label=label)
    axes[0].set(xlabel="step", ylabel="training loss", title="training loss (measurement subset)")
    axes[1].set(xlabel="step", ylabel="test accuracy", title="test accuracy")
    axes[1].axhline(1 / case.n_classes, color="grey", ls=":", label="chance")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Training curves: SGD, lr {case.learning_rate}, batch {case.batch} (PyTorch)")
    save(fig, "training_curves")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for i, colour in zip(picked, colours, strict=True):
        axes[0].semilogy(layers, q[i], "o-", ms=3, color=colour, label=rf"$\sigma_w^2$ = {sigma[i]:.2f}")
    axes[0].set(xlabel="layer l", ylabel=r"$q^l$", title=r"forward signal $q^l$ at initialisation")
    axes[0].legend(fontsize=8)
    ratio = np.exp(np.mean(np.log(grad[:, 0, 1:-2] / grad[:, 0, 2:-1]), axis=1))
    axes[1].semilogy(sigma, ratio, "o-", color="black", label="measured")
    axes[1].axhline(1.0, color="grey", ls=":")
    axes[1].set(xlabel=r"$\sigma_w^2$", ylabel=r"$g_l / g_{l+1}$", title="gradient change per layer")
    axes[1].legend(fontsize=8)
    fig.suptitle("Signal propagation at initialisation (PyTorch)")
    save(fig, "signal_propagation")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    final = np.asarray(measured["train_accuracy"], np.float64)[:, -1].reshape(case.n_sigma, case.n_seeds)
    axes[0].errorbar(sigma, final.mean(axis=1), yerr=final.std(axis=1), fmt="o-", color="black", ms=3)
    axes[0].set(xlabel=r"$\sigma_w^2$", ylabel="final training accuracy", title="what trains")
    axes[1].semilogy(sigma, grad[:, 0, 0] / grad[:, 0, -2], "o-", color="tab:red")
    axes[1].axhline(1.0, color="grey", ls=":")
    axes[1].set(xlabel=r"$\sigma_w^2$", ylabel=r"$g_1 / g_L$", title="first over last hidden layer")
    fig.suptitle("Vanishing and exploding gradients (PyTorch)")
    save(fig, "vanishing_exploding")
    return paths


# ------------------------------------------------------------------------------------- workers
def torch_worker(args: argparse.Namespace) -> None:
    """A PyTorch program, whole: train, write its results, draw its figures; emits its phases."""
    case, out = CASES[args.case], Path(args.out)
    if args.steps:  # a probe
        case = dataclasses.replace(case, steps=args.steps)
    cache = Path(args.data_cache) if args.data_cache else None
    if args.worker == "batched":
        measured = batched_program(case, args.threads, cache)
        train = measured["train_seconds"]
    else:
        n = args.sequential_variants or case.n_variants
        measured = sequential_loop(case, args.threads, n, cache=cache)
        train = measured["loop_seconds"]
        if n < case.n_variants:  # the figures need the whole grid: the timed variants, repeated
            for key in ("train_loss", "train_accuracy", "test_accuracy", "grad_norm", "q_layer"):
                measured[key] = [measured[key][i % n] for i in range(case.n_variants)]
    started = time.perf_counter()
    write_results(out / "results.npz", case, measured)
    written = time.perf_counter()
    figures = draw_figures(case, measured, out / "figures")
    done = time.perf_counter()
    emit(
        {
            "setup_seconds": measured["setup_seconds"],
            "train_seconds": train,
            "write_seconds": written - started,
            "figures_seconds": done - written,
            "figures": len(figures),
            "final_train_loss": measured["final_train_loss"],
            "diverged": measured["diverged"],
            "variants_timed": measured.get("variants_timed", case.n_variants),
        }
    )


def write_experiment(case: Case, path: Path) -> Path:
    """The case as an experiment file, as a user writes one."""
    import tomli_w

    path.write_text(f"# bench_user_path.py: {case}\n" + tomli_w.dumps(case.experiment()))
    return path


def sweep_run(experiment: Path, out: Path, cache: Path) -> dict:
    """``sweep run`` in a fresh process; its phases from the summary's wall-time line, training seconds
    and final losses from results.nc."""
    command = [str(Path(sys.executable).with_name("sweep")), "run", str(experiment), "--out", str(out)]
    env = dict(os.environ) | {"SWEEP_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    proc = subprocess.run([*command, "--force"], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    line = PHASES.search(proc.stdout)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(
            f"sweep run failed ({proc.returncode}):\n{proc.stderr[-3000:]}{proc.stdout[-2000:]}"
        )
    phases = {name: float(s) for name, s in (p.rsplit(" ", 1) for p in line.group(2).split(" + "))}
    return {"process_seconds": wall, "train_seconds": phases["training"], "phases": phases}


def torch_run(
    kind: str,
    case_name: str,
    out: Path,
    args: argparse.Namespace,
    cache: Path | None,
    k: int | None = None,
    steps: int | None = None,
) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--case", case_name]
    command += ["--out", str(out), "--threads", str(args.threads)]
    if cache is not None:
        command += ["--data-cache", str(cache)]
    if k:
        command += ["--sequential-variants", str(k)]
    if steps:
        command += ["--steps", str(steps)]
    env = dict(os.environ) | ({"OMP_WAIT_POLICY": args.omp_wait_policy} if args.omp_wait_policy else {})
    return run_worker(command, env, what=f"{kind} PyTorch")


def wait_policy(name: str, scratch: Path, args: argparse.Namespace) -> str:
    """The faster OMP_WAIT_POLICY for PyTorch's threads on 40 steps of the batched program, unless given.
    On a busy shared machine spinning threads (ACTIVE, libgomp's default) ran the small case 12x slower
    than sleeping ones (PASSIVE: 30 steps in 68 s against 3.3 s); on a quiet one ACTIVE was 1.4x faster."""
    if args.omp_wait_policy:
        return args.omp_wait_policy
    seconds = {}
    for policy in ("ACTIVE", "PASSIVE"):
        probe = argparse.Namespace(**{**vars(args), "omp_wait_policy": policy})
        run = torch_run("batched", name, scratch / "probe", probe, scratch / "torch-data", steps=40)
        seconds[policy] = run["train_seconds"]
    chosen = min(seconds, key=seconds.get)
    tried = ", ".join(f"{policy} {s:.2f} s" for policy, s in seconds.items())
    print(f"   PyTorch OpenMP wait policy, 40-step probe: {tried} -> {chosen}", flush=True)
    return chosen


# ------------------------------------------------------------------------------------- driver
def bench_case(name: str, args: argparse.Namespace) -> dict:
    case = CASES[name]
    print(
        f"\n== {name}: width {case.width}, depth {case.depth}, batch {case.batch}, {case.n_variants} "
        f"variants ({case.n_sigma} sigma_w2 in {case.sigma_w2_range} x {case.n_seeds} seeds), "
        f"{case.steps} steps, MNIST-1D, measured at {len(case.record_steps())} steps",
        flush=True,
    )
    runs: dict[str, list[dict]] = {}
    k = min(args.sequential_variants or case.n_variants, case.n_variants)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        experiment = write_experiment(case, scratch / f"user_path_{name}.toml")
        warm_cache, warm_data = scratch / "sweep-cache", scratch / "torch-data"
        sweep_run(experiment, scratch / "fill", warm_cache)  # fills the warm caches (untimed)
        torch_run("batched", name, scratch / "fill-torch", args, warm_data, steps=1)
        torch_args = argparse.Namespace(**{**vars(args), "omp_wait_policy": wait_policy(name, scratch, args)})

        def timed(label: str, result: dict) -> None:
            runs.setdefault(label, []).append(result)
            print(f"   {label:28s} {result['process_seconds']:7.1f} s", flush=True)

        for repeat in range(args.repeats):
            cold = scratch / f"cold-{repeat}"
            timed("sweep run, cold", sweep_run(experiment, scratch / "sweep", cold))
            shutil.rmtree(cold, ignore_errors=True)
            timed("sweep run, warm", sweep_run(experiment, scratch / "sweep", warm_cache))
            fresh = scratch / f"torch-cold-{repeat}"
            timed("batched PyTorch, cold", torch_run("batched", name, scratch / "bt", torch_args, fresh))
            timed("batched PyTorch, warm", torch_run("batched", name, scratch / "bt", torch_args, warm_data))
            if not args.no_sequential:
                result = torch_run("sequential", name, scratch / "seq", torch_args, warm_data, k)
                if k < case.n_variants:  # start-up once, the loop V/K times
                    scale = case.n_variants / k
                    result["process_seconds"] += result["train_seconds"] * (scale - 1)
                    result["train_seconds"] *= scale
                timed("sequential PyTorch" + (f" (from {k})" if k < case.n_variants else ""), result)
    return summarise(name, runs)


def summarise(name: str, runs: dict[str, list[dict]]) -> dict:
    best = {label: min(rs, key=lambda r: r["process_seconds"]) for label, rs in runs.items()}
    print(
        f"   {'best of ' + str(len(runs['sweep run, cold'])):28s} {'whole s':>8s} {'training s':>11s}   runs"
    )
    for label, r in best.items():
        all_runs = ", ".join(f"{x['process_seconds']:.1f}" for x in runs[label])
        print(f"   {label:28s} {r['process_seconds']:8.1f} {r['train_seconds']:11.1f}   {all_runs}")
    for label in ("sweep run, cold", "sweep run, warm"):
        phases = best[label]["phases"]
        print(f"   {label} phases: " + ", ".join(f"{p} {s:.1f}" for p, s in phases.items()))
    summary: dict = {"case": name, "runs": runs}
    targets = TARGETS[name]
    for state in ("cold", "warm"):
        engine = best[f"sweep run, {state}"]
        pairs = [("batched", f"batched PyTorch, {state}")]
        pairs += [("sequential", label) for label in best if label.startswith("sequential")]
        for kind, label in pairs:
            whole = best[label]["process_seconds"] / engine["process_seconds"]
            training = best[label]["train_seconds"] / engine["train_seconds"]
            summary[f"{kind}_{state}_whole"], summary[f"{kind}_{state}_training"] = whole, training
            target = targets.get(kind)
            verdict = f" (target >= {target}x: {'ok' if whole >= target else 'MISSED'})" if target else ""
            train_target = targets.get("training") if kind == "batched" else None
            train_verdict = (
                f" (target >= {train_target}x: {'ok' if training >= train_target else 'MISSED'})"
                if train_target
                else ""
            )
            print(
                f"   RATIO {label} / sweep run, {state}: whole process {whole:.2f}x{verdict}; "
                f"training only {training:.2f}x{train_verdict}"
            )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each (best kept; >= 2)")
    parser.add_argument(
        "--threads", type=int, default=2, help="PyTorch threads (default 2: the engine's cores)"
    )
    parser.add_argument("--sequential-variants", type=int, default=None, help="time K variants, extrapolate")
    parser.add_argument("--no-sequential", action="store_true", help="leave the sequential loop out")
    parser.add_argument("--json", type=Path, default=None, help="also write the summaries here")
    parser.add_argument("--worker", choices=["batched", "sequential"], help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-cache", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--omp-wait-policy",
        choices=["ACTIVE", "PASSIVE"],
        default=None,
        help="for PyTorch's OpenMP threads (default: the faster on a 40-step probe)",
    )
    args = parser.parse_args()
    if args.worker:
        torch_worker(args)
        return
    import importlib.util
    import platform

    if importlib.util.find_spec("torch") is None:
        sys.exit("PyTorch is not installed: pip install -e '.[bench]'")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, PyTorch threads {args.threads}, load average {os.getloadavg()[0]:.1f}"
    )
    names = list(CASES) if args.case == "all" else [args.case]
    summaries = [bench_case(name, args) for name in names]
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2))


if __name__ == "__main__":
    main()
