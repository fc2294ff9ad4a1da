"""The ``sweep`` console entry (``sweep.cli.console``): it ends the process with ``os._exit`` after the
exit handlers, so its output must be flushed and its exit code kept (stdout is a pipe here: block
buffered, lost without the flush)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweep.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_the_console_flushes_its_output_and_keeps_the_exit_code(tmp_path):
    done = _sweep("theory", "--activation", "tanh", "--sigma-b2", "0.05", "--sigma-w2", "1.5", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)  # the whole table arrived, not a truncated buffer
    assert rows and "sigma_w2" in json.dumps(rows)
    refused = _sweep("status", str(tmp_path / "missing"))
    assert refused.returncode == 2
    assert "not a directory" in refused.stderr and "Traceback" not in refused.stderr
