"""Per-step training cost by architecture: residual and normalised networks against the MLP.

Five networks of the same width and depth (``model.depth``: hidden layers of the MLP, blocks of the
residual network) on the same problem (tanh, Gaussian-mixture data with 40 inputs and 10 classes, SGD,
``--variants`` values of sigma_w2 in [1, 2]):

- ``mlp``: ``model.arch = "mlp"``, the engine's hand-written hidden layer (``sweep.nets.mlp_layer``);
- ``resnet reduced`` / ``resnet full``: ``model.arch = "resnet"`` with ``model.branch = "reduced"``
  (``x + phi(W x + b)``) or ``"full"`` (``x + W2 phi(W1 x + b1) + b2``), plain ``jax.grad``;
- ``mlp + layer norm`` / ``mlp + batch norm``: ``model.norm = "layer"`` / ``"batch"`` on every
  pre-activation of layers 1..L (``sweep.nets.normalisation``).

Each network's group goes through the engine's own path (``experiment_from_dict``, ``grid.groups``,
``GroupSpec.from_config``, ``compile_group`` and ``run_chunk`` of ``sweep.runner.train``: one chunk of
all variants, in the passes the engine chooses), compiled first, run once untimed; then only the
compiled program's run is timed, the five networks alternating within each of ``--repeats`` rounds.
``measure.every`` is the number of steps: the program records at step 0 and at the last step only (plus
the forward signal at initialisation), so training dominates its run time; the time per step below is
that run time over ``--steps`` (the records add a few step-equivalents to every network alike).

Printed per network: the best seconds per step and per variant-step; its time relative to the MLP's in
the same round (each round, then median and range); and the ratio expected from the matrix products
alone, ``weights(net) / weights(mlp)`` (weight-matrix entries, ``sweep.nets.forward.sizes``: training
FLOPs are ``6 B weights`` per variant-step). At depth L the MLP has L-1 hidden N x N matrices, a reduced
residual network L and a full one 2L, so: reduced ~1.05x, full ~2.1x, normalised MLPs 1x plus their
elementwise work (means, variances, normalisation and its backward pass at every layer).

    python benchmarks/bench_architectures.py [--repeats 3] [--variants 32] [--steps 50] [--width 128]
        [--depth 20] [--batch 128] [--small] [--json out.json]

``--small`` adds the width-32, batch-32 case (same depth, variants and steps) as a second table.

Measured on a shared 2-core CPU (2 XLA CPU devices), defaults (3 rounds, 32 variants, 50 steps): width
128 on a quiet machine (load average 0.9-1.5), width 32 (``--small``) under load 1.5-3; time relative to
the MLP's in the same round, median (range), against the matmul-only expectation:

    network            w128 b128 ms/step  ratio              w32 b32 ms/step  ratio              matmuls
    mlp                28.9               1                  3.5              1                  1
    resnet reduced     35.8               1.24 (1.23-1.27)   5.3              1.62 (1.52-1.67)   1.05
    resnet full        63.7               2.24 (2.20-2.30)   8.5              2.43 (2.39-2.49)   2.08 / 2.02
    mlp + layer norm   38.1               1.34 (1.31-1.38)   7.4              2.12 (2.11-2.13)   1
    mlp + batch norm   38.1               1.33 (1.31-1.38)   6.6              1.92 (1.88-1.96)   1

(k = 1 variant per CPU pass for all five at width 128; 16, 16, 8, 16, 16 at width 32.) The residual
networks cost their extra products plus 8-18% at width 128 (plain ``jax.grad`` blocks against the MLP's
hand-written layer, and the stream's addition); the normalised MLPs 1.33x, their elementwise work.
Before passes of one variant became a plain ``lax.map`` (``sweep.runner.passes``) the normalised MLPs
cost 2.15-2.43x at width 128: XLA's CPU reductions were ~5x slower on a leading axis of size 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from sweep.config import experiment_from_dict
from sweep.config.grid import groups
from sweep.data import load_dataset
from sweep.nets.forward import sizes
from sweep.runner.devices import use_every_cpu_core
from sweep.runner.passes import one_layer_bytes, variants_per_pass
from sweep.runner.train import GroupSpec, compile_group, run_chunk, train_data

NETWORKS = {
    "mlp": {"arch": "mlp"},
    "resnet reduced": {"arch": "resnet", "branch": "reduced"},
    "resnet full": {"arch": "resnet", "branch": "full"},
    "mlp + layer norm": {"arch": "mlp", "norm": "layer"},
    "mlp + batch norm": {"arch": "mlp", "norm": "batch"},
}


def experiment(model: dict, width: int, depth: int, batch: int, variants: int, steps: int) -> dict:
    """The experiment mapping (what ``sweep run`` reads from TOML) of one network's group."""
    return {
        "model": {
            **model,
            "activation": "tanh",
            "width": width,
            "depth": depth,
            "sigma_w2": [float(v) for v in np.linspace(1.0, 2.0, variants)],
            "sigma_b2": 0.05,
        },
        "data": {
            "name": "gaussian_mixture",
            "n_train": 4096,
            "n_test": 256,
            "input_dim": 40,
            "n_classes": 10,
        },
        "train": {"optimizer": "sgd", "learning_rate": 0.01, "steps": steps, "batch_size": batch},
        "measure": {"every": steps, "n_eval": 256},
    }


