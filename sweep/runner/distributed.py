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

from sweep.config import ConfigError

CLUSTER_VARIABLES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def launched_as_many_processes() -> bool:
    """Whether a cluster launcher started several processes for this run."""
    return any(int(os.environ.get(name, "1") or 1) > 1 for name in CLUSTER_VARIABLES)


def check_processes(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """The multi-process options, checked before anything starts: ConfigError naming the option.

    ``--coordinator`` is HOST:PORT; ``--num-processes`` at least 1; ``--process-id`` in [0, N). Outside a
    cluster launcher (which tells JAX all three) they go together."""
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--coordinator {coordinator}: expected HOST:PORT, e.g. node01:1234")
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"--num-processes {num_processes}: must be at least 1")
    if process_id is not None:
        if num_processes is None:
            raise ConfigError(f"--process-id {process_id}: needs --num-processes")
        if not 0 <= process_id < num_processes:
            raise ConfigError(f"--process-id {process_id}: need 0 <= id < --num-processes {num_processes}")
    if launched_as_many_processes():
        return  # the launcher tells JAX whatever was not given
    if num_processes is not None and num_processes > 1 and (coordinator is None or process_id is None):
        missing = "--coordinator" if coordinator is None else "--process-id"
        raise ConfigError(
            f"--num-processes {num_processes}: needs {missing} too (or a cluster launcher, e.g. srun)"
        )
    if coordinator is not None and num_processes is None:
        raise ConfigError(f"--coordinator {coordinator}: needs --num-processes and --process-id too")


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> tuple[int, int]:
    """Start ``jax.distributed`` when asked or when launched as several processes.

    Returns (process index, process count); (0, 1) for an ordinary single-process run. ConfigError for
    inconsistent options (``check_processes``).
    """
    check_processes(coordinator, num_processes, process_id)
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
