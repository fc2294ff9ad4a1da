"""Scale-out and survival: shards, merge, resume after SIGKILL, SIGTERM, devices, memory-based chunks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sweep.cli import main
from sweep.config import experiment_from_dict
from sweep.config.grid import groups
from sweep.data import load_dataset
from sweep.runner import engine, memory
from sweep.runner.train import GroupSpec
from sweep.storage import rundir

EXPERIMENT = """
[model]
width = 16
depth = 2
sigma_w2 = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
[data]
name = "gaussian_mixture"
n_train = 256
n_test = 64
input_dim = 8
[train]
steps = 10
batch_size = 16
seed = [0, 1]
[measure]
every = 5
n_eval = 32
"""
VARIABLES = ("train_loss", "test_accuracy", "grad_norm", "q_layer", "diverged")


@pytest.fixture
def experiment(tmp_path) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> xr.Dataset:
    path = tmp_path_factory.mktemp("ref") / "exp.toml"
    path.write_text(EXPERIMENT)
    return engine.run(path, chunk_size=3)


def assert_same(a: xr.Dataset, b: xr.Dataset) -> None:
    for name in VARIABLES:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-5, atol=1e-7, err_msg=name)


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_shards_merged_equal_the_whole_run(tmp_path, experiment, reference, monkeypatch):
    out = tmp_path / "run"
    part0 = engine.run(experiment, out, shard=(0, 2), chunk_size=3)
    assert int(part0.attrs["missing_variants"]) > 0 and not (out / "results.nc").exists()
    with pytest.warns(UserWarning, match="missing"):
        partial = rundir.load(out)
    assert 0 < int(partial["completed"].sum()) < 12
    shown = []

    class Recorder:  # stands in for the progress bar: what total and counts would it show?
        def __init__(self, enabled, total):
            shown.append(total)

        def __enter__(self):
            return shown.append

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(engine, "_progress", Recorder)
    engine.run(experiment, out, shard=(1, 2), chunk_size=3, progress=True)  # the last writes results.nc
    # the bar counts the whole grid: shard 0's saved variants from the start, then every chunk to 12
    assert shown[0] == 12 and shown[1] == int(partial["completed"].sum()) and shown[-1] == 12
    assert shown[1:] == sorted(shown[1:])
    assert_same(rundir.load(out), reference)
    merged, missing = rundir.merge(out)
    assert missing == 0
    assert_same(merged, reference)
    assert rundir.status(out).done == 12


def test_shards_are_balanced_and_disjoint():
    exp = experiment_from_dict({"model": {"depth": [2, 4, 8, 16], "sigma_w2": [1.0, 2.0, 3.0]}})
    from sweep.runner.chunks import plan_chunks, shard_chunks

    chunks = plan_chunks(groups(exp), {g.key: 1 for g in groups(exp)})
    shards = [shard_chunks(chunks, i, 3) for i in range(3)]
    names = [c.name for s in shards for c in s]
    assert sorted(names) == sorted(c.name for c in chunks)
    costs = [sum(c.cost for c in s) for s in shards]
    assert max(costs) / min(costs) < 1.3


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tmp_path, experiment, reference):
    out = tmp_path / "run"
    args = ("run", str(experiment), "--out", str(out), "--chunk-size", "2", "--quiet", "--no-plot")
    proc = _cli(*args)
    chunks = out / "chunks"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(chunks.glob("*.npz"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(chunks.glob("*.npz")))
    assert done_before >= 1 and not (out / "results.nc").exists()
    assert main([*args, "--resume"]) == 0
    assert_same(rundir.load(out), reference)


@pytest.mark.slow
def test_sigterm_leaves_no_partial_files(tmp_path, experiment):
    out = tmp_path / "run"
    proc = _cli(
        "run",
        str(experiment),
        "--out",
        str(out),
        "--chunk-size",
        "2",
        "--quiet",
        "--no-plot",
        "--set",
        "train.steps=3000",
    )
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "chunks").glob("*.npz")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "SIGTERM" in err and "--resume" in err
    assert not list(out.rglob("*.tmp")) and not (out / "results.nc").exists()
    for path in (out / "chunks").glob("*.npz"):
        np.load(path)  # every visible chunk is complete


def test_chunk_size_follows_the_memory_estimate(tmp_path, experiment):
    out = tmp_path / "run"
    exp = engine.as_experiment(experiment)
    spec = GroupSpec.from_config(groups(exp)[0].static, load_dataset(exp.base.data))
    per_variant = memory.variant_bytes(spec, 32, 64)
    budget_gb = 3.5 * per_variant / 2**30  # room for 3 variants
    engine.run(experiment, out, memory_budget_gb=budget_gb)
    sizes = json.loads((out / "chunks" / "manifest.json").read_text())["chunk_sizes"]
    assert list(sizes.values()) == [3]
    assert len(list((out / "chunks").glob("*.npz"))) == 4


def test_cpu_chunks_are_cut_by_their_work(tmp_path, experiment, monkeypatch, reference):
    from sweep.runner import chunks

    (group,) = groups(engine.as_experiment(experiment))
    monkeypatch.setattr(chunks, "CPU_CHUNK_MULTIPLY_ADDS", 4.5 * chunks.variant_cost(group))
    assert chunks.work_cap(group, 2, "cpu") == 8 and chunks.work_cap(group, 2, "gpu") is None
    out = tmp_path / "run"
    assert_same(engine.run(experiment, out), reference)  # memory alone would allow one chunk of 12
    sizes = json.loads((out / "chunks" / "manifest.json").read_text())["chunk_sizes"]
    assert list(sizes.values()) == [4]
    assert len(list((out / "chunks").glob("*.npz"))) == 3


@pytest.mark.slow
def test_four_fake_devices_give_the_same_results(tmp_path, experiment, reference):
    out = tmp_path / "run"
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"}
    proc = _cli("run", str(experiment), "--out", str(out), "--no-plot", "--chunk-size", "3", env=env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "4 CPU devices" in err
    assert_same(rundir.load(out), reference)


@pytest.mark.slow
def test_resume_on_more_devices_keeps_the_chunks_and_their_numbers(tmp_path, experiment, reference):
    """Chunks of 3 saved by one device, the rest resumed on two: the saved chunk size is no multiple
    of the device count, so the program pads each chunk to one (the padding never shows)."""
    out = tmp_path / "run"
    engine.run(experiment, out, chunk_size=3)  # in this process: one CPU device (conftest)
    chunks = sorted((out / "chunks").glob("*.npz"))
    for path in chunks[1:]:
        path.unlink()
    (out / "results.nc").unlink()
    proc = _cli(
        "run", str(experiment), "--out", str(out), "--no-plot", "--resume", env={"JAX_NUM_CPU_DEVICES": "2"}
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "2 CPU devices" in err and len(list((out / "chunks").glob("*.npz"))) == len(chunks)
    assert_same(rundir.load(out), reference)


SPECTRA_ON_FOUR_DEVICES = """
import sys
import jax
from sweep.runner import engine, train

