"""``sweep submit``: a job array through submitit (optional extra ``slurm``), one shard per task.

Each task runs ``engine.run(experiment, out, shard=(i, n), resume=True)``: the chunks of shard i, skipping
any already saved, so resubmitting after pre-emption or a time limit finishes the grid. The last task to
finish writes ``results.nc``; otherwise ``sweep merge DIR``. Nothing else in sweep needs submitit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweep.config import ConfigError


def run_shard(
    experiment: str, out: str, shard: int, n_shards: int, overrides: tuple[str, ...], scale: str | None
) -> int:
    """One array task: its shard of the grid. Returns the number of variants still missing overall."""
    from sweep.runner import engine

    results = engine.run(experiment, out, overrides, scale=scale, shard=(shard, n_shards), resume=True)
    return int(results.attrs.get("missing_variants", 0))


def submit(
    experiment: Path,
    out: Path,
    n_shards: int,
    overrides: tuple[str, ...] = (),
    scale: str | None = None,
    cluster: str | None = None,
    **slurm: Any,
) -> list[Any]:
    """Submit ``n_shards`` tasks (an array job on SLURM; ``cluster="local"`` runs them as local
    processes). ``slurm`` holds submitit parameters, e.g. ``slurm_partition``, ``timeout_min``,
    ``gpus_per_node``. Returns the submitit jobs."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("sweep submit needs submitit: pip install 'sweep[slurm]'") from None
    from sweep.runner.engine import as_experiment

    as_experiment(experiment, overrides, scale)  # bad input fails here, before anything is queued
    executor = submitit.AutoExecutor(folder=out / "submitit", cluster=cluster)
    executor.update_parameters(name=f"sweep-{experiment.stem}", **slurm)
    if executor.cluster == "slurm":
        executor.update_parameters(slurm_array_parallelism=n_shards)
    args = [(str(experiment), str(out), i, n_shards, tuple(overrides), scale) for i in range(n_shards)]
    return executor.map_array(run_shard, *zip(*args, strict=True))
