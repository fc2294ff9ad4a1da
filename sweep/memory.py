"""How many variants fit in memory at once: a footprint estimate per variant and a budget per device.

The estimate counts float32 values a variant holds while its program runs:

- parameters P, gradients, updates and the new parameters (4 P), plus the optimizer's state (k P,
  k = 0 sgd, 1 momentum/rmsprop, 2 adam);
- one training step's activations kept for the backward pass: about 3 values per unit per layer
  (pre-activation, activation, cotangent) for ``batch_size`` rows, and the same for the ``n_eval``
  measurement rows; the test set's forward pass (2 values per unit, one layer at a time);
- the recorded metrics.

A safety factor of 2 covers XLA's temporaries. The budget defaults to half the memory available now
(CPU: MemAvailable, split evenly over the CPU devices that share it; accelerators: each device's free
bytes).
"""

from __future__ import annotations

import os

import jax

from sweep.train import GroupSpec

OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2, "rmsprop": 1}
SAFETY = 2.0
BYTES = 4


def variant_bytes(spec: GroupSpec, n_eval: int, n_test: int) -> int:
    """Estimated peak bytes one variant of ``spec`` needs."""
    m = spec.model
    n_layers = spec.n_layers
    params = m.input_dim * m.width + (m.depth - 1) * m.width**2 + m.width * m.n_classes + m.depth * m.width
    weights = (4 + OPTIMIZER_SLOTS[spec.optimizer]) * params
    units = m.width * n_layers
    activations = 3 * units * (spec.batch_size + n_eval) + 2 * m.width * n_test
    records = len(spec.record_steps) * (3 + n_layers) + n_layers
    return int(SAFETY * BYTES * (weights + activations + records))


def available_bytes() -> int:
    """Free memory of the first device (accelerator) or of the host (CPU)."""
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def budget_per_device(total_bytes: int | None = None) -> int:
    """The bytes each device may fill. ``total_bytes`` (default: half of the memory available now) is
    per device on accelerators; on a CPU, whose devices all share the host's memory, it is split
    evenly over them."""
    device = jax.local_devices()[0]
    on_cpu = device.platform == "cpu"
    if total_bytes is None:
        total_bytes = available_bytes() // 2
    return total_bytes // jax.local_device_count() if on_cpu else total_bytes


def chunk_size(spec: GroupSpec, n_variants: int, n_eval: int, n_test: int, budget_bytes: int) -> int:
    """Variants per chunk: as many as fit the budget on every device, a multiple of the device count,
    never more than the group needs (rounded up to the device count)."""
    devices = jax.local_device_count()
    per_device = max(1, budget_bytes // variant_bytes(spec, n_eval, n_test))
    needed = -(-n_variants // devices)
    return devices * min(per_device, needed)
