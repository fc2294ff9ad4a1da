"""Compiled group programs kept whole between processes, so that a warm run neither traces nor lowers.

JAX's persistent compilation cache (``sweep.storage.compile_cache``) skips XLA's compilation, but every
process still traces the training program and lowers it to StableHLO to find its entry: 0.5-0.7 s a
group on a 2-core CPU, most of a warm run's compile phase. This cache keeps the compiled executable
itself (``jax.experimental.serialize_executable``) in ``cache_dir() / "programs"`` and loads it in
milliseconds.

An entry is only ever reused for the same program. Its name is a SHA-256 of everything the program is
made of: the engine's own source (every ``.py`` file of the ``sweep`` package, so any change to the code
misses), the versions of Python, JAX, jaxlib, optax and numpy, ``XLA_FLAGS``, JAX's configuration, the
devices (platform, kind, count, the backend's version) and on a CPU the processor's model and
instruction-set flags (an executable is machine code for them), and the caller's description of the
program (``parts``: the group's spec, chunk size, data shapes). The caller uses it only for programs
whose code is all in ``sweep`` (built-in architectures and activations): a user's own module is not in
the source digest. Files are written atomically with a CRC-32 over their bytes, checked before
anything is unpickled; a damaged or unreadable entry is deleted and the program compiled anew. Only
programs XLA compiled in this process are kept (``compile_and_keep``).
``SWEEP_CACHE_DIR=off`` turns this cache off with the other.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import platform
import struct
import sys
import zlib
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jax

from sweep.storage.compile_cache import cache_dir

PROGRAMS = "programs"  # beside the compiled programs of JAX's cache: cache_dir() / this
HEADER = struct.Struct("<4sIQ")  # magic, CRC-32 of the payload, its length
MAGIC = b"SWP1"
MAX_ENTRIES = 256
CACHE_HIT = "/jax/compilation_cache/cache_hits"  # JAX's event: its persistent cache supplied an executable


@functools.cache
def _source_digest() -> str:
    """SHA-256 over the ``sweep`` package's Python files (their paths and bytes)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


@functools.cache
def _processor() -> str:
    """The CPU's model and instruction-set flags (Linux), else what ``platform`` says."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        wanted = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
        return "\n".join(dict.fromkeys(wanted))  # one copy per distinct line (every core repeats them)
    return f"{platform.machine()} {platform.processor()}"


def entry_name(parts: tuple[Any, ...], devices: list[jax.Device]) -> str:
    """The file name of a program's entry: a SHA-256 of the program's description and its context."""
    config = sorted((k, repr(v)) for k, v in jax.config.values.items() if "cache" not in k and "log" not in k)
    first = devices[0]
    context = (
        "sweep-program-v1",
        _source_digest(),
        sys.version,
        [_version(p) for p in ("jax", "jaxlib", "optax", "numpy")],
        os.environ.get("XLA_FLAGS", ""),
        config,
        [(d.platform, d.device_kind, d.id, d.process_index) for d in devices],
        getattr(first.client, "platform_version", ""),
        _processor() if first.platform == "cpu" else "",
        parts,
    )
    return hashlib.sha256(repr(context).encode()).hexdigest() + ".program"


def _entry_path(parts: tuple[Any, ...], devices: list[jax.Device]) -> Path | None:
    directory = cache_dir()
    return None if directory is None else directory / PROGRAMS / entry_name(parts, devices)


def load(parts: tuple[Any, ...], devices: list[jax.Device]) -> Any | None:
    """The compiled program of this description from the cache (a ``jax.stages.Compiled``), or None
    (no entry, the cache off, or an entry that fails its checksum or does not load: deleted)."""
    path = _entry_path(parts, devices)
    if path is None or not path.is_file():
        return None
    try:
        blob = path.read_bytes()
        magic, crc, length = HEADER.unpack_from(blob)
        payload = blob[HEADER.size :]
        if magic != MAGIC or length != len(payload) or crc != zlib.crc32(payload):
            raise ValueError("damaged program entry")
        executable, in_tree, out_tree = pickle.loads(payload)  # our own cache, checksummed
        from jax.experimental.serialize_executable import deserialize_and_load

        compiled = deserialize_and_load(executable, in_tree, out_tree, execution_devices=devices)
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept by the pruning in save
        return compiled
    except Exception:  # any failure means: compile it again (and replace the entry)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def compile_and_keep(parts: tuple[Any, ...], devices: list[jax.Device], build: Callable[[], Any]) -> Any:
    """``build()`` (lower and compile), kept for later processes where XLA compiled it now. An
    executable JAX's persistent cache supplied is not kept: serialised again it loads but does not run
    (XLA CPU: "Function ... not found"); while any compilation of this process hits that cache (the
    theory programs' thread too) nothing is kept, and a later fresh compilation keeps it."""
    hits: list[str] = []

    def listen(event: str, **_: Any) -> None:
        if event == CACHE_HIT:
            hits.append(event)

    jax.monitoring.register_event_listener(listen)
    try:
        compiled = build()
    finally:
        jax.monitoring.unregister_event_listener(listen)
    if not hits:
        save(parts, devices, compiled)
    return compiled


def save(parts: tuple[Any, ...], devices: list[jax.Device], compiled: Any) -> bool:
    """Keep a compiled program for later processes; False (and nothing written) where the cache is off,
    the program cannot be serialised or the cache cannot be written (a run never fails for its cache)."""
    path = _entry_path(parts, devices)
    if path is None:
        return False
    from sweep.storage import store

    try:
        from jax.experimental.serialize_executable import serialize

        payload = pickle.dumps(serialize(compiled), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # a backend without serialisation: just no entry
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with store.atomic_write(path, sync_folder=False) as handle:
            handle.write(HEADER.pack(MAGIC, zlib.crc32(payload), len(payload)) + payload)
    except (OSError, store.WriteFailed):
        return False
    _prune(path.parent)
    return True


def _prune(directory: Path) -> None:
    """Keep the ``MAX_ENTRIES`` most recently used entries (an entry per program and version of the
    code, about 1 MB each: a changed engine leaves its old entries behind)."""
    with contextlib.suppress(OSError):
        entries = sorted(directory.glob("*.program"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[MAX_ENTRIES:]:
            stale.unlink(missing_ok=True)
