"""From an experiment to results: groups -> chunks -> compiled programs -> one Dataset.

``run`` is the whole pipeline behind ``sweep run``. Every input is validated (config, dataset, output
directory) before anything is written. With an output directory, every finished chunk is saved at once,
so an interrupted run loses at most the chunk in flight and ``resume=True`` recomputes only what is
missing. Common random numbers: a variant's draws depend only on its seed (see ``sweep.models``), never
on its chunk, so chunking, resuming and sharding do not change its numbers.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import xarray as xr

from sweep import memory, store
from sweep.config import ConfigError, Experiment, experiment_from_dict, load_experiment
from sweep.data import load_dataset
from sweep.grid import Group, groups
from sweep.results import assemble
from sweep.train import GroupSpec, compile_group, run_chunk, train_data


@dataclass
class Timing:
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    variant_steps: int = 0
    per_group: list[dict[str, Any]] = field(default_factory=list)

    @property
    def variant_steps_per_second(self) -> float:
        return self.variant_steps / self.run_seconds if self.run_seconds else 0.0


def as_experiment(source: str | Path | Experiment | dict, overrides: tuple[str, ...] = ()) -> Experiment:
    """An Experiment from a TOML path, a parsed mapping, or an Experiment (overrides applied)."""
    if isinstance(source, Experiment):
        if overrides:
            raise ValueError("overrides apply to experiment files or mappings, not to an Experiment")
        return source
    if isinstance(source, dict):
        return experiment_from_dict(source, "<config>", overrides)
    return load_experiment(source, overrides)


def check_output_dir(out: Path, force: bool, resume: bool, experiment: Experiment) -> None:
    """Refuse to overwrite a run unless asked; refuse to resume a different experiment."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if not store.holds_results(out):
        return
    if resume:
        manifest = store.read_manifest(out)
        if manifest is None or manifest["fingerprint"] != experiment.fingerprint():
            raise ConfigError(
                f"--resume {out}: the directory holds a different experiment than {experiment.source} "
                "(compare its config.toml); use a new --out or --force to start over"
            )
    elif not force:
        raise ConfigError(
            f"--out {out}: already holds results; pass --force to overwrite or --resume to continue"
        )


def run(
    source: str | Path | Experiment | dict,
    out: str | Path | None = None,
    overrides: tuple[str, ...] = (),
    *,
    force: bool = False,
    resume: bool = False,
    chunk_size: int | None = None,
    memory_budget_gb: float | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> xr.Dataset:
    """Train every variant of an experiment and return the results Dataset (see ``sweep.results``).

    With ``out``, chunks, ``config.toml`` and ``results.nc`` are written there. ``log`` receives one-line
    messages once the inputs are valid (devices used, the plan).
    """
    experiment = as_experiment(source, tuple(overrides))
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        check_output_dir(out_dir, force, resume, experiment)
    dataset = load_dataset(experiment.base.data, experiment.source)
    plan = groups(experiment)
    for group in plan:  # every group must be able to use the dataset (it is shared)
        if group.static.data != experiment.base.data:
            raise ConfigError(f"{experiment.source}: data: sweeping data fields is not supported")
    budget = int(memory_budget_gb * 2**30) if memory_budget_gb else memory.default_budget_bytes()
    n_eval, n_test = experiment.base.measure.n_eval, experiment.base.data.n_test
    specs = [GroupSpec.from_config(g.static, dataset) for g in plan]
    sizes = [
        _chunk_size(spec, len(g.variants), n_eval, n_test, budget, chunk_size)
        for spec, g in zip(specs, plan, strict=True)
    ]
    if out_dir is not None:
        if resume and store.holds_results(out_dir):
            saved = (store.read_manifest(out_dir) or {}).get("chunk_sizes", {})
            sizes = [saved.get(g.key, n) for g, n in zip(plan, sizes, strict=True)]  # keep the old chunking
        else:
            if force:
                shutil.rmtree(out_dir / store.CHUNKS, ignore_errors=True)
                (out_dir / store.RESULTS).unlink(missing_ok=True)
            store.start_run(out_dir, experiment, {g.key: n for g, n in zip(plan, sizes, strict=True)})
    devices = jax.devices()
    log(
        f"{len(devices)} device(s) used ({devices[0].platform}: {devices[0].device_kind}); "
        f"{experiment.n_variants} variants in {len(plan)} group(s)"
    )
    data = train_data(dataset, n_eval)
    timing = Timing()
    parts = []
    with _progress(progress, experiment.n_variants) as advance:
        for spec, group, size in zip(specs, plan, sizes, strict=True):
            parts.extend(_run_group(spec, group, size, data, out_dir, timing, advance))
    attrs = run_attributes(experiment, timing) | {"n_classes": dataset.n_classes}
    results = assemble(experiment, parts, attrs)
    if out_dir is not None:
        store.write_results(out_dir, results)
    return results


def _chunk_size(spec: GroupSpec, n: int, n_eval: int, n_test: int, budget: int, fixed: int | None) -> int:
    devices = jax.device_count()
    if fixed:
        return -(-min(fixed, n) // devices) * devices
    return memory.chunk_size(spec, n, n_eval, n_test, budget)


def _run_group(spec, group: Group, size: int, data, out_dir, timing: Timing, advance) -> list:
    hyper = group.dynamic()
    grid_index = np.asarray([v.index for v in group.variants], np.int64).reshape(len(group.variants), -1)
    steps = spec.record_steps
    parts, compiled, group_run, n_computed = [], None, 0.0, 0
    for i, start in enumerate(range(0, len(group.variants), size)):
        chunk = slice(start, start + size)
        path = store.chunk_path(out_dir, group.key, i) if out_dir is not None else None
        if path is not None and path.exists():
            saved_index, outputs = store.read_chunk(path)
            parts.append((saved_index, outputs, steps))
            advance(len(saved_index))
            continue
        if compiled is None:
            compiled = compile_group(spec, size, data)
            timing.compile_seconds += compiled.compile_seconds
        started = time.perf_counter()
        outputs = run_chunk(compiled, {k: v[chunk] for k, v in hyper.items()}, data)
        group_run += time.perf_counter() - started
        n_computed += len(grid_index[chunk])
        if path is not None:
            store.write_chunk(path, grid_index[chunk], outputs)
        parts.append((grid_index[chunk], outputs, steps))
        advance(len(grid_index[chunk]))
    timing.run_seconds += group_run
    timing.variant_steps += n_computed * spec.steps
    timing.per_group.append(
        {
            "group": group.key,
            "variants": len(group.variants),
            "chunk_size": size,
            "compile_seconds": compiled.compile_seconds if compiled else 0.0,
            "run_seconds": group_run,
        }
    )
    return parts


def run_attributes(experiment: Experiment, timing: Timing) -> dict[str, Any]:
    """Attributes saved with the results: resolved config, fingerprint, versions, devices, timing."""
    from importlib.metadata import version

    return {
        "config": store.config_text(experiment),
        "experiment": experiment.source,
        "fingerprint": experiment.fingerprint(),
        "sweep_version": version("sweep"),
        "jax_version": jax.__version__,
        "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
        "n_variants": experiment.n_variants,
        "n_groups": len(timing.per_group),
        "compile_seconds": round(timing.compile_seconds, 3),
        "run_seconds": round(timing.run_seconds, 3),
        "variant_steps_per_second": round(timing.variant_steps_per_second, 1),
    }


class _progress:
    """A rich progress bar over variants (or nothing); ``advance(n)`` moves it."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        self.bar.__enter__()
        task = self.bar.add_task("variants", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False
