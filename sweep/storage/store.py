"""The only module that touches disk: per-chunk files, ``results.nc`` and ``config.toml``.

Layout of a run directory::

    DIR/config.toml          the resolved experiment (swept fields as explicit lists)
    DIR/chunks/manifest.json the experiment's fingerprint and chunk size (``--resume`` checks it)
    DIR/chunks/<group>-<i>.npz  one finished chunk of variants (its grid indices and outputs)
    DIR/chunks/damaged/      files found damaged, moved aside (never deleted; see ``sweep.storage.integrity``)
    DIR/results.nc           the assembled xarray Dataset
    DIR/figures/             figures drawn by ``sweep plot``

Every file is written to a temporary name in the same directory, flushed to disk and moved into place
with ``os.replace``, so no half-written file is ever visible under its final name; a failed write
(full disk, lost permission, ...) deletes its temporary file and raises ``WriteFailed``. Every file
carries a checksum that its reader verifies (``sweep.storage.integrity``); a file that fails it raises
``DamagedFile``.
"""

from __future__ import annotations

import contextlib
import errno
import io
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
from sweep.storage import integrity
from sweep.storage.integrity import DamagedFile, WriteFailed

RESULTS = "results.nc"
CONFIG = "config.toml"
CHUNKS = "chunks"
MANIFEST = "manifest.json"


def _new_file_mode() -> int:
    """The mode an ordinary new file gets (``mkstemp`` makes it private; a run directory is shared)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _sync_directory(folder: Path) -> None:
    """Flush a directory's entries (a rename is durable only then); a no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replacing(path: Path, sync_folder: bool = True) -> Iterator[str]:
    """A temporary file name beside ``path``: moved onto ``path`` on success, deleted on failure; then
    the folder is flushed too, unless not ``sync_folder`` (its caller flushes it later).

    Any OSError on the way (creating the folder or the file, writing, moving) becomes ``WriteFailed``."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, _new_file_mode())
        yield tmp
        os.replace(tmp, path)
        tmp = None
        if sync_folder:
            _sync_directory(path.parent)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(error, OSError):
            raise WriteFailed.of(path, error) from error
        raise


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb", sync_folder: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success move it onto ``path``, on failure delete it."""
    with _replacing(path, sync_folder) as tmp, open(tmp, mode) as handle:
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
    directory: Path,
    experiment: Experiment,
    chunk_sizes: dict[str, int],
    dataset_attrs: dict[str, Any],
    repair: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, int]:
    """Start a run in ``directory``, or join the one there; returns the chunk size per group to use.

    The first process to arrive writes ``config.toml`` and the manifest (fingerprint, chunk sizes); the
    manifest is created exclusively (``os.link`` fails if it exists), so concurrent shards agree on one
    chunking and later processes (resumed or other shards) adopt it. With ``repair`` (``--resume``), a
    damaged manifest is moved aside and rebuilt from the experiment, taking each group's chunk size from
    its saved chunks (DamagedFile if they disagree with the experiment), and a damaged ``config.toml`` is
    rewritten.
    """
    path = directory / CHUNKS / MANIFEST
    try:
        seen = path.stat()
        manifest = read_manifest(directory)
    except FileNotFoundError:
        manifest = None
    except DamagedFile as damage:
        if not repair:
            raise
        _sizes_of_saved_chunks(directory, experiment, chunk_sizes)  # refuses before anything moves
        try:
            moved = integrity.move_aside(path, seen)
        except OSError as error:
            raise WriteFailed.of(path, error) from error
        log(f"{path}: {damage.problem}; moved to {moved}; rebuilt from {experiment.source}")
        manifest = None
    if manifest is None:
        sizes = _sizes_of_saved_chunks(directory, experiment, chunk_sizes)
        write_config(directory, experiment)
        content = {"fingerprint": experiment.fingerprint(), "chunk_sizes": sizes, "dataset": dataset_attrs}
        _create_exclusively(path, json.dumps({**content, "crc32": integrity.text_crc32(_canonical(content))}))
        return read_manifest(directory)["chunk_sizes"]
    if _read_text(directory / CONFIG) != config_text(experiment):
        write_config(directory, experiment)
        log(
            f"{directory / CONFIG}: damaged (does not match the manifest); rewritten from {experiment.source}"
        )
    return manifest["chunk_sizes"]


