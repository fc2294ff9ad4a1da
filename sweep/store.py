"""The only module that touches disk: per-chunk files, ``results.nc`` and ``config.toml``.

Layout of a run directory::

    DIR/config.toml          the resolved experiment (swept fields as explicit lists)
    DIR/chunks/manifest.json the experiment's fingerprint and chunk size (``--resume`` checks it)
    DIR/chunks/<group>-<i>.npz  one finished chunk of variants (its grid indices and outputs)
    DIR/results.nc           the assembled xarray Dataset
    DIR/figures/             figures drawn by ``sweep plot``

Every file is written to a temporary name in the same directory and moved into place with
``os.replace``, so no half-written file is ever visible under its final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import tomli_w
import xarray as xr

from sweep.config import Experiment

RESULTS = "results.nc"
CONFIG = "config.toml"
CHUNKS = "chunks"
MANIFEST = "manifest.json"


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[str]:
    """A temporary file name beside ``path``: moved onto ``path`` on success, deleted on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success move it onto ``path``, on failure delete it."""
    with _replacing(path) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_with(path: Path, writer: Callable[[str], None]) -> None:
    """Atomically create ``path`` with a function that writes a file given its name (e.g. to_netcdf)."""
    with _replacing(path) as tmp:
        writer(tmp)


def holds_results(directory: Path) -> bool:
    """Whether ``directory`` already holds a run (results or chunks)."""
    return (directory / RESULTS).exists() or (directory / CHUNKS).exists()


# -------------------------------------------------------------------------------------------- chunks
def open_run(
    directory: Path, experiment: Experiment, chunk_sizes: dict[str, int], dataset_attrs: dict[str, Any]
) -> dict[str, int]:
    """Start a run in ``directory``, or join the one there; returns the chunk size per group to use.

    The first process to arrive writes ``config.toml`` and the manifest (fingerprint, chunk sizes); the
    manifest is created exclusively (``os.link`` fails if it exists), so concurrent shards agree on one
    chunking and later processes (resumed or other shards) adopt it.
    """
    path = directory / CHUNKS / MANIFEST
    if not path.exists():
        write_config(directory, experiment)
        manifest = {
            "fingerprint": experiment.fingerprint(),
            "chunk_sizes": chunk_sizes,
            "dataset": dataset_attrs,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f)
        try:
            os.link(tmp, path)  # atomic and exclusive: exactly one process creates the manifest
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return read_manifest(directory)["chunk_sizes"]


def clear_run(directory: Path) -> None:
    """Remove a previous run's chunks and results (``--force``)."""
    shutil.rmtree(directory / CHUNKS, ignore_errors=True)
    (directory / RESULTS).unlink(missing_ok=True)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / CHUNKS / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def chunk_path(directory: Path, name: str) -> Path:
    return directory / CHUNKS / f"{name}.npz"


def write_chunk(
    path: Path, grid_index: np.ndarray, outputs: dict[str, np.ndarray], steps: np.ndarray
) -> None:
    """Save one chunk: ``grid_index`` [V, n_axes], its recorded ``steps`` [R] and every output [V, ...]."""
    with atomic_write(path) as f:
        np.savez(f, grid_index=grid_index, record_steps=steps, **outputs)


def read_chunk(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(grid_index, outputs, record_steps) of a saved chunk."""
    with np.load(path, allow_pickle=False) as data:
        outputs = {k: data[k] for k in data.files if k not in ("grid_index", "record_steps")}
        return data["grid_index"], outputs, data["record_steps"]


# ------------------------------------------------------------------------------------------- results
def write_config(directory: Path, experiment: Experiment) -> None:
    with atomic_write(directory / CONFIG) as f:
        tomli_w.dump(experiment.to_toml_dict(), f)


def config_text(experiment: Experiment) -> str:
    return tomli_w.dumps(experiment.to_toml_dict())


def write_results(directory: Path, results: xr.Dataset) -> Path:
    """Save the Dataset as ``DIR/results.nc`` (netCDF4 via h5netcdf), atomically."""
    path = directory / RESULTS
    write_with(path, lambda tmp: results.to_netcdf(tmp, engine="h5netcdf"))
    return path


def load(directory: str | Path) -> xr.Dataset:
    """Open ``DIR/results.nc`` fully into memory (the file is closed again)."""
    path = Path(directory) / RESULTS
    if not path.exists():
        raise FileNotFoundError(f"{path}: no results here (run `sweep run EXPERIMENT --out {directory}`)")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()
