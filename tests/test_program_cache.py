"""Whole compiled programs kept between processes (``sweep.storage.program_cache``): how entries are
named and which programs get one (a warm run that loads one: tests/test_compile_cache.py)."""

from __future__ import annotations

from sweep.nets.mlp import MLP
from sweep.runner.train import GroupSpec, _all_in_sweep
from sweep.storage import program_cache


def test_entries_are_named_by_the_program_and_kept_only_for_code_in_sweep(tiny, monkeypatch, tmp_path):
    import jax

    from sweep.config import experiment_from_dict
    from sweep.config.grid import groups
    from sweep.data import load_dataset
    from sweep.nets import contract

    experiment = experiment_from_dict(tiny)
    group = groups(experiment)[0]
    spec = GroupSpec.from_config(group.static, load_dataset(experiment.base.data), group.bucketed)
    devices = jax.local_devices()
    assert program_cache.entry_name(("a", 1), devices) == program_cache.entry_name(("a", 1), devices)
    assert program_cache.entry_name(("a", 1), devices) != program_cache.entry_name(("a", 2), devices)
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=1")
    assert program_cache.entry_name(("a", 1), devices) != program_cache.entry_name(("a", 2), devices)
    assert _all_in_sweep(spec)

    def own_block(params, state, s, spec):  # a user's block: its code is not in the source digest
        return MLP.block(params, state, s, spec)

    monkeypatch.setitem(contract._REGISTRY, "mlp_own_block", MLP._replace(block=own_block))
    tiny["model"]["arch"] = "mlp_own_block"
    experiment = experiment_from_dict(tiny)
    group = groups(experiment)[0]
    assert not _all_in_sweep(GroupSpec.from_config(group.static, load_dataset(experiment.base.data)))
    monkeypatch.setenv("SWEEP_CACHE_DIR", "off")
    assert program_cache.load(("a", 1), devices) is None
    assert not program_cache.save(("a", 1), devices, object())
