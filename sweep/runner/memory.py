"""How many variants fit in memory at once: a footprint estimate per variant and a budget per device.

The estimate counts the float32 values one variant's share of the compiled program holds at its peak.
Every size comes from the architecture's shapes (``sweep.nets.forward.sizes``, by ``jax.eval_shape``):
``P`` = parameters (and state values), ``N`` = the block state's values per input row (an MLP's width),
``n_layers`` = 1 + blocks + 1 (an MLP's L + 1), ``R`` records; the coefficients below were fitted on
MLPs, whose shapes give the numbers quoted:

- parameters: ``(9 + 1.5 k) P``, ``k`` optimizer slots (0 sgd, 1 momentum/rmsprop, 2 adam). Not just
  parameters, gradients, updates and the new parameters: XLA also keeps the initial draws, the copies of
  the training state carried by the record scan and the step loop, the accept/diverged select, and the
  measurement's gradients. Measured: 8.8-9.1 P for sgd, +1.0 P for momentum, +3.0 P for adam;
- activations: 2 values per unit (``N n_layers`` units) per row for the ``batch_size`` training rows and
  the ``n_eval`` measurement rows (kept for the backward pass; measured 1.7-1.8), or the architecture's
  ``kept_per_unit`` (the MLP: 1.25 where the activation's derivative comes from its output, tanh,
  sigmoid, relu, linear: ``sweep.nets.mlp_layer`` keeps one buffer per layer, not two), and ``2 N`` per
  test row (forward only, one layer at a time; measured 1.8);
- the recorded metrics: ``R (3 + n_layers)`` plus ``q_layer``/``c_layer`` (``n_layers (1 + N_PAIRS)``);
- the Jacobian spectrum (``[measure] jacobian``, ``sweep.measure.spectrum``), measured at ``inputs`` inputs at
  once: a copy of the blocks' weight matrices (an MLP's ``(L-1) N^2``), in both modes; exact mode holds
  per input the running product ``J^T``, the scaled factor ``W_l D_l`` and their product, and the SVD's
  copy of the matrix (LAPACK's singular-values-only workspace is O(N)): ``4 N^2`` (measured 3);
  matrix-free mode holds per input the two Lanczos bases ``[n_iter, N]`` and the loop's copies of them
  (``4 n_iter N``), the bidiagonal matrix and its SVD (``2 n_iter^2``), ``phi'`` per layer (``(L-1) N``)
  and the probe blocks (``3 (n_probes + 1) N``) (measured about half of that). Recorded: ``R inputs
  n_sv`` log10 singular values and 5 summaries per record. The spectrum is measured after the training
  steps, so the real peak is the larger of the two phases; the sum is an upper bound.

These coefficients come from XLA's buffer assignment of the compiled program (``memory_analysis()`` of
``sweep.runner.train.compile_group``'s program: temporaries and outputs per variant, at widths 64-256, depths
2-16, batch 8-128, n_eval 32-512, n_test 32-1000: those buffers are 0.93-1.01 of the estimate without
its safety factor, less at depth 2; re-measured with ``sweep.nets.mlp_layer`` at 11 of those shapes:
0.85-0.98, 0.90 for gelu and erf, 0.70 at depth 2) and of ``jacobian_record`` alone. The safety factor 1.25
covers what a chunk costs the process beyond those buffers (allocator slack, the outputs copied to the
host): in ``benchmarks/bench_memory.py`` (10,000 width-256 tanh MLPs on a 2-core 24 GB CPU, default
budget 12.2 GB) this estimate is 129 GB, cut into 12 chunks; the worst chunk raised the RSS by 0.82 of
its estimate and the peak RSS was 10.7 GB. Before ``sweep.nets.mlp_layer`` kept one buffer per layer
(2 values per unit for every activation, 131 GB, 13 chunks) every chunk of depth 4-8 raised the RSS by
0.81-0.84 of its estimate (0.62 at depth 2; 0.73-0.76 with the Jacobian, at 512 variants) and the peak
RSS was 10.8 GB, 0.43 of the machine's memory. An earlier estimate (5 P and 3 values per unit per row,
times 2) was too small for such nets (a chunk raised the RSS by 1.19x its estimate), twice too large
when the measurement rows dominate, and blind to the Jacobian.

A device holds more than one variant's worth only for the variants it trains at once. On a CPU it
trains its share of a chunk in passes of a few variants (``sweep.runner.passes``): it holds one pass's
training values, the recorded values of every variant of the chunk, and ``1.5 P`` more for the scan over
passes (measured 0.6-1.7 P). On accelerators every variant trains at once. XLA's buffers of chunks trained in
passes of 1-32 variants (widths 32-256, depths 2-16, batch 8-128, n_eval 32-512, n_test 32-1000) were
0.89-1.03 of this estimate without its safety factor. Passes make a CPU chunk's footprint almost independent
of its size, so CPU chunks are mostly limited by the group's size, not by memory.

The budget is for the chunks' buffers. The process's own footprint comes on top: JAX, the data and the
compiled programs (on a CPU about 0.3 GB after the first compile, and some 50 MB more per compiled
group), which the default budget leaves room for.

The budget defaults to half the memory available now (CPU: MemAvailable, split evenly over the CPU
devices that share it; accelerators: each device's free bytes).
"""

