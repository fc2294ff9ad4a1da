"""Verifying what a run directory holds: checksums of the files the engine writes, damaged files moved aside.

Every file the engine writes says what it should contain, so a reader can tell a good file from a
truncated, zeroed, overwritten or foreign one:

- a chunk file carries, beside its arrays, a record ``_integrity`` (JSON): the experiment's fingerprint,
  the chunk's name and compiled size, and the CRC-32 of every array (dtype, shape and bytes);
- the manifest carries the CRC-32 of its own contents;
- ``results.nc`` carries the CRC-32 of its variables (attribute ``checksum``) and the experiment's
  fingerprint.

CRC-32 (``zlib.crc32``, about 5 GB/s on one core, four times faster than SHA-256) guards against
accidents (interrupted copies, lost nodes, storage faults), not against an adversary. A file that cannot
be read, whose checksums disagree, or that belongs to another experiment or chunk is *damaged*: it is
moved into ``damaged/`` beside it (never deleted) and reported in one line; ``--resume`` recomputes it.
A file that cannot be written raises ``WriteFailed`` (``sweep.storage.store``'s writers; the engine adds what
is saved and what is not).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

RECORD = "_integrity"  # the chunk file entry holding its identity and checksums
DAMAGED = "damaged"  # the folder beside a damaged file where it is moved


class DamagedFile(ValueError):
    """A file of a run directory that cannot be trusted: ``path``, what is wrong and what to do, one line."""

    def __init__(self, path: Path, problem: str, remedy: str | None = None):
        super().__init__(f"{path}: {problem}" + (f"; {remedy}" if remedy else ""))
        self.path, self.problem, self.remedy = path, problem, remedy


class WriteFailed(Exception):
    """A file of the run could not be written (full disk, no permission, ...).

    ``path`` and ``reason`` say which and why; the engine adds what is ``saved`` and what is
    ``not_saved`` (each a phrase, or None where it does not know)."""

    def __init__(self, path: Path, reason: str, saved: str | None = None, not_saved: str | None = None):
        super().__init__(f"{path}: could not write ({reason})")
        self.path, self.reason, self.saved, self.not_saved = path, reason, saved, not_saved

    @classmethod
    def of(cls, path: Path, error: OSError) -> WriteFailed:
        """The failure to write ``path`` that ``error`` reports."""
        return cls(path, error.strerror or one_line(error))

    def telling(self, saved: str, not_saved: str) -> WriteFailed:
        """The same failure, saying what is saved and what is not."""
        return WriteFailed(self.path, self.reason, saved, not_saved)


class Mismatch(ValueError):
    """A file's contents disagree with its checksum record, or the record with what the reader expects."""


class DamagedRun(ValueError):
    """Damaged files found (and moved aside) while reading a run directory; one line per file."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def one_line(error: BaseException, limit: int = 240) -> str:
    """An exception's message on one line (native libraries' messages run over several), shortened."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def crc32(array: np.ndarray, value: int = 0) -> int:
    """CRC-32 of an array's dtype, shape and bytes (continuing from ``value``)."""
    array = np.ascontiguousarray(array)
    value = zlib.crc32(f"{array.dtype.str}{array.shape}".encode(), value)
    return zlib.crc32(array.reshape(-1).view(np.uint8), value)


def text_crc32(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08x}"


def dataset_crc32(dataset: Any) -> str:
    """CRC-32 of an xarray Dataset's variables and coordinates (names, dtypes, shapes, values), made
    alike where netCDF gives them back in another form: every NaN as NumPy's, text as text."""
    value = 0
    for name in sorted(map(str, dataset.variables)):
        array = np.asarray(dataset[name].values)
        if array.dtype.kind in "OUS":
            array = np.frombuffer("\0".join(map(str, array.ravel().tolist())).encode(), np.uint8)
        elif array.dtype.kind in "fc":
            array = np.where(np.isnan(array), np.nan, array).astype(array.dtype)
        value = crc32(array, zlib.crc32(name.encode(), value))
    return f"{value:08x}"


# ------------------------------------------------------------------------------------------ chunks
def seal(arrays: Mapping[str, np.ndarray], identity: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``arrays`` plus the record: ``identity`` (fingerprint, chunk, size) and a CRC-32 per array."""
    sums = {name: f"{crc32(array):08x}" for name, array in arrays.items()}
    return {**arrays, RECORD: np.asarray(json.dumps({**identity, "crc32": sums}))}


def record(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The identity and checksums a sealed file claims; ValueError if it has no readable record."""
    if RECORD not in arrays:
        raise Mismatch("no checksum record (written by an older sweep, or not by sweep)")
    try:
        claimed = json.loads(str(arrays[RECORD][()]))
    except ValueError:
        claimed = None
    if not isinstance(claimed, dict) or not isinstance(claimed.get("crc32"), dict):
        raise Mismatch("its checksum record is malformed")
    return claimed


def unseal(arrays: Mapping[str, np.ndarray], expected: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a sealed file, checked against their checksums and the ``expected`` identity.

    Mismatch (saying what is wrong) when a checksum or an identity field disagrees."""
    claimed = record(arrays)
    for key, value in expected.items():
        if claimed.get(key) != value:
            raise Mismatch(f"a file of another run: its {key} is {claimed.get(key)!r}, not {value!r}")
    contents = {name: array for name, array in arrays.items() if name != RECORD}
    if set(contents) != set(claimed["crc32"]):
        raise Mismatch(f"its arrays {sorted(contents)} are not those it records")
    for name, array in contents.items():
        if f"{crc32(array):08x}" != claimed["crc32"][name]:
            raise Mismatch(f"checksum mismatch in {name!r}")
    return contents


# ------------------------------------------------------------------------------------- moving aside
def move_aside(path: Path, seen: os.stat_result | None = None) -> Path | None:
    """Move a damaged ``path`` into ``damaged/`` beside it, never over an earlier one; returns where.

    ``seen``: the file's stat when it was judged damaged; if ``path`` is now another file (another
    process replaced it with a good one meanwhile), nothing is moved and None is returned, as it is when
    the file has gone (another process moved it first)."""
    folder = path.parent / DAMAGED
    folder.mkdir(exist_ok=True)
    for n in range(1000):
        target = folder / (path.name if n == 0 else f"{path.stem}.{n}{path.suffix}")
        try:
            os.link(path, target)  # exclusive: an earlier damaged copy is never overwritten
        except FileExistsError:
            continue
        except FileNotFoundError:
            return None
        now = target.stat()
        if seen is not None and (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            target.unlink()  # a good file arrived meanwhile: leave it
            return None
        path.unlink(missing_ok=True)
        return target
    raise DamagedFile(path, f"damaged, and {folder} already holds 1000 damaged copies of it")


def damaged_names(folder: Path) -> set[str]:
    """Names of the files moved into ``folder/damaged`` (``NAME.npz`` for ``NAME.npz``, ``NAME.<n>.npz``)."""
    names = set()
    for entry in os.listdir(folder / DAMAGED) if (folder / DAMAGED).is_dir() else ():
        stem, suffix = os.path.splitext(entry)
        base, _, n = stem.rpartition(".")
        names.add(f"{base}{suffix}" if base and n.isdigit() else entry)
    return names