def _create_exclusively(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` unless it exists (then leave it as it is), atomically: ``os.link``
    fails if the name exists, so of concurrent processes exactly one creates it."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, _new_file_mode())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        _sync_directory(path.parent)
    except OSError as error:
        raise WriteFailed.of(path, error) from error
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _canonical(content: dict[str, Any]) -> str:
    return json.dumps(content, sort_keys=True)


def _sizes_of_saved_chunks(
    directory: Path, experiment: Experiment, chunk_sizes: dict[str, int]
) -> dict[str, int]:
    """``chunk_sizes``, except that a group with saved chunks keeps the size they were made with.

    DamagedFile (naming the manifest) if a saved chunk belongs to another experiment or two chunks of a
    group disagree. Unreadable chunks are left for their reader to report and move aside."""
    sizes, made = dict(chunk_sizes), {}
    for file in sorted((directory / CHUNKS).glob("*.npz")):
        try:
            with np.load(file, allow_pickle=False) as data:
                claimed = integrity.record({integrity.RECORD: data[integrity.RECORD]})
        except Exception:  # any unreadable chunk is damaged: its reader says so
            continue
        problem = None
        if claimed.get("fingerprint") != experiment.fingerprint():
            problem = f"{file.name} belongs to experiment {claimed.get('fingerprint')!r}"
        elif claimed.get("group") not in sizes:
            problem = f"{file.name} belongs to no group of it"
        elif made.setdefault(claimed["group"], claimed.get("size")) != claimed.get("size"):
            problem = f"chunks of group {claimed['group']} were made with different sizes"
        if problem:
            raise DamagedFile(
                directory / CHUNKS / MANIFEST,
                f"missing or damaged, and the saved chunks do not agree with {experiment.source} ({problem})",
                "restore the manifest, or start over with --force",
            )
    return sizes | made


def clear_run(directory: Path) -> None:
    """Remove a previous run's chunks and results (``--force``)."""
    shutil.rmtree(directory / CHUNKS, ignore_errors=True)
    (directory / RESULTS).unlink(missing_ok=True)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest (fingerprint, chunk sizes, dataset attributes); None if there is none, DamagedFile
    if it cannot be read or fails its checksum."""
    path = directory / CHUNKS / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise _damaged_manifest(path, integrity.one_line(error)) from None
    try:
        content = json.loads(text)
        claimed = content.pop("crc32")
        if not all(key in content for key in ("chunk_sizes", "fingerprint", "dataset")):
            raise KeyError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _damaged_manifest(path, "not a sweep manifest, or cut short") from None
    if claimed != integrity.text_crc32(_canonical(content)):
        raise _damaged_manifest(path, "checksum mismatch")
    return content


def _damaged_manifest(path: Path, problem: str) -> DamagedFile:
    return DamagedFile(
        path,
        f"damaged ({problem})",
        f"`sweep run EXPERIMENT --out {path.parent.parent} --resume` rebuilds it from the experiment file",
    )


def chunk_path(directory: Path, name: str) -> Path:
    return directory / CHUNKS / f"{name}.npz"


def write_chunk(
    path: Path,
    grid_index: np.ndarray,
    outputs: dict[str, np.ndarray],
    steps: np.ndarray,
    identity: dict[str, Any],
) -> None:
    """Save one chunk: ``grid_index`` [V, n_axes], its recorded ``steps`` [R] and every output [V, ...],
    sealed with ``identity`` (fingerprint, chunk name, group, size) and checksums. The file's contents
    are on disk when this returns; its name once ``flush_chunks`` has run (a chunk whose rename a crash
    undid is simply computed again)."""
    arrays = integrity.seal({"grid_index": grid_index, "record_steps": steps, **outputs}, identity)
    with atomic_write(path, sync_folder=False) as f:
        np.savez(f, **arrays)


def flush_chunks(directory: Path) -> None:
    """Make the names of every chunk written so far durable (one flush of the folder, not one per chunk)."""
    try:
        _sync_directory(directory / CHUNKS)
    except OSError as error:
        raise WriteFailed.of(directory / CHUNKS, error) from error


def read_chunk(path: Path, expected: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(grid_index, outputs, record_steps) of a saved chunk whose record matches ``expected``.

    FileNotFoundError if it is not there; DamagedFile if it cannot be read, fails a checksum or belongs
    to another experiment or chunk."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        outputs = integrity.unseal(arrays, expected)
        grid_index, steps = outputs.pop("grid_index"), outputs.pop("record_steps")
    except (FileNotFoundError, PermissionError):  # not there, or not ours to read: not damage
        raise
    except integrity.Mismatch as error:
        raise DamagedFile(path, f"damaged ({error})") from None
    except Exception as error:  # whatever a damaged file makes NumPy raise
        raise DamagedFile(path, f"damaged ({type(error).__name__}: {integrity.one_line(error)})") from None
    return grid_index, outputs, steps


# ------------------------------------------------------------------------------------------- results
def write_config(directory: Path, experiment: Experiment) -> None:
    with atomic_write(directory / CONFIG) as f:
        tomli_w.dump(experiment.to_toml_dict(), f)


def config_text(experiment: Experiment) -> str:
    return tomli_w.dumps(experiment.to_toml_dict())


def write_results(directory: Path, results: xr.Dataset) -> Path:
    """Save the Dataset as ``DIR/results.nc`` (netCDF4 via h5netcdf), atomically, with its checksum.

    The file is first made in memory and written only if the disk has room for it: the HDF5 library
    crashes the process when a disk fills under it, a Python write raises WriteFailed."""
    path = directory / RESULTS
    sealed = results.assign_attrs(checksum=integrity.dataset_crc32(results))
    buffer = io.BytesIO()
    sealed.to_netcdf(buffer, engine="h5netcdf")
    data = buffer.getbuffer()
    try:
        free = shutil.disk_usage(directory).free
    except OSError as error:
        raise WriteFailed.of(path, error) from error
    needed = len(data) + (1 << 20)  # and room for the file system's own records
    if free < needed:
        raise WriteFailed(
            path, f"no space left on device: {needed / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free"
        )
    with atomic_write(path) as f:
        f.write(data)
    return path


def load(directory: str | Path) -> xr.Dataset:
    """Open ``DIR/results.nc`` fully into memory (the file is closed again) and verify its checksum.

    FileNotFoundError if there is none; DamagedFile if it is unreadable, damaged or not a sweep file."""
    path = Path(directory) / RESULTS
    if not path.exists():
        raise FileNotFoundError(f"{path}: no results here (run `sweep run EXPERIMENT --out {directory}`)")
    remedy = f"`sweep merge {directory}` rewrites it from the saved chunks"
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            results = ds.load()
    except Exception as error:  # whatever a damaged file makes HDF5 raise
        raise DamagedFile(path, f"not a readable netCDF file ({integrity.one_line(error)})", remedy) from None
    claimed = results.attrs.pop("checksum", None)
    if "fingerprint" not in results.attrs:
        raise DamagedFile(path, "not a sweep results file (no experiment fingerprint)", remedy)
    if claimed is None:
        raise DamagedFile(path, "no checksum (written by an older sweep, or changed since)", remedy)
    if claimed != integrity.dataset_crc32(results):
        raise DamagedFile(path, "damaged (checksum mismatch)", remedy)
    return results
