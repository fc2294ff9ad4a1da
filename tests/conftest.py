"""Shared fixtures: tiny experiments that compile and run in seconds on a 2-core CPU."""

from __future__ import annotations

import copy
import os

# The tests' programs are tiny: compile time dominates, and XLA's CPU backend compiles several times
# faster without LLVM optimisation (results are the same computation). Set before JAX starts.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# Tests compile for themselves: no compiled program from an earlier run (tests/test_compile_cache.py
# turns the cache on where it tests it). Subprocesses inherit this.
os.environ["SWEEP_CACHE_DIR"] = "off"

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# One CPU device in this process whatever the machine's cores (sweep.run would otherwise ask for one per
# core): test outcomes must not depend on which test starts JAX first. Several devices are tested in
# subprocesses (tests/test_durability.py) and by every CLI test.
jax.config.update("jax_num_cpu_devices", 1)

TINY = {
    "model": {"width": 16, "depth": 3, "sigma_w2": [1.0, 2.0], "sigma_b2": 0.05},
    "data": {"name": "gaussian_mixture", "n_train": 256, "n_test": 128, "input_dim": 12},
    "train": {"steps": 12, "batch_size": 16, "learning_rate": 0.05},
    "measure": {"every": 4, "n_eval": 64},
}


@pytest.fixture
def tiny() -> dict:
    """A fresh copy of a tiny experiment mapping (2 variants, one group)."""
    return copy.deepcopy(TINY)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free every compiled program when a test module ends. Each XLA CPU executable holds memory
    mappings of its own, and one process running the whole suite otherwise keeps thousands of them (the
    engine caches its programs for the life of the process): past the kernel's map limit (65,530 by
    default) the next compilation crashed inside XLA."""
    yield
    import gc

    from sweep.runner import train

    train._COMPILED.clear()
    jax.clear_caches()
    gc.collect()
