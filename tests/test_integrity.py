"""Damaged run directories and full disks: real damaged files (truncated, zeroed, random bytes, another
experiment's, a silently changed value), a real full file system (a small tmpfs, where mounting is
allowed) and injected write failures. Never a traceback, never lost or junk data."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from sweep.cli import main
from sweep.runner import engine
from sweep.storage import rundir, store
from sweep.storage.integrity import DamagedFile, DamagedRun

EXPERIMENT = """
[model]
width = 8
depth = 2
sigma_w2 = [0.5, 1.0, 1.5, 2.0]
[data]
name = "gaussian_mixture"
n_train = 128
n_test = 32
input_dim = 4
[train]
steps = 4
batch_size = 8
[measure]
every = 2
n_eval = 16
"""
OTHER = EXPERIMENT.replace("[0.5, 1.0, 1.5, 2.0]", "[0.7, 1.1, 1.3, 1.9]")  # same groups, chunk names
VARIABLES = ("train_loss", "test_accuracy", "grad_norm", "q_layer", "diverged")
DAMAGES = ("truncated", "zeroed", "random", "foreign")


@pytest.fixture
def experiment(tmp_path) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> xr.Dataset:
    path = tmp_path_factory.mktemp("ref") / "exp.toml"
    path.write_text(EXPERIMENT)
    return engine.run(path)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> Path:
    """A finished run of another experiment whose chunks have the same names (one per variant)."""
    folder = tmp_path_factory.mktemp("foreign")
    (folder / "other.toml").write_text(OTHER)
    engine.run(folder / "other.toml", folder / "run", chunk_size=1)
    return folder / "run"


def run_args(experiment: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(experiment), "--out", str(out), "--chunk-size", "1", "--no-plot", *extra]


def assert_same(a: xr.Dataset, b: xr.Dataset) -> None:
    for name in VARIABLES:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-6, err_msg=name)


def damage(path: Path, how: str, foreign_run: Path | None = None) -> None:
    """Damage a file for real: cut in half, a zeroed stretch in the middle, random bytes, or replaced by
    the file of the same name from another experiment's run."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "zeroed":
        data[len(data) // 3 : 2 * len(data) // 3] = bytes(len(data) // 3)
    elif how == "random":
        data = bytearray(np.random.default_rng(0).bytes(len(data)))
    elif how == "foreign":
        data = (
            foreign_run / path.relative_to(path.parents[1 if path.parent.name == "chunks" else 0])
        ).read_bytes()
    path.write_bytes(bytes(data))


def only_error_lines(err: str, n: int = 1) -> list[str]:
    lines = [line for line in err.strip().splitlines() if line.startswith("sweep: error:")]
    assert len(lines) == n, err
    return lines


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def chunk_files(out: Path) -> list[Path]:
    return sorted((out / "chunks").glob("*.npz"))


# ------------------------------------------------------------------------------------ damaged chunks
@pytest.mark.parametrize("how", [*DAMAGES, "changed value"])
def test_resume_moves_a_damaged_chunk_aside_and_recomputes_it(
    tmp_path, experiment, reference, foreign, capsys, how
):
    out = tmp_path / "run"
    assert main(run_args(experiment, out, "--quiet")) == 0
    target = chunk_files(out)[1]
    if how == "changed value":  # a valid file whose numbers changed (bit rot): only the checksum tells
        with np.load(target) as data:
            arrays = dict(data)
        arrays["train_loss"] = arrays["train_loss"] + 1.0
        np.savez(target, **arrays)
    else:
        damage(target, how, foreign)
    (out / "results.nc").unlink()
    assert main(run_args(experiment, out, "--resume", "--quiet")) == 0
    (line,) = capsys.readouterr().err.strip().splitlines()  # said even when --quiet
    assert line.startswith(f"sweep: warning: {target}: damaged (") and line.endswith("; recomputing it")
    assert f"moved to {out / 'chunks' / 'damaged' / target.name}" in line
    assert (out / "chunks" / "damaged" / target.name).exists()  # kept, not deleted
    np.load(target)  # recomputed
    assert_same(rundir.load(out), reference)


@pytest.mark.parametrize("how", DAMAGES)
def test_status_merge_and_load_name_a_damaged_chunk(tmp_path, experiment, foreign, capsys, how):
    out = tmp_path / "run"
    assert main(run_args(experiment, out, "--quiet")) == 0
    (out / "results.nc").unlink()
    first, second = chunk_files(out)[:2]
    damage(first, how, foreign)
    assert main(["status", str(out)]) == 2
    captured = capsys.readouterr()
    (line,) = only_error_lines(captured.err)
    assert str(first) in line and "--resume" in line
    assert "3/4 variants done" in captured.out and "1 chunk(s) damaged" in captured.out
    assert not first.exists() and (out / "chunks" / "damaged" / first.name).exists()

    damage(second, how, foreign)
    assert main(["merge", str(out)]) == 2
    (line,) = only_error_lines(capsys.readouterr().err)
    assert str(second) in line and not (out / "results.nc").exists()  # nothing built on bad data

    damage(chunk_files(out)[0], how, foreign)
    with pytest.raises(DamagedRun, match=chunk_files(out)[0].name):
        rundir.load(out)
    assert main(["status", str(out)]) == 0  # all three now counted as damaged, none found anew
    assert "1/4 variants done" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- damaged manifest
@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncated", "zeroed", "random", "changed value", "deleted"])
def test_damaged_manifest_is_rebuilt_on_resume(tmp_path, experiment, reference, capsys, how):
    out = tmp_path / "run"
    assert main(run_args(experiment, out, "--quiet", "--set", "train.steps=2")) == 0
    (out / "results.nc").unlink()
    manifest = out / "chunks" / "manifest.json"
    kept = {p.name: p.stat().st_mtime_ns for p in chunk_files(out)}
    if how == "deleted":
        manifest.unlink()
    else:
        if how == "changed value":  # still valid JSON: only the checksum tells
            manifest.write_text(manifest.read_text().replace('": 1}', '": 2}', 1))
        else:
            damage(manifest, how)
        assert main(["status", str(out)]) == 2
        (line,) = only_error_lines(capsys.readouterr().err)
        assert str(manifest) in line and "--resume" in line
    assert main(run_args(experiment, out, "--set", "train.steps=2", "--resume")) == 0
    assert {p.name: p.stat().st_mtime_ns for p in chunk_files(out)} == kept  # nothing recomputed
    assert store.read_manifest(out)["chunk_sizes"] == {next(iter(kept))[:-10]: 1}
    assert (out / "chunks" / "damaged" / "manifest.json").exists() == (how != "deleted")
    ref = engine.run(experiment, overrides=("train.steps=2",))
    assert_same(rundir.load(out), ref)


def test_damaged_manifest_beside_foreign_chunks_refuses_resume(tmp_path, experiment, foreign, capsys):
    out = tmp_path / "run"
    assert main(run_args(experiment, out, "--quiet")) == 0
    (out / "results.nc").unlink()
    damage(out / "chunks" / "manifest.json", "truncated")
    damage(chunk_files(out)[2], "foreign", foreign)
    before = sorted(p.name for p in out.rglob("*"))
    assert main(run_args(experiment, out, "--resume")) == 2
    (line,) = only_error_lines(capsys.readouterr().err)
    assert "manifest.json" in line and "--force" in line
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing written, nothing moved


def test_damaged_config_is_named(tmp_path, experiment, capsys):
    out = tmp_path / "run"
    assert main(run_args(experiment, out, "--quiet")) == 0
    (out / "results.nc").unlink()
    damage(out / "config.toml", "random")
    assert main(["status", str(out)]) == 2
    (line,) = only_error_lines(capsys.readouterr().err)
    assert str(out / "config.toml") in line and "--resume" in line
    assert main(run_args(experiment, out, "--quiet", "--resume")) == 0  # rewritten from the experiment
    assert rundir.status(out).done == 4


# ----------------------------------------------------------------------------- damaged results file
@pytest.mark.parametrize("how", [*DAMAGES, "changed value", "not sweep's"])
def test_plot_and_load_refuse_a_damaged_results_file(tmp_path, experiment, foreign, capsys, how):
    out = tmp_path / "run"
    assert main(run_args(experiment, out, "--quiet")) == 0
    results = out / "results.nc"
    if how == "changed value":
        with h5py.File(results, "r+") as f:
            f["train_loss"][0, 0] = 123.0
    elif how == "not sweep's":
        xr.Dataset({"x": ("i", np.arange(3.0))}).to_netcdf(results, engine="h5netcdf")
    else:
        damage(results, how, foreign)
    assert main(["plot", str(out)]) == 2
    (line,) = only_error_lines(capsys.readouterr().err)
    assert line.startswith(f"sweep: error: {results}: ") and "sweep merge" in line
    assert not (out / "figures").exists()
    with pytest.raises(DamagedFile, match=r"results\.nc"):
        rundir.load(out)
    assert main(["merge", str(out)]) == 0  # rewritten from the chunks
    assert rundir.load(out)["completed"].all()


# ------------------------------------------------------------------------ injected write failures
def _failing_after(calls: int, function, method: bool = False):
    """``function`` (a method if ``method``), except that from call number ``calls`` on it writes half a
    file and fails as on a full disk."""
    count = {"n": 0}

    def failing(*args, **kwargs):
        count["n"] += 1
        if count["n"] < calls:
            return function(*args, **kwargs)
        file = args[1 if method else 0]
        if hasattr(file, "write"):
            file.write(b"half a file")
        else:
            Path(file).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return failing


def test_a_failed_chunk_write_stops_with_what_is_saved(tmp_path, experiment, reference, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(np, "savez", _failing_after(3, np.savez))
    assert main(run_args(experiment, out, "--quiet")) == 1
    (line,) = only_error_lines(capsys.readouterr().err)
    assert "No space left on device" in line and "saved: 2 of 4 chunks" in line
    assert "not saved: 2 chunk(s) and" in line and line.endswith("--resume` finishes it")
    assert no_temporary_files(out) and len(chunk_files(out)) == 2 and not (out / "results.nc").exists()
    monkeypatch.undo()
    assert main(run_args(experiment, out, "--quiet", "--resume")) == 0
    assert_same(rundir.load(out), reference)


def test_a_failed_results_write_stops_with_what_is_saved(tmp_path, experiment, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    assert main(run_args(experiment, out, "--quiet")) == 1
    (line,) = only_error_lines(capsys.readouterr().err)
    assert f"{out / 'results.nc'}: could not write (no space left" in line
    assert "saved: 4 of 4 chunks" in line and "--resume` finishes it" in line
    assert no_temporary_files(out) and not (out / "results.nc").exists()


def test_a_failed_figure_write_stops_with_what_is_saved(tmp_path, experiment, monkeypatch, capsys):
    from matplotlib.figure import Figure

    out = tmp_path / "run"
    monkeypatch.setattr(Figure, "savefig", _failing_after(2, Figure.savefig, method=True))
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 1
    (line,) = only_error_lines(capsys.readouterr().err)
    assert "could not write (No space left on device)" in line and "figures" in line
    assert f"`sweep plot {out}` finishes it" in line
    assert no_temporary_files(out) and len(list((out / "figures").iterdir())) == 1
    assert rundir.load(out)["completed"].all()  # the results came first, and are whole


# ------------------------------------------------------------------------- a real full file system
@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs root and a system that allows mounting; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` until ``leave`` bytes are free (0: to the last byte)."""
    remaining = shutil.disk_usage(disk).free - leave
    try:
        with open(disk / f"filler-{len(list(disk.glob('filler-*')))}", "wb", buffering=0) as f:
            while remaining > 0:
                remaining -= f.write(bytes(min(remaining, 1 << 16)))
            while not leave:
                f.write(bytes(4096))
    except OSError:
        pass


def unfill(disk: Path) -> None:
    for path in disk.glob("filler-*"):
        path.unlink()


FULL_DISK_RUN = """
import sys
from sweep.storage import store
from sweep.cli import main

disk = sys.argv[3]
def fill_first(directory, results, write=store.write_results):
    try:  # fill the disk to the last byte
        with open(disk + "/filler-last", "wb", buffering=0) as f:
            while True:
                f.write(bytes(4096))
    except OSError:
        pass
    store.shutil.disk_usage = lambda path: type("Usage", (), {"free": 1 << 40})()  # the check is fooled
    return write(directory, results)
store.write_results = fill_first
sys.exit(main(["run", sys.argv[1], "--out", sys.argv[2], "--no-plot", "--quiet", "--resume"]))
"""


@pytest.mark.slow
def test_a_full_disk_at_every_stage(tmp_path, experiment, reference, small_disk, monkeypatch, capsys):
    out = small_disk / "run"
    fill(small_disk)  # full from the start: not even the config can be written
    assert main(run_args(experiment, out, "--quiet")) == 1
    (line,) = only_error_lines(capsys.readouterr().err)
    assert "No space left on device" in line and "saved: 0 of" in line and no_temporary_files(small_disk)

    unfill(small_disk)  # full after two chunks
    write_chunk, written = store.write_chunk, []

    def then_fill(path, *args):
        write_chunk(path, *args)
        written.append(path)
        if len(written) == 2:
            fill(small_disk)

    monkeypatch.setattr(store, "write_chunk", then_fill)
    assert main(run_args(experiment, out, "--quiet", "--force")) == 1
    (line,) = only_error_lines(capsys.readouterr().err)
    assert "No space left on device" in line and "saved: 2 of 4 chunks" in line and "--resume" in line
    assert no_temporary_files(small_disk) and len(chunk_files(out)) == 2
    monkeypatch.undo()

    unfill(small_disk)  # room for the chunks, not for the results file (the check refuses)
    fill(small_disk, leave=200_000)
    assert main(run_args(experiment, out, "--quiet", "--resume")) == 1
    (line,) = only_error_lines(capsys.readouterr().err)
    assert "results.nc: could not write (no space left" in line and "saved: 4 of 4 chunks" in line
    assert no_temporary_files(small_disk) and not (out / "results.nc").exists()

    # the disk fills between the check and the write: the HDF5 library must not see it (it crashes)
    unfill(small_disk)
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK_RUN, str(experiment), str(out), str(small_disk)],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=1",
        },
    )
    assert proc.returncode == 1, proc.stderr  # (a crash inside HDF5 exits -11)
    (line,) = only_error_lines(proc.stderr)
    assert "results.nc: could not write (No space left on device)" in line
    assert no_temporary_files(small_disk) and not (out / "results.nc").exists()

    unfill(small_disk)  # room for the results, and the disk fills before the figures
    write_results = store.write_results

    def results_then_fill(directory, results):
        path = write_results(directory, results)
        fill(small_disk)
        return path

    monkeypatch.setattr(store, "write_results", results_then_fill)
    assert main(["run", str(experiment), "--out", str(out), "--chunk-size", "1", "--quiet", "--resume"]) == 1
    (line,) = only_error_lines(capsys.readouterr().err)
    assert "No space left on device" in line and f"`sweep plot {out}` finishes it" in line
    assert no_temporary_files(small_disk)
    monkeypatch.undo()
    unfill(small_disk)
    assert_same(rundir.load(out), reference)
    assert main(["plot", str(out)]) == 0


def test_moving_aside_never_overwrites_and_leaves_a_file_replaced_meanwhile(tmp_path):
    from sweep.storage.integrity import damaged_names, move_aside

    path = tmp_path / "c.npz"
    path.write_bytes(b"bad")
    seen = path.stat()
    (tmp_path / "new").write_bytes(b"good")
    os.replace(tmp_path / "new", path)  # another process recomputed it after it was judged damaged
    assert move_aside(path, seen) is None and path.read_bytes() == b"good"
    assert not list((tmp_path / "damaged").iterdir())
    path.write_bytes(b"bad 1")
    assert move_aside(path) == tmp_path / "damaged" / "c.npz"
    path.write_bytes(b"bad 2")
    assert move_aside(path) == tmp_path / "damaged" / "c.1.npz"
    assert (tmp_path / "damaged" / "c.npz").read_bytes() == b"bad 1" and not path.exists()
    assert damaged_names(tmp_path) == {"c.npz"}


def test_files_are_readable_by_the_group_as_the_umask_allows(tmp_path):
    umask = os.umask(0o022)
    try:
        with store.atomic_write(tmp_path / "f") as f:
            f.write(b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644  # mkstemp alone makes 0o600
