"""What the benchmarks share: the problem (``Case``), fresh-process workers, the data in plain NumPy, and
the PyTorch programs a user would write instead of sweep.

- ``sequential_loop``: one ``nn.Sequential`` per variant, trained one after another (what
  ``bench_engine.py`` and ``bench_user_path.py`` call "the PyTorch loop").
- ``batched_program``: what a PyTorch expert writes: every variant in one program, stacked weights
  ``[V, fan_in, fan_out]``, ``torch.baddbmm`` forward, autograd backward, the same SGD.

Both use the engine's parameterisation (``W ~ N(0, sigma_w2 / fan_in)``, ``b ~ N(0, sigma_b2)``) with its
common random numbers (a variant's unit weight draws and its minibatch order depend only on its seed,
so variants that differ only in sigma_w2 share them), train on the same data with the same SGD, batch
and steps, and measure at the same recorded steps: loss and accuracy on the first ``n_eval`` training
rows, test accuracy, every layer's weight-gradient norm, and at step 0 the forward signal q^l. Their
random streams are PyTorch's, not JAX's, so their numbers agree with the engine's in distribution only.
This module imports neither JAX nor sweep (the PyTorch workers' timings hold no JAX start-up).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MARK = "@@BENCH@@ "  # a worker's result line on stdout


@dataclass(frozen=True)
class Case:
    width: int
    depth: int  # hidden layers L: L+1 weight matrices (input, L-1 hidden, readout)
    batch: int
    n_sigma: int
    n_seeds: int
    steps: int
    data: str = "gaussian_mixture"  # or "mnist1d" (40 inputs, 10 classes)
    input_dim: int = 40
    n_classes: int = 10
    n_train: int = 4096
    n_test: int = 512
    n_eval: int = 256
    every: int = 0  # record every k steps (0: only step 0 and the last step)
    learning_rate: float = 0.01
    sigma_b2: float = 0.05
    sigma_w2_range: tuple[float, float] = (0.5, 4.0)
    speedup_target: float = 1.0

    @property
    def n_variants(self) -> int:
        return self.n_sigma * self.n_seeds

    def sigma_w2(self) -> list[float]:
        lo, hi = self.sigma_w2_range
        return [lo + (hi - lo) * i / (self.n_sigma - 1) for i in range(self.n_sigma)]

    def variants(self) -> list[tuple[float, int]]:
        """(sigma_w2, seed) in the engine's grid order: sigma_w2 slowest."""
        return [(s, seed) for s in self.sigma_w2() for seed in range(self.n_seeds)]

    def record_steps(self) -> list[int]:
        """The steps measured, as the engine records them: every ``every``, step 0 and the last step."""
        every = self.every or self.steps
        return sorted(set(range(0, self.steps + 1, every)) | {self.steps})

    def layer_dims(self) -> list[tuple[int, int]]:
        dims = [self.input_dim] + [self.width] * self.depth + [self.n_classes]
        return list(itertools.pairwise(dims))

    def flops_per_variant_step(self) -> int:
        """Forward + backward matmul FLOPs: 2 (forward) + 4 (two backward products) per multiply-add."""
        return 6 * self.batch * sum(fan_in * fan_out for fan_in, fan_out in self.layer_dims())

    def total_flops(self) -> int:
        return self.flops_per_variant_step() * self.n_variants * self.steps

    def experiment(self) -> dict:
        """The engine's experiment mapping (what ``sweep run`` reads from TOML)."""
        data: dict = {"name": self.data, "n_train": self.n_train, "n_test": self.n_test}
        if self.data == "gaussian_mixture":
            data |= {"input_dim": self.input_dim, "n_classes": self.n_classes}
        return {
            "model": {
                "activation": "tanh",
                "width": self.width,
                "depth": self.depth,
                "sigma_w2": self.sigma_w2(),
                "sigma_b2": self.sigma_b2,
            },
            "data": data,
            "train": {
                "optimizer": "sgd",
                "learning_rate": self.learning_rate,
                "steps": self.steps,
                "batch_size": self.batch,
                "seed": list(range(self.n_seeds)),
            },
            "measure": {"every": self.every or self.steps, "n_eval": self.n_eval},
        }


