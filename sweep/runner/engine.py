"""From an experiment to results: groups -> chunks -> compiled programs -> one Dataset.

``run`` is the whole pipeline behind ``sweep run``. Every input is validated (config, dataset, output
directory) before anything is written. With an output directory, every finished chunk is saved at once,
so an interrupted run loses at most the chunk in flight and ``resume=True`` recomputes only what is
missing; ``shard=(i, n)`` runs job i's share of the chunks, and several jobs may share a directory.
Resuming verifies the saved chunks (``sweep.storage.integrity``) and recomputes any found damaged; a failed
write stops the run with ``store.WriteFailed`` saying what is saved and what is not. Results are written
only once every chunk they hold has been read back from disk.
Common random numbers: a variant's draws depend only on its seed (see ``sweep.runner.train.variant_key``),
never on its chunk, shard or device, so none of this changes its numbers.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import xarray as xr

from sweep.config import ConfigError, Experiment, experiment_from_dict, load_experiment
from sweep.config.grid import Group, groups, groups_of_run, masked_work
from sweep.data import load_dataset
from sweep.measure.predictions import add_predictions, compile_in_background
from sweep.nets.contract import network_problem
from sweep.runner import memory
from sweep.runner.chunks import Chunk, plan_chunks, shard_cap, shard_chunks, work_cap
from sweep.runner.devices import cpu_cores, use_every_cpu_core, use_quick_cpu_compiles
from sweep.runner.train import CompiledGroup, GroupSpec, TrainData, compile_group, run_chunk, train_data
from sweep.storage import store
from sweep.storage.compile_cache import RUN_MIN_COMPILE_SECONDS, use_compile_cache
from sweep.storage.integrity import DamagedFile
from sweep.storage.results import Part, assemble
from sweep.storage.rundir import chunk_identity, collect, read_saved


@dataclass
class Timing:
    """Where a run's seconds go (wall clock): reading or generating the data, compiling programs,
    training (``run_seconds``), the theory predictions with assembling the results (``measure_seconds``;
    the predictions' compilation overlaps training), and writing chunks and results (``write_seconds``)."""

    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    variant_steps: int = 0
    data_seconds: float = 0.0
    measure_seconds: float = 0.0
    write_seconds: float = 0.0

    @property
    def variant_steps_per_second(self) -> float:
        return self.variant_steps / self.run_seconds if self.run_seconds else 0.0


def as_experiment(
    source: str | Path | Experiment | dict,
    overrides: tuple[str, ...] = (),
    scale: str | None = None,
    run: str | None = None,
) -> Experiment:
    """An Experiment from a TOML path, a parsed mapping, or an Experiment (scale, run, overrides applied)."""
    if isinstance(source, Experiment):
        if overrides or scale or run:
            raise ValueError("overrides apply to experiment files or mappings, not to an Experiment")
        return source
    if isinstance(source, dict):
        return experiment_from_dict(source, "<config>", overrides, scale=scale, run=run)
    return load_experiment(source, overrides, scale=scale, run=run)


def check_output_dir(out: Path, force: bool, resume: bool, sharded: bool, experiment: Experiment) -> None:
    """Refuse to overwrite a run unless asked; refuse to resume or join a different experiment."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if force or not store.holds_results(out):
        return
    if resume or sharded:
        try:
            manifest = store.read_manifest(out)
        except DamagedFile:
            manifest = None
        if manifest is None and (out / store.CHUNKS).is_dir():
            return  # missing or damaged: store.open_run rebuilds it if the saved chunks agree
        if manifest is None or manifest["fingerprint"] != experiment.fingerprint():
            raise ConfigError(
                f"--resume {out}: the directory holds a different experiment than {experiment.source} "
                "(compare its config.toml); use a new --out or --force to start over"
            )
        return
    raise ConfigError(
        f"--out {out}: already holds results; pass --force to overwrite or --resume to continue"
    )


def check_options(chunk_size: int | None, memory_budget_gb: float | None, shard: tuple[int, int]) -> None:
    """The run's options, checked like the experiment's fields: ConfigError naming the option."""
    whole = isinstance(chunk_size, int) and not isinstance(chunk_size, bool)
    if chunk_size is not None and not (whole and chunk_size >= 1):
        raise ConfigError(f"--chunk-size {chunk_size}: must be a whole number of variants, at least 1")
    number = isinstance(memory_budget_gb, int | float) and not isinstance(memory_budget_gb, bool)
    if memory_budget_gb is not None and not (
        number and math.isfinite(memory_budget_gb) and memory_budget_gb > 0
    ):
        raise ConfigError(f"--memory-budget {memory_budget_gb}: must be a positive number of GB, e.g. 8")
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and 0 <= i < n):
        raise ConfigError(f"--shard {i}/{n}: need whole numbers with 0 <= i < n, e.g. 0/4")


def describe_devices() -> str:
    """This process's devices in words: "2 CPU devices (one per core)", "1 GPU (NVIDIA H200)"."""
    devices = jax.local_devices()
    n, first = len(devices), devices[0]
    if first.platform == "cpu":
        per_core = " (one per core)" if n > 1 and n == cpu_cores() else ""
        return f"{n} CPU device{'s' * (n > 1)}{per_core}"
    return f"{n} {first.platform.upper()}{'s' * (n > 1)} ({first.device_kind})"


def run(
    source: str | Path | Experiment | dict,
    out: str | Path | None = None,
    overrides: tuple[str, ...] = (),
    *,
    force: bool = False,
    resume: bool = False,
    scale: str | None = None,
    run: str | None = None,
    shard: tuple[int, int] = (0, 1),
    chunk_size: int | None = None,
    memory_budget_gb: float | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda message: None,
    warn: Callable[[str], None] | None = None,
) -> xr.Dataset:
    """Train every variant of an experiment and return the results Dataset (see ``sweep.storage.results``).

    ``scale`` and ``run`` pick named override lists of the experiment file (``[scales]``, ``[runs]``).
    With ``out``, every finished chunk is saved under ``out/chunks`` and, once all chunks of the grid
    are there, ``out/results.nc``. ``shard=(i, n)`` trains only job i's share of the chunks (several
    jobs may share ``out``); the Dataset returned then holds every chunk found so far. ``resume``
    skips chunks already saved (verified; damaged ones are moved aside and recomputed). ``progress``: a
    progress bar on stderr (default: when stderr is a terminal). ``log`` receives one-line messages once
    the inputs are valid; ``warn`` (default: ``log``) the lines about damaged files found, moved aside and
    recomputed or rebuilt. Raises ConfigError for bad input, DamagedFile for a run directory it cannot
    trust, and store.WriteFailed (saying what is saved) when a file cannot be written.
    """
    check_options(chunk_size, memory_budget_gb, shard)
    warn = warn or log
    if progress is None:
        progress = sys.stderr.isatty()
    use_every_cpu_core()  # before JAX starts; no effect once it has, or if the user chose
    use_quick_cpu_compiles()
    use_compile_cache(min_compile_seconds=RUN_MIN_COMPILE_SECONDS)
    experiment = as_experiment(source, tuple(overrides), scale, run)
    out_dir = Path(out) if out is not None else None
    sharded = shard[1] > 1
    if sharded and out_dir is None:
        raise ConfigError("--shard needs --out: the shards meet in one directory")
    if out_dir is not None:
        check_output_dir(out_dir, force, resume, sharded, experiment)
    data_started = time.perf_counter()
    dataset = load_dataset(experiment.base.data, experiment.source)
    plan = groups(experiment)
    for group in plan:  # the dataset is shared by all groups
        if group.static.data != experiment.base.data:
            raise ConfigError(f"{experiment.source}: data: sweeping data fields is not supported")
    n_eval, n_test = experiment.base.measure.n_eval, experiment.base.data.n_test
    specs = {g.key: GroupSpec.from_config(g.static, dataset, g.bucketed) for g in plan}
    for spec in specs.values():
        problem = network_problem(spec.model)
        if problem:
            raise ConfigError(f"{experiment.source}: {problem} (data {experiment.base.data.name!r})")
    dataset_attrs = {
        "n_classes": dataset.n_classes,
        "input_mean_square": float(np.mean(dataset.x_train[:n_eval] ** 2)),  # q of the inputs (theory)
    }
    budget = memory.budget_per_device(int(memory_budget_gb * 2**30) if memory_budget_gb else None)
    devices = jax.local_device_count()
    platform = jax.local_devices()[0].platform

    shards_limit = shard_cap(experiment.n_variants, shard[1], devices) if sharded else None

    def cap(group: Group) -> int | None:
        """--chunk-size if given, else the smaller of the shards' and the CPU work cap (if any)."""
        if chunk_size:
            return chunk_size
        return min((c for c in (shards_limit, work_cap(group, devices, platform)) if c), default=None)

    sizes = {g.key: _chunk_size(specs[g.key], len(g.variants), n_eval, n_test, budget, cap(g)) for g in plan}
    data = train_data(dataset, n_eval)
    timing = Timing(data_seconds=time.perf_counter() - data_started)  # with planning the groups (ms)
    chunks = plan_chunks(plan, sizes)
    if out_dir is None:
        return _train(
            experiment, chunks, shard, specs, data, dataset_attrs, None, progress, log, warn, timing
        )
    try:
        if force:
            store.clear_run(out_dir)
        sizes = store.open_run(out_dir, experiment, sizes, dataset_attrs, repair=resume or sharded, log=warn)
        if set(sizes) != {g.key for g in plan}:  # a run begun with other groups: keep its plan
            plan = planned_groups(experiment, sizes, out_dir)
            specs = {g.key: GroupSpec.from_config(g.static, dataset, g.bucketed) for g in plan}
        chunks = plan_chunks(plan, sizes)  # a run's chunking never changes
        return _train(
            experiment, chunks, shard, specs, data, dataset_attrs, out_dir, progress, log, warn, timing
        )
    except store.WriteFailed as failure:
        done = len(_saved(out_dir, chunks))
        left = f"{len(chunks) - done} chunk(s) and " if done < len(chunks) else ""
        raise failure.telling(
            f"{done} of {len(chunks)} chunks in {out_dir / store.CHUNKS}", f"{left}{out_dir / store.RESULTS}"
        ) from failure.__cause__


def _train(
    experiment: Experiment,
    chunks: list[Chunk],
    shard: tuple[int, int],
    specs: dict[str, GroupSpec],
    data: TrainData,
    dataset_attrs: dict[str, Any],
    out_dir: Path | None,
    progress: bool,
    log: Callable[[str], None],
    warn: Callable[[str], None],
    timing: Timing | None = None,
) -> xr.Dataset:
    """Train this process's share of ``chunks`` (saving each into ``out_dir``), then the results."""
    mine = shard_chunks(chunks, *shard)
    sharded = shard[1] > 1
    log(
        f"{describe_devices()}; {experiment.n_variants} variants in {len(specs)} group(s), "
        f"{len(chunks)} chunk(s)"
        + (f"; shard {shard[0]}/{shard[1]} runs {len(mine)} of them" if sharded else "")
        + bucket_summary(list(dict.fromkeys(c.group for c in chunks)))
    )
    timing = timing or Timing()
    computed = []
    todo = mine
    if out_dir is not None:  # chunks saved earlier are verified: damaged ones are moved aside, recomputed
        saved = read_saved(out_dir, experiment, mine, "recomputing it")
        for line in saved.damaged:
            warn(line)
        todo = [c for c in mine if c.name not in saved.parts]
    # With a directory the bar counts the whole grid: every chunk saved there, whichever shard wrote it.
    total = experiment.n_variants if out_dir is not None else sum(c.n_variants for c in mine)
    fingerprint = experiment.fingerprint()
    with _progress(progress, total) as show:
        done = 0
        show(_saved_variants(out_dir, chunks) if out_dir is not None else done)
        theory = None
        try:
            for chunk in todo:
                path = store.chunk_path(out_dir, chunk.name) if out_dir is not None else None
                compiled, fresh = compile_group(specs[chunk.group.key], chunk.size, data)
                timing.compile_seconds += compiled.compile_seconds if fresh else 0.0
                theory = theory or compile_in_background(experiment)  # once training is under way
                part = _run_chunk(chunk, compiled, specs[chunk.group.key], data, timing)
                if path is not None:
                    written = time.perf_counter()
                    store.write_chunk(path, *part, chunk_identity(chunk, fingerprint))
                    timing.write_seconds += time.perf_counter() - written
                computed.append(part)
                done += chunk.n_variants
                show(_saved_variants(out_dir, chunks) if out_dir is not None else done)
        finally:  # also when interrupted: an interpreter must not exit under a thread inside XLA
            waited = time.perf_counter()
            if theory is not None:
                theory.join()
            timing.measure_seconds += time.perf_counter() - waited
    measured = time.perf_counter()
    if out_dir is None:
        results = add_predictions(
            assemble(experiment, computed, run_attributes(experiment, timing, len(specs)) | dataset_attrs)
        )
        timing.measure_seconds += time.perf_counter() - measured
        results.attrs["measure_seconds"] = round(timing.measure_seconds, 3)
        return results
    # the results come from the chunks as read back from disk: only data safely there is in them
    store.flush_chunks(out_dir)
    timing.write_seconds += time.perf_counter() - measured
    measured = time.perf_counter()
    attrs = run_attributes(experiment, timing, len(specs)) | dataset_attrs
    results, missing, damaged = collect(out_dir, experiment, chunks, attrs, "`--resume` recomputes it")
    timing.measure_seconds += time.perf_counter() - measured
    results.attrs["measure_seconds"] = round(timing.measure_seconds, 3)
    for line in damaged:
        warn(line)
    if missing and sharded:
        log(f"{missing} variant(s) of other shards are not done yet; `sweep merge {out_dir}` assembles them")
    elif missing:
        log(f"{missing} variant(s) missing; rerun with --resume to compute them")
    else:
        written = time.perf_counter()
        store.write_results(out_dir, results)
        timing.write_seconds += time.perf_counter() - written  # in the Dataset returned, not in the file
        results.attrs["write_seconds"] = round(timing.write_seconds, 3)
    return results


def _saved(out_dir: Path, chunks: list[Chunk]) -> list[Chunk]:
    """The chunks of ``chunks`` saved in ``out_dir``, by this process or by other shards writing into it."""
    folder = out_dir / store.CHUNKS
    saved = set(os.listdir(folder)) if folder.is_dir() else set()
    return [c for c in chunks if store.chunk_path(out_dir, c.name).name in saved]


def _saved_variants(out_dir: Path, chunks: list[Chunk]) -> int:
    return sum(c.n_variants for c in _saved(out_dir, chunks))


def _chunk_size(spec: GroupSpec, n: int, n_eval: int, n_test: int, budget: int, cap: int | None) -> int:
    """Variants per chunk from the memory estimate, at most ``cap`` (a multiple of the device count)."""
    devices = jax.local_device_count()
    size = memory.chunk_size(spec, n, n_eval, n_test, budget)
    if cap:
        size = min(size, -(-min(cap, n) // devices) * devices)
    return size


def _run_chunk(
    chunk: Chunk,
    compiled: CompiledGroup,
    spec: GroupSpec,
    data: TrainData,
    timing: Timing,
) -> Part:
    """Train one chunk with its compiled program. Returns its results part."""
    variants = chunk.group.variants[chunk.start : chunk.stop]
    hyper = {k: v[chunk.start : chunk.stop] for k, v in chunk.group.dynamic().items()}
    grid_index = np.asarray([v.index for v in variants], np.int64).reshape(len(variants), -1)
    started = time.perf_counter()
    outputs = run_chunk(compiled, hyper, data)
    timing.run_seconds += time.perf_counter() - started
    timing.variant_steps += len(variants) * spec.steps
    return grid_index, outputs, spec.record_steps


def planned_groups(experiment: Experiment, sizes: dict[str, int], out_dir: Path) -> list[Group]:
    """The groups of the run in ``out_dir`` (its manifest's ``sizes`` name them): one program per depth
    for a run begun before depth buckets, or with them off (``sweep.config.grid.groups_of_run``)."""
    plan = groups_of_run(experiment, sizes)
    if plan is None:
        raise ConfigError(
            f"{out_dir / store.CHUNKS / store.MANIFEST}: plans other groups than this experiment makes; "
            "rerun with --force to start over"
        )
    return plan


def bucket_summary(plan: list[Group]) -> str:
    """``"; 91 depths in 6 depth bucket(s) (11% of the block work masked)"`` where groups share depths
    (``sweep.config.grid.masked_work``), else ""."""
    work = masked_work(plan)
    if work is None:
        return ""
    depths, buckets, masked = work
    return f"; {depths} depths in {buckets} depth bucket(s) ({masked:.0%} of the block work masked)"


def run_attributes(experiment: Experiment, timing: Timing, n_groups: int) -> dict[str, Any]:
    """Attributes saved with the results: resolved config, fingerprint, versions, devices, timing."""
    from importlib.metadata import version

    device = jax.local_devices()[0]
    return {
        "config": store.config_text(experiment),
        "experiment": experiment.source,
        "fingerprint": experiment.fingerprint(),
        "sweep_version": version("sweep"),
        "jax_version": jax.__version__,
        "devices": f"{jax.local_device_count()} x {device.device_kind}",
        "n_variants": experiment.n_variants,
        "n_groups": n_groups,
        "data_seconds": round(timing.data_seconds, 3),
        "compile_seconds": round(timing.compile_seconds, 3),
        "run_seconds": round(timing.run_seconds, 3),
        "measure_seconds": round(timing.measure_seconds, 3),
        "write_seconds": round(timing.write_seconds, 3),
        "variant_steps_per_second": round(timing.variant_steps_per_second, 1),
    }


class _progress:
    """A rich progress bar over variants (or nothing): ``show(n)`` sets how many are done. The time left
    is estimated from the recent rate, so with several shards in one directory it is their joint rate."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self) -> Callable[[int], None]:
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
        task = None

        def show(done: int) -> None:
            nonlocal task
            if task is None:  # what is done at the start (resumed, other shards) is no evidence of speed
                task = self.bar.add_task("variants", total=self.total, completed=done)
                self.bar.advance(task, 0)  # the rate is measured from now
            self.bar.update(task, completed=done)

        return show

    def __exit__(self, *exc: object) -> bool:
        if self.enabled:
            self.bar.__exit__(*exc)
        return False
