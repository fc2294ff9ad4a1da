"""The memory estimate behind the default chunk size (sweep.runner.memory): its terms, the budget, chunk
sizes."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest

from sweep.measure import spectrum
from sweep.measure.metrics import EvalData
from sweep.nets import mlp
from sweep.runner import memory
from sweep.runner.passes import one_layer_bytes, variants_per_pass
from sweep.runner.train import GroupSpec, JacobianSpec, TrainData, compile_group


def spec(
    width=64, depth=4, optimizer="sgd", batch=16, steps=10, every=5, jacobian=None, activation="tanh"
) -> GroupSpec:
    model = mlp.spec(40, width, depth, 10, "gaussian", activation)
    return GroupSpec(model, optimizer, batch, steps, every, jacobian)


def test_estimate_grows_as_width_squared_times_depth():
    base = memory.variant_bytes(spec(width=1024, depth=20), 64, 64)
    wider = memory.variant_bytes(spec(width=2048, depth=20), 64, 64)
    deeper = memory.variant_bytes(spec(width=1024, depth=39), 64, 64)  # 38 hidden-to-hidden matrices, not 19
    assert wider / base == pytest.approx(4.0, rel=0.03)
    assert deeper / base == pytest.approx(2.0, rel=0.03)
    # each hidden layer costs at least the program's copies of its weight matrix, in float32
    per_layer = memory.variant_bytes(spec(width=1024, depth=21), 64, 64) - base
    assert per_layer >= memory.PARAMETER_COPIES * 1024**2 * 4


def test_estimate_grows_with_every_other_size():
    base = memory.variant_bytes(spec(), 64, 64)
    assert memory.variant_bytes(spec(batch=128), 64, 64) > base
    assert memory.variant_bytes(spec(), 512, 64) > base
    assert memory.variant_bytes(spec(), 64, 1000) > base
    assert memory.variant_bytes(spec(steps=100, every=1), 64, 64) > base
    by_optimizer = [memory.variant_bytes(spec(optimizer=o), 64, 64) for o in ("sgd", "momentum", "adam")]
    assert by_optimizer == sorted(by_optimizer) and len(set(by_optimizer)) == 3
    assert memory.variant_bytes(spec(optimizer="rmsprop"), 64, 64) == by_optimizer[1]


def test_exact_jacobian_adds_products_svd_copies_and_records():
    width, depth, inputs = 128, 6, 3
    jac = JacobianSpec(inputs=inputs, every=0, matrix_free=False, k=width)
    without = memory.variant_bytes(spec(width, depth), 64, 64)
    with_jac = memory.variant_bytes(spec(width, depth, jacobian=jac), 64, 64)
    records = len(spec().record_steps)  # steps 10, every 5: 0, 5, 10
    values = (depth - 1) * width**2 + inputs * 4 * width**2 + records * (inputs * width + 5)
    assert memory.jacobian_values(spec(width, depth, jacobian=jac)) == values
    assert with_jac - without == pytest.approx(memory.SAFETY * memory.BYTES * values, abs=2)
    one_more = JacobianSpec(inputs=inputs + 1, every=0, matrix_free=False, k=width)
    step = memory.jacobian_values(spec(width, depth, jacobian=one_more)) - values
    assert step == 4 * width**2 + records * width  # one more input: its N x N workspace and its records


def test_matrix_free_jacobian_holds_lanczos_vectors_not_products():
    width, depth = 2048, 6
    exact = JacobianSpec(inputs=2, every=0, matrix_free=False, k=width)
    lanczos = JacobianSpec(inputs=2, every=0, matrix_free=True, k=16)
    n_iter = lanczos.n_iter(width)
    values = memory.jacobian_values(spec(width, depth, jacobian=lanczos))
    per_input = 4 * n_iter * width + 2 * n_iter**2 + (depth - 1) * width + 3 * (spectrum.N_PROBES + 1) * width
    records = len(spec().record_steps) * (2 * 2 * 16 + 5)
    assert values == (depth - 1) * width**2 + 2 * per_input + records
    assert values < memory.jacobian_values(spec(width, depth, jacobian=exact)) / 2
    more_k = JacobianSpec(inputs=2, every=0, matrix_free=True, k=64)
    assert memory.jacobian_values(spec(width, depth, jacobian=more_k)) > values


@pytest.mark.parametrize("platform", ["cpu", "gpu"])
@pytest.mark.parametrize("devices", [1, 2, 3, 8])
def test_chunk_size_fits_the_budget_and_divides_over_devices(monkeypatch, devices, platform):
    monkeypatch.setattr(jax, "local_device_count", lambda: devices)
    monkeypatch.setattr(jax, "local_devices", lambda: [SimpleNamespace(platform=platform)] * devices)
    s = spec(width=256, depth=8)
    per_variant = memory.variant_bytes(s, 64, 64)

    def fits(n: int) -> bool:
        return memory.share_bytes(s, n, 64, 64, platform) <= budget

    for budget in (per_variant, 3 * per_variant - 1, 10 * per_variant + 7, 1000 * per_variant):
        for n_variants in (1, 5, 64, 10_000):
            size = memory.chunk_size(s, n_variants, 64, 64, budget)
            needed = -(-n_variants // devices)
            assert size % devices == 0 and size >= devices
            assert fits(size // devices)  # every device's share fits its budget
            assert size // devices <= needed  # never more than the group needs
            assert size // devices == needed or not fits(size // devices + 1)  # and the budget is used
    assert memory.chunk_size(s, 100, 64, 64, per_variant // 2) == devices  # one variant per device at least


def test_passes_need_one_pass_of_training_and_every_variants_records():
    s = spec(width=256, depth=8)  # one variant per pass on a CPU
    train, records = memory.training_values(s, 64, 64), memory.recorded_values(s)
    cpu = memory.share_bytes(s, 100, 64, 64, "cpu")
    pass_overhead = memory.PASS_PARAMETER_COPIES * memory.parameter_count(s)
    assert cpu == int(memory.SAFETY * memory.BYTES * (train + 100 * records + pass_overhead))
    assert memory.share_bytes(s, 100, 64, 64, "gpu") == int(
        memory.SAFETY * memory.BYTES * 100 * (train + records)
    )
    assert memory.share_bytes(s, 1, 64, 64, "cpu") == memory.variant_bytes(s, 64, 64)


def test_budget_is_split_over_cpu_devices_only(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 24 * 2**30)
    monkeypatch.setattr(jax, "local_device_count", lambda: 2)
    assert memory.budget_per_device() == 6 * 2**30  # half of what is free, over 2 CPU devices
    assert memory.budget_per_device(10 * 2**30) == 5 * 2**30
    monkeypatch.setattr(jax, "local_devices", lambda: [SimpleNamespace(platform="gpu")] * 2)
    assert memory.budget_per_device(10 * 2**30) == 10 * 2**30  # each accelerator has its own memory
    assert memory.budget_per_device() == 12 * 2**30


def test_available_bytes_is_positive_and_below_physical_memory():
    import os

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < memory.available_bytes() <= physical


@pytest.mark.parametrize(
    ("activation", "width", "batch", "per_pass"),
    [
        ("tanh", 32, 64, 4),
        ("gelu", 32, 64, 4),
        ("tanh", 16, 8, 16),
        ("tanh", 64, 16, 2),
        ("tanh", 128, 32, 1),
    ],
)  # phi' from phi's output, and from h; passes of several, one pass of all, passes of a few wider nets,
# passes of one (a scan over the variants, unbatched)
def test_estimate_covers_the_compiled_programs_buffers(activation, width, batch, per_pass):
    """XLA's buffer assignment for a compiled chunk (temporaries and outputs) stays within the estimate
    without the safety factor, and not far below it: the coefficients are measured, not guessed."""
    s = spec(width=width, depth=4, batch=batch, steps=2, every=2, activation=activation)
    n_train, n_eval, n_test, size = 128, 64, 32, 16
    assert one_layer_bytes(s.model, batch) == 4 * (batch * width + width * width)
    assert variants_per_pass(one_layer_bytes(s.model, batch), size, "cpu") == per_pass
    i32 = jnp.int32
    data = TrainData(
        jnp.zeros((n_train, 40)),
        jnp.zeros((n_train,), i32),
        EvalData(
            jnp.zeros((n_eval, 40)),
            jnp.zeros((n_eval,), i32),
            jnp.zeros((n_test, 40)),
            jnp.zeros((n_test,), i32),
        ),
    )
    analysis = compile_group(s, size, data)[0].run.memory_analysis()
    buffers = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    unsafe = memory.share_bytes(s, size, n_eval, n_test, "cpu") / memory.SAFETY
    assert 0.75 * unsafe <= buffers <= 1.05 * unsafe, (buffers, unsafe)