spectra = ("measure.jacobian=true", "measure.jacobian_inputs=8", "model.width=64")
ds = engine.run(sys.argv[1], sys.argv[2], spectra, chunk_size=12)
assert jax.local_device_count() == 4
hlo = "\\n".join(program.run.as_text() for program in train._COMPILED.values())
found = [op for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute") if op + "(" in hlo]
print("collectives:", found)
"""


@pytest.mark.slow
def test_spectra_on_four_devices_never_gather(tmp_path, experiment):
    """Per-variant SVDs run where their variants live: no collective in the compiled program, and the
    spectra equal a one-device run's. (Width 64: batched LAPACK kernels on more CPU devices than pool
    threads used to deadlock; see sweep.measure.spectrum.singular_values.)"""
    out = tmp_path / "run"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SPECTRA_ON_FOUR_DEVICES, str(experiment), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "collectives: []" in proc.stdout
    one = engine.run(
        experiment, overrides=("measure.jacobian=true", "measure.jacobian_inputs=8", "model.width=64")
    )
    four = rundir.load(out)
    for name in ("jacobian_mean_sq_sv", *VARIABLES):
        np.testing.assert_allclose(four[name].values, one[name].values, rtol=1e-4, atol=1e-5, err_msg=name)
    # float32 singular values carry an absolute error ~1e-7 of the largest one: log10 of one 5 decades
    # below it is good to ~1e-7 * 1e5 / ln(10) ~ 5e-3
    np.testing.assert_allclose(four["jacobian_log10_sv"].values, one["jacobian_log10_sv"].values, atol=5e-3)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_jax_distributed_equal_one(tmp_path, experiment, reference):
    out, port = tmp_path / "run", _free_port()
    common = (
        "run",
        str(experiment),
        "--out",
        str(out),
        "--no-plot",
        "--quiet",
        "--coordinator",
        f"localhost:{port}",
        "--num-processes",
        "2",
    )
    procs = [_cli(*common, "--process-id", str(i)) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert (out / "results.nc").exists()  # written by the process that finished last
    assert_same(rundir.load(out), reference)


@pytest.mark.slow
def test_submit_runs_one_shard_per_task(tmp_path, experiment, reference):
    from sweep.runner.submit import submit

    out = tmp_path / "run"
    jobs = submit(experiment, out, 2, cluster="local", timeout_min=10)
    missing = sorted(job.result() for job in jobs)
    assert missing[0] == 0  # the last task to finish saw the whole grid
    assert_same(rundir.load(out), reference)
