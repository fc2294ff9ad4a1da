"""Whole compiled programs kept between processes (``sweep.storage.program_cache``): a warm run loads
its group's program without tracing it, gives the same numbers, and survives a damaged entry."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from sweep.nets.mlp import MLP
from sweep.runner.train import GroupSpec, _all_in_sweep
from sweep.storage import program_cache

EXPERIMENT = """
[model]
width = 16
depth = 3
sigma_w2 = [1.0, 2.0]
[data]
name = "gaussian_mixture"
n_train = 128
n_test = 64
input_dim = 8
[train]
steps = 6
batch_size = 16
[measure]
every = 3
n_eval = 32
"""
TRACED = "tracing train_share for jit"  # JAX_LOG_COMPILES's line when the group's program is traced


def _run(experiment, out, cache) -> tuple[xr.Dataset, str]:
    env = {**os.environ, "SWEEP_CACHE_DIR": str(cache), "JAX_LOG_COMPILES": "1"}
    command = ["run", str(experiment), "--out", str(out), "--no-plot", "--force"]
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.cli", *command], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return xr.load_dataset(out / "results.nc"), proc.stderr


@pytest.mark.slow
def test_a_warm_run_loads_its_program_whole_and_a_damaged_entry_is_compiled_again(tmp_path):
    experiment = tmp_path / "exp.toml"
    experiment.write_text(EXPERIMENT)
    cache = tmp_path / "cache"
    first, log = _run(experiment, tmp_path / "a", cache)
    assert TRACED in log
    (entry,) = (cache / program_cache.PROGRAMS).iterdir()
    second, log = _run(experiment, tmp_path / "b", cache)
    assert TRACED not in log, "traced again: the program was not loaded"
    for name in ("train_loss", "grad_norm", "q_layer", "test_accuracy"):
        np.testing.assert_array_equal(second[name].values, first[name].values)
    blob = bytearray(entry.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one damaged byte in the middle of the executable
    entry.write_bytes(bytes(blob))
    third, log = _run(experiment, tmp_path / "c", cache)
    assert TRACED in log and "Traceback" not in log
    np.testing.assert_array_equal(third["train_loss"].values, first["train_loss"].values)
    # the damaged entry is gone: deleted, or replaced by a sound one where XLA compiled the program anew
    # (not where JAX's persistent cache supplied it: program_cache.compile_and_keep)
    assert not entry.exists() or bytes(blob) != entry.read_bytes()


def test_entries_are_named_by_the_program_and_kept_only_for_code_in_sweep(tiny, monkeypatch, tmp_path):
    import jax

    from sweep.config import experiment_from_dict
    from sweep.config.grid import groups
    from sweep.data import load_dataset
    from sweep.nets.contract import register_architecture

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

    register_architecture("mlp_own_block", MLP._replace(block=own_block))
    tiny["model"]["arch"] = "mlp_own_block"
    experiment = experiment_from_dict(tiny)
    group = groups(experiment)[0]
    assert not _all_in_sweep(GroupSpec.from_config(group.static, load_dataset(experiment.base.data)))
    monkeypatch.setenv("SWEEP_CACHE_DIR", "off")
    assert program_cache.load(("a", 1), devices) is None
    assert not program_cache.save(("a", 1), devices, object())