def cores() -> int:
    """Cores this process may run on (sweep.runner.devices.cpu_cores, without importing JAX)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def emit(result: dict) -> None:
    print(MARK + json.dumps(result), flush=True)


def run_worker(command: list[str], env: dict[str, str] | None = None, what: str = "worker") -> dict:
    """Run ``command`` (a worker that ``emit``s one result) in a fresh process: its result plus the whole
    process's wall-clock seconds (``process_seconds``)."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK) :]) | {"process_seconds": wall}


# ------------------------------------------------------------------------------------------- data
def _standardise(x, n_train: int):
    """sweep.data.files.standardise: one mean and one standard deviation over all training entries."""
    import numpy as np

    train = x[:n_train].astype(np.float64)
    mean, std = train.mean(), train.std()
    return ((x - np.float32(mean)) * np.float32(1.0 / std)).astype(np.float32)


def gaussian_mixture(case: Case):
    """The engine's ``gaussian_mixture`` data (same generator, seed and standardisation) in plain NumPy."""
    import numpy as np

    n = case.n_train + case.n_test
    rng = np.random.default_rng(20170101)
    means = rng.normal(0.0, np.sqrt(0.5), size=(case.n_classes, case.input_dim))
    y = rng.integers(0, case.n_classes, size=n)
    x = (means[y] + rng.normal(size=(n, case.input_dim))).astype(np.float32)
    return x, y.astype(np.int64)


