"""Compiled programs are kept on disk and reused by the next run of the same shapes: by JAX's persistent
compilation cache, and whole (not even traced) by sweep.storage.program_cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from sweep.storage import program_cache
from sweep.storage.compile_cache import cache_dir

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


def _run(experiment, out, env) -> tuple[xr.Dataset, str]:
    command = ["run", str(experiment), "--out", str(out), "--no-plot", "--force"]
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.cli", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return xr.load_dataset(out / "results.nc"), proc.stderr


@pytest.mark.slow
def test_second_run_reuses_the_compiled_program(tmp_path):
    experiment = tmp_path / "exp.toml"
    experiment.write_text(EXPERIMENT)
    cache = tmp_path / "cache"
    env = {**os.environ, "SWEEP_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    first, _ = _run(experiment, tmp_path / "a", env)
    written = {p.name.removesuffix("-cache") for p in cache.iterdir() if p.is_file()}
    assert written, "nothing was cached"
    # without the whole programs sweep keeps beside (the next test), XLA's cache serves
    shutil.rmtree(cache / program_cache.PROGRAMS)
    # JAX_LOG_COMPILES: JAX reports every program it finds in the persistent cache
    second, log = _run(experiment, tmp_path / "b", env | {"JAX_LOG_COMPILES": "1"})
    found = set(re.findall(r"Persistent compilation cache hit for '[^']+' with key '([^']+)'", log))
    assert written <= found, f"compiled again: {sorted(written - found)}"
    # compile_seconds still holds tracing and lowering, which no cache saves (about 1 s here)
    assert second.attrs["compile_seconds"] < first.attrs["compile_seconds"]
    np.testing.assert_array_equal(second["train_loss"].values, first["train_loss"].values)


TRACED = "tracing train_share for jit"  # JAX_LOG_COMPILES's line when the group's program is traced


@pytest.mark.slow
def test_a_warm_run_loads_its_program_whole_and_a_damaged_entry_is_compiled_again(tmp_path):
    experiment = tmp_path / "exp.toml"
    experiment.write_text(EXPERIMENT)
    cache = tmp_path / "cache"
    env = {**os.environ, "SWEEP_CACHE_DIR": str(cache), "JAX_LOG_COMPILES": "1"}
    first, log = _run(experiment, tmp_path / "a", env)
    assert TRACED in log
    (entry,) = (cache / program_cache.PROGRAMS).iterdir()
    second, log = _run(experiment, tmp_path / "b", env)
    assert TRACED not in log, "traced again: the program was not loaded"
    for name in ("train_loss", "grad_norm", "q_layer", "test_accuracy"):
        np.testing.assert_array_equal(second[name].values, first[name].values)
    blob = bytearray(entry.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one damaged byte in the middle of the executable
    entry.write_bytes(bytes(blob))
    third, log = _run(experiment, tmp_path / "c", env)
    assert TRACED in log and "Traceback" not in log
    np.testing.assert_array_equal(third["train_loss"].values, first["train_loss"].values)
    # the damaged entry is gone: deleted, or replaced by a sound one where XLA compiled the program anew
    # (not where JAX's persistent cache supplied it: program_cache.compile_and_keep)
    assert not entry.exists() or bytes(blob) != entry.read_bytes()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SWEEP_CACHE_DIR", "off")
    assert cache_dir() is None
    monkeypatch.setenv("SWEEP_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SWEEP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "sweep" / "xla"


@pytest.mark.slow
def test_a_run_keeps_the_theory_programs_and_not_single_operations(tmp_path):
    """The mean-field solve (0.3-1 s to compile, below JAX's default threshold of 1 s) is stored, so a
    warm run does not compile it again beside the training; eager one-operation programs are not."""
    experiment = tmp_path / "exp.toml"
    experiment.write_text(EXPERIMENT)
    cache = tmp_path / "cache"
    env = {
        key: value for key, value in os.environ.items() if key != "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
    }
    _run(experiment, tmp_path / "a", env | {"SWEEP_CACHE_DIR": str(cache)})
    names = [p.name for p in cache.iterdir() if p.is_file()]
    assert any(name.startswith("jit__solve-") for name in names), names
    assert not [name for name in names if name.startswith(("jit_reshape-", "jit_convert_element_type-"))], (
        names
    )
