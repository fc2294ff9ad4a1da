"""Which devices a run trains on: every local device, one mesh axis named ``variants``.

On accelerators JAX already shows one device per chip. On a CPU, XLA shows ONE device by default and
runs a batched matrix product on one core, so ``use_every_cpu_core`` asks for one XLA CPU device per
core (``jax_num_cpu_devices``); each device then trains its own share of a chunk's variants. This must
happen before JAX starts its backends; a user's own choice (``JAX_NUM_CPU_DEVICES``, the XLA flag
``--xla_force_host_platform_device_count`` or an earlier ``jax.config.update``) always wins.
"""

from __future__ import annotations

import importlib.util
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


QUICK_CPU_COMPILES = "--xla_backend_optimization_level=1"


def use_quick_cpu_compiles() -> bool:
    """LLVM at -O1 for XLA's programs where only the CPU can run them (no accelerator plugin installed)
    and the user chose no level in ``XLA_FLAGS``. Measured on 2 cores (a width-64, depth-30 group, 13
    variants, 300 steps, alternating, 4 runs each): compile 7.0 s against 8.5 s, training 7.05 s
    against 7.7 s (the matrix products are library calls; -O1 changes only the fused elementwise code),
    results equal to 1e-7. Must come before JAX starts its backends; returns whether it was set."""
    flags = os.environ.get("XLA_FLAGS", "")
    accelerator = importlib.util.find_spec("jax_plugins") or importlib.util.find_spec("libtpu")
    if "xla_backend_optimization_level" in flags or accelerator is not None:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {QUICK_CPU_COMPILES}".strip()
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
