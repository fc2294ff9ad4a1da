"""Several processes, several hosts: ``jax.distributed`` start-up and how processes split the work.

A run launched as several processes (``srun`` under SLURM, or explicit ``--coordinator``,
``--num-processes``, ``--process-id``) calls ``jax.distributed.initialize`` — JAX detects SLURM and
other cluster environments itself. Each process then trains its own share of the chunks on its own
devices and writes only its own chunk files; the last one to finish (or ``sweep merge``) assembles
``results.nc``. Processes combine with job-array shards: process p of P in array task i of n runs
shard ``i * P + p`` of ``n * P``.
"""

from __future__ import annotations

import os

import jax

CLUSTER_VARIABLES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def launched_as_many_processes() -> bool:
    """Whether a cluster launcher started several processes for this run."""
    return any(int(os.environ.get(name, "1") or 1) > 1 for name in CLUSTER_VARIABLES)


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> tuple[int, int]:
    """Start ``jax.distributed`` when asked or when launched as several processes.

    Returns (process index, process count); (0, 1) for an ordinary single-process run.
    """
    if coordinator or num_processes:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
    elif launched_as_many_processes():
        jax.distributed.initialize()
    else:
        return 0, 1
    return jax.process_index(), jax.process_count()


def combine(shard: tuple[int, int], process: tuple[int, int]) -> tuple[int, int]:
    """Job-array shard (i, n) and process (p, P) -> this process's shard (i * P + p, n * P)."""
    (i, n), (p, count) = shard, process
    return i * count + p, n * count