def mnist1d(case: Case, cache: Path | None):
    """MNIST-1D as the engine makes it (the ``mnist1d`` generator's defaults, all samples in one split,
    the first ``n_train`` rows for training), kept in ``cache`` (a folder) once generated, as a PyTorch
    user would keep it (a pickle, like ``mnist1d.data.get_dataset``); None: generated every time."""
    import numpy as np

    n = -(-(case.n_train + case.n_test) // 10) * 10
    path = cache / f"mnist1d-n{n}.pkl" if cache is not None else None
    if path is not None and path.exists():
        with path.open("rb") as handle:
            x, y = pickle.load(handle)
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.train_split = n, 1.0
        raw = make_dataset(args)
        x, y = raw["x"].astype(np.float32), raw["y"].astype(np.int64)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as handle:
                pickle.dump((x, y), handle)
    return x, y


def dataset(case: Case, cache: Path | None = None):
    """(x_train, y_train, x_test, y_test) as NumPy arrays, standardised with the training statistics."""
    x, y = mnist1d(case, cache) if case.data == "mnist1d" else gaussian_mixture(case)
    n = case.n_train + case.n_test
    x = _standardise(x[:n], case.n_train)
    return x[: case.n_train], y[: case.n_train], x[case.n_train : n], y[case.n_train : n]


# ------------------------------------------------------------------------------------- sequential
def sequential_loop(
    case: Case, threads: int, n_variants: int, steps: int | None = None, cache: Path | None = None
) -> dict:
    """The sequential PyTorch script: one network after another. Returns the timings (``setup_seconds``:
    imports and data; ``loop_seconds``; ``variant_seconds``) and the measurements as nested lists:
    ``train_loss``, ``train_accuracy``, ``test_accuracy`` [variant, record], ``grad_norm`` [variant,
    record, layer], ``q_layer`` [variant, layer] (at step 0)."""
    start = time.perf_counter()
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.set_num_threads(threads)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in dataset(case, cache))
    x_eval, y_eval = x_train[: case.n_eval], y_train[: case.n_eval]
    steps = steps or case.steps
    record = set(Case(**{**case.__dict__, "steps": steps}).record_steps())

    def network(sigma_w2: float) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(case.layer_dims()):
            linear = nn.Linear(fan_in, fan_out)
            with torch.no_grad():
                linear.weight.normal_(0.0, math.sqrt(sigma_w2 / fan_in))
                linear.bias.normal_(0.0, math.sqrt(case.sigma_b2))
            layers.append(linear)
            if i < case.depth:
                layers.append(nn.Tanh())
        return nn.Sequential(*layers)

    def measure(model: nn.Sequential) -> tuple[float, float, float, list[float]]:
        """Loss and accuracy on the measurement subset, per-layer gradient norms, test accuracy."""
        model.zero_grad(set_to_none=True)
        logits = model(x_eval)
        loss = F.cross_entropy(logits, y_eval)
        loss.backward()
        norms = [m.weight.grad.norm().item() for m in model if isinstance(m, nn.Linear)]
        accuracy = (logits.argmax(-1) == y_eval).float().mean().item()
        with torch.no_grad():
            test = (model(x_test).argmax(-1) == y_test).float().mean().item()
        model.zero_grad(set_to_none=True)
        return loss.item(), accuracy, test, norms

    def signal(model: nn.Sequential) -> list[float]:
        """q^l: the mean square pre-activation of every layer at the measurement subset."""
        q, h = [], x_eval
        with torch.no_grad():
            for module in model:
                h = module(h)
                if isinstance(module, nn.Linear):
                    q.append(h.pow(2).mean().item())
        return q

    setup = time.perf_counter()
    out: dict[str, list] = {k: [] for k in ("train_loss", "train_accuracy", "test_accuracy", "grad_norm")}
    out["q_layer"], variant_seconds, diverged = [], [], 0
    for sigma_w2, seed in case.variants()[:n_variants]:
        began = time.perf_counter()
        torch.manual_seed(seed)
        model = network(sigma_w2)
        optimizer = torch.optim.SGD(model.parameters(), lr=case.learning_rate)
        batches = torch.Generator().manual_seed(seed)
        out["q_layer"].append(signal(model))
        rows = {k: [] for k in ("train_loss", "train_accuracy", "test_accuracy", "grad_norm")}

        def keep(model: nn.Sequential, rows: dict = rows) -> None:
            for key, value in zip(rows, measure(model), strict=True):
                rows[key].append(value)

        keep(model)
        for step in range(1, steps + 1):
            index = torch.randint(0, case.n_train, (case.batch,), generator=batches)
            loss = F.cross_entropy(model(x_train[index]), y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step in record:
                keep(model)
        diverged += not math.isfinite(rows["train_loss"][-1])
        for key, values in rows.items():
            out[key].append(values)
        variant_seconds.append(time.perf_counter() - began)
    done = time.perf_counter()
    return out | {
        "setup_seconds": setup - start,
        "loop_seconds": done - setup,
        "variants_timed": n_variants,
        "steps": steps,
        "variant_seconds": variant_seconds,
        "final_train_loss": [rows[-1] for rows in out["train_loss"]],
        "diverged": diverged,
        "threads": threads,
    }


# ---------------------------------------------------------------------------------------- batched
def batched_program(case: Case, threads: int, cache: Path | None = None) -> dict:
    """Every variant at once, as a PyTorch expert writes it: weights ``[V, fan_in, fan_out]`` and biases
    ``[V, 1, fan_out]``, ``torch.baddbmm`` forward over ``[V, B, fan_in]`` activations, one autograd
    backward of the variants' summed mean losses (each variant's gradient is its own), plain SGD in
    place. Initialisation and minibatches per seed, as in ``sequential_loop``. Returns the timings
    (``setup_seconds``: imports and data; ``train_seconds``: initialisation, training and the
    measurements at recorded steps) and the measurements as in ``sequential_loop``."""
    start = time.perf_counter()
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(threads)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in dataset(case, cache))
    x_eval, y_eval = x_train[: case.n_eval], y_train[: case.n_eval]
    setup = time.perf_counter()

    v, steps, record = case.n_variants, case.steps, set(case.record_steps())
    sigma_w2 = torch.tensor([s for s, _ in case.variants()])
    seeds = [seed for _, seed in case.variants()]
    generators = {seed: torch.Generator().manual_seed(seed) for seed in range(case.n_seeds)}
    weights, biases = [], []
    for fan_in, fan_out in case.layer_dims():  # unit draws per seed, shared by its sigma_w2 values
        unit_w = {s: torch.randn(fan_in, fan_out, generator=g) for s, g in generators.items()}
        unit_b = {s: torch.randn(1, fan_out, generator=g) for s, g in generators.items()}
        w = torch.stack([unit_w[s] for s in seeds]) * (sigma_w2 / fan_in).sqrt()[:, None, None]
        b = torch.stack([unit_b[s] for s in seeds]) * math.sqrt(case.sigma_b2)
        weights.append(w.requires_grad_())
        biases.append(b.requires_grad_())
    params = [p for pair in zip(weights, biases, strict=True) for p in pair]
    batches = {s: torch.Generator().manual_seed(s) for s in range(case.n_seeds)}  # as sequential_loop's
    per_seed = [
        torch.randint(0, case.n_train, (steps, case.batch), generator=batches[s]) for s in range(case.n_seeds)
    ]
    index = torch.stack([per_seed[s] for s in seeds], dim=1)  # [steps, V, B]

    def forward(x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        h = x
        for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if keep is not None:
                keep.append(h.detach().pow(2).mean(dim=(1, 2)))
            if layer < case.depth:
                h = torch.tanh(h)
        return h

    def loss_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over variants of each variant's mean cross-entropy: ``[V, B, C]`` logits, ``[V, B]`` labels."""
        per_row = F.cross_entropy(logits.reshape(-1, case.n_classes), y.reshape(-1), reduction="none")
        return per_row.reshape(v, -1).mean(dim=1)

    out: dict[str, list] = {k: [] for k in ("train_loss", "train_accuracy", "test_accuracy", "grad_norm")}
    evals = x_eval.expand(v, -1, -1)
    tests = x_test.expand(v, -1, -1)

    def measure() -> None:
        logits = forward(evals)
        losses = loss_of(logits, y_eval.expand(v, -1))
        grads = torch.autograd.grad(losses.sum(), weights)
        with torch.no_grad():
            out["train_loss"].append(losses.detach())
            out["train_accuracy"].append((logits.argmax(-1) == y_eval).float().mean(dim=1))
            out["test_accuracy"].append((forward(tests).argmax(-1) == y_test).float().mean(dim=1))
            out["grad_norm"].append(torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1))

    began = time.perf_counter()
    signal: list = []
    with torch.no_grad():
        forward(evals, keep=signal)
    measure()
    lr = case.learning_rate
    for step in range(1, steps + 1):
        rows = index[step - 1]
        loss = loss_of(forward(x_train[rows]), y_train[rows]).sum()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(g, alpha=lr)
        if step in record:
            measure()
    trained = time.perf_counter()
    result = {key: torch.stack(values, dim=1).tolist() for key, values in out.items()}  # [V, record, ...]
    result["q_layer"] = torch.stack(signal, dim=1).tolist()
    final = torch.tensor(result["train_loss"])[:, -1]
    return result | {
        "setup_seconds": setup - start,
        "train_seconds": trained - began,
        "final_train_loss": final.tolist(),
        "diverged": int((~torch.isfinite(final)).sum()),
        "threads": threads,
    }


def write_results(path: Path, case: Case, measured: dict) -> None:
    """The measurements as a NumPy archive (what a PyTorch user keeps of a run)."""
    import numpy as np

    arrays = {
        key: np.asarray(measured[key], np.float32)
        for key in ("train_loss", "train_accuracy", "test_accuracy", "grad_norm", "q_layer")
    }
    arrays |= {
        "sigma_w2": np.asarray(case.sigma_w2()),
        "seed": np.arange(case.n_seeds),
        "step": np.asarray(case.record_steps()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


if __name__ == "__main__":
    sys.exit("a module of the benchmarks (bench_engine.py, bench_user_path.py), not a script")