from __future__ import annotations

import os

import jax

from sweep.measure.spectrum import N_PROBES
from sweep.nets.contract import resolve, uses_batch_statistics
from sweep.nets.forward import N_PAIRS, sizes
from sweep.runner.passes import one_layer_bytes, variants_per_pass
from sweep.runner.train import GroupSpec, JacobianSpec

OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2, "rmsprop": 1}
PARAMETER_COPIES = 9.0  # values per parameter held by the program (sgd), measured
SLOT_COPIES = 1.5  # values per parameter per optimizer slot, measured
PASS_PARAMETER_COPIES = 1.5  # values per parameter of one network, held by a scan over passes, measured
ACTIVATION_VALUES = 2  # per unit per training or measurement row, and per width per test row
SAFETY = 1.25
BYTES = 4


def parameter_count(spec: GroupSpec) -> int:
    """Parameters and state values of one network, from its shapes (``jax.eval_shape`` of ``init``)."""
    size = sizes(spec.model)
    return size.params + size.state


def jacobian_values(spec: GroupSpec) -> int:
    """float32 values the Jacobian spectrum measurement holds for one variant (workspace and records),
    0 without ``[measure] jacobian``."""
    return jacobian_workspace(spec) + jacobian_records(spec)


def jacobian_workspace(spec: GroupSpec) -> int:
    """float32 values the Jacobian spectrum measurement works in for one variant while it measures."""
    jac: JacobianSpec | None = spec.jacobian
    if jac is None:
        return 0
    size = sizes(spec.model)
    n, factors = size.row_state, size.n_blocks
    if jac.matrix_free:
        n_iter = jac.n_iter(n)
        per_input = 4 * n_iter * n + 2 * n_iter**2 + factors * n + 3 * (N_PROBES + 1) * n
    else:
        per_input = 4 * n**2
    return factors * size.block_weights + jac.inputs * per_input


def jacobian_records(spec: GroupSpec) -> int:
    """float32 values of one variant's recorded spectra: log10 singular values and 5 summaries per record."""
    jac: JacobianSpec | None = spec.jacobian
    if jac is None:
        return 0
    return len(spec.record_steps) * (jac.inputs * jac.n_sv(spec.jacobian_size) + 5)


def training_values(spec: GroupSpec, n_eval: int, n_test: int) -> float:
    """float32 values one variant holds while it trains and is measured: parameters and their copies,
    activations, the Jacobian workspace (see the module docstring). Freed when its pass ends."""
    row = sizes(spec.model).row_state
    params = (PARAMETER_COPIES + SLOT_COPIES * OPTIMIZER_SLOTS[spec.optimizer]) * parameter_count(spec)
    units = row * spec.n_layers
    kept_per_unit = resolve(spec.arch).kept_per_unit
    kept = kept_per_unit(spec.model) if kept_per_unit else ACTIVATION_VALUES
    if uses_batch_statistics(resolve(spec.arch), spec.model):  # measured a minibatch at a time
        n_eval = min(n_eval, spec.batch_size)
    activations = kept * units * (spec.batch_size + n_eval) + ACTIVATION_VALUES * row * n_test
    return params + activations + jacobian_workspace(spec)


def recorded_values(spec: GroupSpec) -> float:
    """float32 values of one variant's results (every record, ``q_layer``/``c_layer``, the Jacobian's
    records), held for every variant of a chunk until the chunk ends."""
    n_layers = spec.n_layers
    return len(spec.record_steps) * (3 + n_layers) + n_layers * (1 + N_PAIRS) + jacobian_records(spec)


def variant_bytes(spec: GroupSpec, n_eval: int, n_test: int) -> int:
    """Estimated peak bytes one variant of ``spec`` needs while it trains (see the module docstring)."""
    return int(SAFETY * BYTES * (training_values(spec, n_eval, n_test) + recorded_values(spec)))


def share_bytes(spec: GroupSpec, n_variants: int, n_eval: int, n_test: int, platform: str) -> int:
    """Estimated peak bytes of one device training ``n_variants`` of ``spec``: one pass's training
    (``sweep.runner.passes``; at most ``largest_pass`` variants, all of them on accelerators) and every
    variant's results."""
    at_once = variants_per_pass(one_layer_bytes(spec.model, spec.batch_size), n_variants, platform)
    values = at_once * training_values(spec, n_eval, n_test) + n_variants * recorded_values(spec)
    if at_once < n_variants:  # the scan over passes
        values += PASS_PARAMETER_COPIES * parameter_count(spec)
    return int(SAFETY * BYTES * values)


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
    """Variants per chunk: as many as fit the budget on every device (``share_bytes``), a multiple of the
    device count, never more than the group needs (rounded up to the device count), at least one per
    device."""
    devices = jax.local_device_count()
    platform = jax.local_devices()[0].platform

    def fits(n: int) -> bool:
        return share_bytes(spec, n, n_eval, n_test, platform) <= budget_bytes

    # share_bytes grows with n except where balancing shrinks the passes (n just past a multiple of
    # largest_pass), so bisect: it ends at an n that fits whose n + 1 does not, or at the group's need.
    low, high = 1, -(-n_variants // devices)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return devices * low