class Prepared:
    """One network's compiled program, its inputs and its matmul size."""

    def __init__(self, name: str, raw: dict):
        exp = experiment_from_dict(raw, name)
        (group,) = groups(exp)
        dataset = load_dataset(exp.base.data, exp.source)
        self.name = name
        self.spec = GroupSpec.from_config(group.static, dataset)
        self.data = train_data(dataset, exp.base.measure.n_eval)
        self.hyper = group.dynamic()
        self.n_variants = len(group.variants)
        self.compiled, _ = compile_group(self.spec, self.n_variants, self.data)
        self.compile_seconds = self.compiled.compile_seconds
        self.weights = sizes(self.spec.model).weights
        devices = jax.local_device_count()
        per_device = self.compiled.chunk_size // devices
        layer_bytes = one_layer_bytes(self.spec.model, self.spec.batch_size)
        self.per_pass = variants_per_pass(layer_bytes, per_device, jax.local_devices()[0].platform)
        self.diverged = 0

    def run(self) -> float:
        """Seconds of one run of the compiled program (inputs in, numpy results out)."""
        start = time.perf_counter()
        out = run_chunk(self.compiled, self.hyper, self.data)
        seconds = time.perf_counter() - start
        self.diverged = int(np.sum(out["diverged"]))
        return seconds


def bench(args: argparse.Namespace, width: int, batch: int) -> dict:
    print(
        f"\n== width {width}, depth {args.depth}, batch {batch}, {args.variants} variants, "
        f"{args.steps} steps (records at step 0 and step {args.steps} only)",
        flush=True,
    )
    nets = {}
    for name, model in NETWORKS.items():
        raw = experiment(model, width, args.depth, batch, args.variants, args.steps)
        nets[name] = Prepared(name, raw)
        print(f"   compiled {name}: {nets[name].compile_seconds:.1f} s", flush=True)
    for net in nets.values():  # one untimed run each: first-touch allocations, thread start-up
        net.run()
    times: dict[str, list[float]] = {name: [] for name in nets}
    for round_ in range(args.repeats):
        for name, net in nets.items():
            times[name].append(net.run())
        line = ", ".join(f"{name} {t[-1]:.2f} s" for name, t in times.items())
        print(f"   round {round_ + 1}: {line}", flush=True)
    mlp = nets["mlp"]
    rows = []
    header = (
        f"   {'network':18s}{'ms/step':>9s}{'us/var-step':>13s}{'ratio per round':>26s}"
        f"{'median':>8s}{'range':>13s}{'matmuls':>9s}{'k/pass':>8s}{'div':>5s}"
    )
    print(header)
    for name, net in nets.items():
        best = min(times[name])
        ratios = [t / m for t, m in zip(times[name], times["mlp"], strict=True)]
        expected = net.weights / mlp.weights
        row = {
            "network": name,
            "seconds_per_step": best / args.steps,
            "seconds_per_variant_step": best / args.steps / net.n_variants,
            "ratios": ratios,
            "median_ratio": statistics.median(ratios),
            "min_ratio": min(ratios),
            "max_ratio": max(ratios),
            "expected_ratio": expected,
            "variants_per_pass": net.per_pass,
            "compile_seconds": net.compile_seconds,
            "diverged": net.diverged,
            "run_seconds": times[name],
        }
        rows.append(row)
        per_round = " ".join(f"{r:.2f}" for r in ratios)
        print(
            f"   {name:18s}{1e3 * row['seconds_per_step']:9.1f}{1e6 * row['seconds_per_variant_step']:13.0f}"
            f"{per_round:>26s}{row['median_ratio']:8.2f}{f'{min(ratios):.2f}-{max(ratios):.2f}':>13s}"
            f"{expected:9.2f}{net.per_pass:8d}{net.diverged:5d}",
            flush=True,
        )
    return {"width": width, "depth": args.depth, "batch": batch, "steps": args.steps, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (the five networks alternate)")
    parser.add_argument("--variants", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--small", action="store_true", help="also width 32, batch 32 (a second table)")
    parser.add_argument("--json", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    use_every_cpu_core()  # as sweep.runner.engine.run does, before JAX starts
    print(
        f"{platform.processor() or platform.machine()}, {len(jax.local_devices())} {jax.default_backend()} "
        f"device(s), load average {os.getloadavg()[0]:.1f}"
    )
    cases = [(args.width, args.batch)] + ([(32, 32)] if args.small else [])
    tables = [bench(args, width, batch) for width, batch in cases]
    if args.json:
        args.json.write_text(json.dumps(tables, indent=2))


if __name__ == "__main__":
    main()
