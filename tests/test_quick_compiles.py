"""``sweep.runner.devices.use_quick_cpu_compiles``: LLVM -O1 for CPU-only installs, never over the
user's own choice of level."""

from __future__ import annotations

import importlib.util

from sweep.runner import devices


def test_quick_compiles_leave_the_users_level_and_other_flags(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no accelerator plugin
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert devices.use_quick_cpu_compiles()
    assert devices.QUICK_CPU_COMPILES in devices.os.environ["XLA_FLAGS"].split()
    assert "--xla_cpu_enable_fast_math=false" in devices.os.environ["XLA_FLAGS"].split()
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
    assert not devices.use_quick_cpu_compiles()
    assert devices.os.environ["XLA_FLAGS"] == "--xla_backend_optimization_level=3"


def test_no_quick_compiles_where_an_accelerator_plugin_is_installed(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "jax_plugins" else None)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert not devices.use_quick_cpu_compiles()
    assert "XLA_FLAGS" not in devices.os.environ
