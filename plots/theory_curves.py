"""The theory curves the figures draw, kept beside them in ``theory_curves.npz``.

In a fresh process a figure's mean-field curves cost more than the figure itself: the theory's programs
compile (about 1 s of the standard figures' 3 s when drawn alone). ``draw_all`` therefore draws inside
``kept_in(folder / CURVES)``, and the figures call the theory through ``curve``: each call is looked up by
what it computes (the function, the activation, every argument's value, and a fingerprint of the theory's
code and of the JAX and NumPy versions); a miss calls the theory, and on leaving, the file is rewritten
with the calls of this drawing. ``sweep run`` draws its figures, so ``sweep plot`` of its directory finds
them there, and redrawing a run reuses them: the numbers are those the theory returned, bit for bit. A
file that is missing, damaged or made by other code is ignored (and replaced); outside ``kept_in`` (a
figure function called on its own) ``curve`` just calls the theory.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

import numpy as np

CURVES = "theory_curves.npz"
_FINGERPRINT = "fingerprint"


class _Kept:
    """The curves of one folder: those read from its file and those computed or used by this drawing."""

    def __init__(self, path: Path):
        self.path = path
        self.fingerprint = code_fingerprint()
        self.found = _read(path, self.fingerprint)
        self.used: dict[str, np.ndarray | tuple[np.ndarray, ...]] = {}
        self.computed = False


_ACTIVE: ContextVar[_Kept | None] = ContextVar("theory_curves", default=None)


def code_fingerprint() -> str:
    """A digest of what the numbers depend on: the source of ``sweep.theory`` and of the activations,
    and the versions of JAX and NumPy (and whether JAX computes in float64)."""
    import jax

    import sweep.nets.activations
    import sweep.theory

    digest = hashlib.sha256()
    sources = sorted(Path(sweep.theory.__file__).parent.glob("*.py"))
    for path in [*sources, Path(sweep.nets.activations.__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    versions = (jax.__version__, np.__version__, jax.config.jax_enable_x64, jax.config.jax_platforms)
    digest.update(repr(versions).encode())
    return digest.hexdigest()


def _read(path: Path, fingerprint: str) -> dict[str, np.ndarray | tuple[np.ndarray, ...]]:
    """The curves in ``path`` if it was written by the same code, else none. Entries are named KEY (one
    array) or KEY.I (the I-th array of a tuple)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored[_FINGERPRINT]) != fingerprint:
                return {}
            arrays = {name: stored[name] for name in stored.files if name != _FINGERPRINT}
    except Exception:  # missing, damaged, foreign: draw without it (and replace it)
        return {}
    found: dict[str, np.ndarray | tuple[np.ndarray, ...]] = {}
    parts: dict[str, dict[int, np.ndarray]] = {}
    for name, a in arrays.items():
        key, dot, index = name.partition(".")
        if dot:
            parts.setdefault(key, {})[int(index)] = a
        else:
            found[key] = a
    return found | {key: tuple(p[i] for i in sorted(p)) for key, p in parts.items()}


def _write(kept: _Kept) -> None:
    from sweep.storage.store import write_with  # atomic: an interrupted write leaves the old file

    arrays = {}
    for key, value in kept.used.items():
        if isinstance(value, tuple):
            arrays |= {f"{key}.{i}": a for i, a in enumerate(value)}
        else:
            arrays[key] = value

    def write(name: str) -> None:
        with open(name, "wb") as file:
            np.savez(file, **{_FINGERPRINT: np.array(kept.fingerprint)}, **arrays)

    write_with(kept.path, write)


@contextlib.contextmanager
def kept_in(path: str | Path) -> Iterator[None]:
    """Within this block, ``curve`` looks its calls up in ``path`` (a ``.npz``) and, on leaving, writes
    the calls made in the block there if any was computed or the file held others. Not writing the file
    (a full disk, a read-only folder) is no error: the next drawing computes the curves again."""
    kept = _Kept(Path(path))
    token = _ACTIVE.set(kept)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
    if kept.computed or set(kept.found) != set(kept.used):
        with contextlib.suppress(OSError):
            _write(kept)


def _key(fn: Callable, activation: str, args: tuple, static: dict) -> str:
    """A digest of the call: the function's name, the activation, and each argument's dtype, shape and
    bytes (keyword arguments with their names)."""
    digest = hashlib.sha256(f"{fn.__module__}.{fn.__qualname__}\0{activation}".encode())
    for name, value in [*(("", a) for a in args), *sorted(static.items())]:
        a = np.ascontiguousarray(value)
        digest.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode() + a.tobytes())
    return digest.hexdigest()[:32]


def curve(fn: Callable, activation: object, *args: object, **static: object) -> object:
    """``fn(activation, *args, **static)`` as NumPy arrays (a tuple of them where ``fn`` returns a
    tuple), looked up in the folder's curves within ``kept_in``; ``activation`` a registered name (other
    activations are computed every time)."""
    kept = _ACTIVE.get()
    if kept is None or not isinstance(activation, str):
        return _as_numpy(fn(activation, *args, **static))
    key = _key(fn, activation, args, static)
    out = kept.found.get(key)
    if out is None:
        out, kept.computed = _as_numpy(fn(activation, *args, **static)), True
    kept.used[key] = out
    return out


def _as_numpy(out: object) -> np.ndarray | tuple[np.ndarray, ...]:
    if isinstance(out, tuple):
        return tuple(np.asarray(x) for x in out)
    return np.asarray(out)
