"""Which devices a run trains on: every local device, one mesh axis named ``variants``.

On accelerators JAX already shows one device per chip. On a CPU, XLA shows ONE device by default and
runs a batched matrix product on one core, so ``use_every_cpu_core`` asks for one XLA CPU device per
core (``jax_num_cpu_devices``); each device then trains its own share of a chunk's variants. This must
happen before JAX starts its backends; a user's own choice (``JAX_NUM_CPU_DEVICES``, the XLA flag
``--xla_force_host_platform_device_count`` or an earlier ``jax.config.update``) always wins.
"""

from __future__ import annotations

import os

import jax


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def use_every_cpu_core() -> bool:
    """Ask for one XLA CPU device per core unless the user chose a count or JAX has already started.

    Returns whether the request was made (False: left as it was).
    """
    chosen = jax.config.jax_num_cpu_devices >= 0 or "xla_force_host_platform_device_count" in os.environ.get(
        "XLA_FLAGS", ""
    )
    if chosen:
        return False
    try:
        jax.config.update("jax_num_cpu_devices", cpu_cores())
    except RuntimeError:  # backends already initialised: too late to change, keep what there is
        return False
    return True


def variant_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over this process's devices, its axis named ``variants`` (in a multi-process run each
    process trains its own shard of chunks on its own devices)."""
    return jax.make_mesh(
        (jax.local_device_count(),),
        ("variants",),
        devices=jax.local_devices(),
        axis_types=(jax.sharding.AxisType.Auto,),
    )
