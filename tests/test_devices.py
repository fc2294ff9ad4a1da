"""One XLA CPU device per core unless the user chose; a choice made by the user always wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sweep.runner.devices import cpu_cores

PROBE = """
import jax
from sweep.runner.devices import use_every_cpu_core
asked = use_every_cpu_core()
print(asked, jax.local_device_count())
"""


def _probe(env: dict[str, str], code: str = PROBE) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env}, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_one_cpu_device_per_core():
    assert _probe({"JAX_PLATFORMS": "cpu"}) == f"True {cpu_cores()}"


@pytest.mark.parametrize(
    "env",
    [
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"},
        {"JAX_NUM_CPU_DEVICES": "3"},
    ],
)
def test_the_users_device_count_wins(env):
    assert _probe({"JAX_PLATFORMS": "cpu", **env}) == "False 3"


def test_too_late_once_jax_has_started():
    started_first = "import jax\njax.numpy.zeros(1).block_until_ready()\n" + PROBE
    assert _probe({"JAX_PLATFORMS": "cpu"}, started_first) == "False 1"
