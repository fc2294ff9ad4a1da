"""Depth buckets (``sweep.config.grid``, ``sweep.runner.depth_buckets``): variants of several depths in
one program give the numbers of their own per-depth programs, from the same parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import experiment_from_dict
from sweep.config import grid as grid_module
from sweep.config.grid import MASKED_WORK_LIMIT, choose_buckets, groups
from sweep.nets import contract
from sweep.nets.initialisers import unit_draws, unit_draws_at_depth
from sweep.nets.mlp import MLP
from sweep.runner import engine

OUTPUTS = ("train_loss", "train_accuracy", "test_accuracy", "grad_norm", "q_layer", "c_layer")


def _masked_fraction(buckets, counts, n_blocks) -> float:
    own = sum(counts[d] * (n_blocks(d) + 2) for d in counts)
    run = sum(counts[d] * (n_blocks(max(b)) + 2) for b in buckets for d in b)
    return (run - own) / run


def test_the_schoenholz_depths_fit_in_few_programs_with_little_masked_work():
    """Depths 10..100 (91 of them, the full phase diagram of Schoenholz et al.), MLP blocks L - 1:
    6 programs, 11% of the block work masked (limit 25%); every depth in exactly one bucket. At most 6
    depths (the demo's 5): one program each."""
    counts = {d: 13 for d in range(10, 101)}
    buckets = choose_buckets(counts, lambda d: d - 1)
    assert len(buckets) <= 6
    assert sorted(d for b in buckets for d in b) == list(range(10, 101))
    fraction = _masked_fraction(buckets, counts, lambda d: d - 1)
    assert fraction <= MASKED_WORK_LIMIT
    assert len(buckets) == 6 and fraction == pytest.approx(0.112, abs=0.001)
    assert choose_buckets({d: 13 for d in (10, 20, 30, 45, 60)}, lambda d: d - 1) == [
        (10,),
        (20,),
        (30,),
        (45,),
        (60,),
    ]
    # ten depths 10..100: six programs, the shallow ones alone (merging them would mask the most)
    ten = choose_buckets({d: 1 for d in range(10, 101, 10)}, lambda d: d - 1)
    assert ten == [(10,), (20,), (30, 40), (50, 60), (70, 80), (90, 100)]


def test_draws_at_depth_are_the_own_programs_draws():
    key = jax.random.key(7)

    def shapes(depth: int) -> dict:
        return {"a": (3, 4), "w": (depth, 4, 4), "b": (depth, 4), "c": (2,)}

    for depth in (0, 1, 5, 9):
        own = unit_draws(key, shapes(depth))
        shared = jax.jit(lambda a: unit_draws_at_depth(key, shapes(9), ("w", "b"), a))(jnp.int32(depth))
        for name, value in own.items():
            got = np.asarray(shared[name])[:depth] if name in "wb" else np.asarray(shared[name])
            np.testing.assert_array_equal(got, np.asarray(value))


def _experiment(model: dict) -> dict:
    return {
        "model": {"width": 8, "depth": [2, 3, 5, 8], "sigma_w2": [1.0, 2.5], "sigma_b2": 0.05} | model,
        "data": {"name": "gaussian_mixture", "input_dim": 6, "n_train": 128, "n_test": 32},
        "train": {"steps": 20, "batch_size": 16, "learning_rate": 0.05},
        "measure": {"every": 10, "n_eval": 32},
    }


BUCKETED_MODELS = {
    "mlp": {},
    "mlp_layer_norm": {"norm": "layer", "init": "orthogonal", "layer_scales": "0.5 1.5", "depth": [2, 5]},
    # 1/sqrt(L) from each variant's own depth, not the bucket's (a learned gain here, a fixed one in
    # the residual CNN); batch norm's running statistics (block state) kept through the masked blocks
    "resnet_learned_batch_norm": {
        "arch": "resnet",
        "branch_scaling": "inv_sqrt_depth",
        "branch_gain": "learned",
        "norm": "batch",
        "depth": [2, 5],  # one bucket (fewer programs to compile for the costlier architectures)
    },
    "cnn": {"arch": "cnn", "channels": 4, "init": "delta_orthogonal", "norm": "batch", "depth": [2, 5]},
    "residual_cnn": {
        "arch": "residual_cnn",
        "channels": 4,
        "branch_scaling": "inv_sqrt_depth",
        "depth": [2, 5],
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("model", BUCKETED_MODELS.values(), ids=BUCKETED_MODELS.keys())
def test_a_bucket_gives_the_numbers_of_per_depth_programs(monkeypatch, model):
    """Four depths in 2 programs instead of 4, or two in one (buckets allowed from 2 depths on, to
    keep the test small); every output equals the per-depth programs' to float rounding (the masked blocks'
    where-selects change the order of nothing that is kept), NaN in the same places (the layers past
    each variant's own). Every built-in architecture with blocks of one shape."""
    spec = _experiment(model)
    depths = len(spec["model"]["depth"])
    monkeypatch.setattr(grid_module, "BUCKETS", depths // 2)
    monkeypatch.setattr(grid_module, "MASKED_WORK_LIMIT", 0.5)
    assert len(groups(experiment_from_dict(spec))) == depths // 2
    bucketed = engine.run(spec)
    monkeypatch.setenv("SWEEP_DEPTH_BUCKETS", "off")
    assert len(groups(experiment_from_dict(spec))) == depths
    alone = engine.run(spec)
    for name in OUTPUTS + (("mode_power",) if "mode_power" in alone else ()):
        a, b = bucketed[name].values, alone[name].values
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6, err_msg=name)


def test_no_buckets_with_a_jacobian_or_an_architecture_without_them(monkeypatch):
    # registered for this test only: other tests list the registered architectures
    monkeypatch.setitem(contract._REGISTRY, "mlp_without_buckets", MLP._replace(depth_buckets=False))
    monkeypatch.setattr(grid_module, "BUCKETS", 2)
    monkeypatch.setattr(grid_module, "MASKED_WORK_LIMIT", 0.5)
    assert len(groups(experiment_from_dict(_experiment({})))) == 2
    spec = _experiment({})
    spec["measure"]["jacobian"] = True
    assert len(groups(experiment_from_dict(spec))) == 4
    assert len(groups(experiment_from_dict(_experiment({"arch": "mlp_without_buckets"})))) == 4
    assert len(groups(experiment_from_dict(_experiment({"arch": "resnet"})))) == 2
    assert grid_module.depth_buckets_on()


@pytest.mark.slow
def test_a_run_begun_with_one_program_per_depth_resumes_with_its_own_plan(tmp_path, monkeypatch):
    """A run directory made before depth buckets (or with them off) keeps its per-depth chunks: resumed
    with buckets on it trains nothing and gives the same results, and `sweep status` reads it."""
    from sweep.storage.rundir import assemble_dir

    monkeypatch.setattr(grid_module, "BUCKETS", 2)
    monkeypatch.setattr(grid_module, "MASKED_WORK_LIMIT", 0.5)
    spec = _experiment({}) | {"train": {"steps": 4, "batch_size": 8, "learning_rate": 0.05}}
    monkeypatch.setenv("SWEEP_DEPTH_BUCKETS", "off")
    first = engine.run(spec, tmp_path)
    names = sorted(p.name for p in (tmp_path / "chunks").glob("*.npz"))
    assert len(names) == 4
    monkeypatch.delenv("SWEEP_DEPTH_BUCKETS")
    lines = []
    again = engine.run(spec, tmp_path, resume=True, log=lines.append)
    assert sorted(p.name for p in (tmp_path / "chunks").glob("*.npz")) == names
    assert "4 group(s)" in lines[0] and "depth bucket" not in lines[0]
    np.testing.assert_array_equal(first["train_loss"].values, again["train_loss"].values)
    assert assemble_dir(tmp_path)[1] == 0
