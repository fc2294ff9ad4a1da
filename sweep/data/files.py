"""Real datasets from files the user already has: MNIST / Fashion-MNIST and CIFAR-10, in pure NumPy.

Nothing here downloads, unpickles or imports a deep-learning framework: the loaders parse the published
binary formats byte by byte and validate them, so a wrong or damaged file fails at once with one line
naming the file and what was expected (``DataFileError``, a ``ValueError``).

Contract of every loader: ``load_*(path) -> (x_train, y_train, x_test, y_test)`` with

- ``x_*``: ``float32 [n, features]``, flattened, standardised with ONE global scalar mean and standard
  deviation computed over every pixel of the training set and applied to both splits (robust: no
  division by the zero variance of always-black border pixels). A constant training set (std 0) is only
  centred.
- ``y_*``: ``int32 [n]``, class indices in ``0..9``.

Accepted inputs:

- ``load_mnist``: a directory holding the four IDX files ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each plain or
  gzipped, optionally with ``.gz``; the dotted variants ``train-images.idx3-ubyte`` are accepted too), or
  a ``mnist.npz`` file with arrays ``x_train, y_train, x_test, y_test`` (the Keras layout). Fashion-MNIST
  ships in the same format and loads the same way. Images are 28x28, so ``features = 784``.
- ``load_cifar10``: the directory of the CIFAR-10 *binary* version (``cifar-10-batches-bin`` with
  ``data_batch_1.bin`` … ``data_batch_5.bin`` and ``test_batch.bin``, or its parent directory), or the
  ``cifar-10-binary.tar.gz`` archive itself, read in one streaming pass without extracting. Records are
  1 label byte + 3072 pixel bytes; ``features = 3072`` in the stored order (the 32x32 red plane, then
  green, then blue, each row-major), so ``x.reshape(n, 3, 32, 32)`` gives channel-first images.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

NUM_CLASSES = 10

MNIST_SIDE = 28
MNIST_FEATURES = MNIST_SIDE * MNIST_SIDE
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

CIFAR_FEATURES = 3 * 32 * 32
CIFAR_RECORD = 1 + CIFAR_FEATURES
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch.bin"
CIFAR_DIR = "cifar-10-batches-bin"

# (split, kind) -> accepted file names without the optional ".gz", in order of preference.
MNIST_FILES: dict[tuple[str, str], tuple[str, ...]] = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
MNIST_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
PathLike = str | os.PathLike[str]


class DataFileError(ValueError):
    """A dataset file is missing, of the wrong format, or damaged. The message is one line naming it."""


def _fail(where: str, message: str) -> DataFileError:
    return DataFileError(f"data.path {where}: {message}")


def _quote(path: Path | str, member: str | None = None) -> str:
    return f"'{path}'" if member is None else f"'{path}' (member '{member}')"


# ---------------------------------------------------------------------------------------------------------
# Standardisation


def _global_moments(x: np.ndarray, rows_per_chunk: int = 4096) -> tuple[float, float]:
    """Mean and standard deviation over every entry of ``x``, accumulated in float64 chunk by chunk."""
    n = x.shape[0]
    count = x.size
    if count == 0:
        return 0.0, 1.0
    total = sum(float(x[i : i + rows_per_chunk].sum(dtype=np.float64)) for i in range(0, n, rows_per_chunk))
    mean = total / count
    squares = 0.0
    for i in range(0, n, rows_per_chunk):
        centred = x[i : i + rows_per_chunk].astype(np.float64) - mean
        squares += float(np.einsum("ij,ij->", centred, centred))
    return mean, float(np.sqrt(squares / count))


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattened ``[n, features]`` inputs -> float32, centred and scaled by the training set's global stats.

    One scalar mean and one scalar standard deviation over all training pixels, applied to both splits;
    a zero standard deviation leaves the data centred but unscaled.
    """
    mean, std = _global_moments(x_train)
    scale = 1.0 / std if std > 0.0 else 1.0
    out = []
    for x in (x_train, x_test):
        y = np.array(x, dtype=np.float32)  # always a fresh copy, normalised in place
        y -= np.float32(mean)
        y *= np.float32(scale)
        out.append(y)
    return out[0], out[1]


def _check_labels(labels: np.ndarray, where: str) -> np.ndarray:
    bad = (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(where, f"label {int(labels[i])} at index {i} is outside 0..{NUM_CLASSES - 1}")
    return labels.astype(np.int32)


# ---------------------------------------------------------------------------------------------------------
# MNIST: IDX files


def _read_maybe_gzip(path: Path) -> bytes:
    """File bytes, gunzipped when they start with the gzip magic (whatever the file is called)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _fail(_quote(path), f"cannot be read ({e.strerror or e})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise _fail(_quote(path), f"damaged or truncated gzip stream ({e})") from None
    return data


def _parse_idx(data: bytes, where: str, magic: int, shape_tail: tuple[int, ...], what: str) -> np.ndarray:
    """An IDX unsigned-byte array with the given magic and trailing dimensions -> ``uint8 [n, *tail]``."""
    ndim = 1 + len(shape_tail)
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise _fail(where, f"not an MNIST IDX {what} file (only {len(data)} bytes, no header)")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise _fail(where, f"not an MNIST IDX {what} file (magic {magic} expected, got {got})")
    if len(data) < header:
        raise _fail(where, f"truncated IDX {what} file ({len(data)} bytes, header needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if dims[1:] != shape_tail:
        raise _fail(where, f"IDX {what} of shape {dims}, expected (n, {', '.join(map(str, shape_tail))})")
    expected = header + int(np.prod(dims))
    if len(data) < expected:
        raise _fail(
            where,
            f"truncated IDX {what} file (header declares {dims[0]} items, {expected} bytes; got {len(data)})",
        )
    if len(data) > expected:
        raise _fail(
            where, f"IDX {what} file has {len(data) - expected} bytes after the {dims[0]} declared items"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_mnist_file(directory: Path, split: str, kind: str) -> Path:
    names = MNIST_FILES[(split, kind)]
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    looked = ", ".join(f"{n}[.gz]" for n in names)
    raise _fail(_quote(directory), f"no MNIST {split} {kind} file; looked for {looked}")


def _load_idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find_mnist_file(directory, split, "images")
    labels_path = _find_mnist_file(directory, split, "labels")
    images = _parse_idx(
        _read_maybe_gzip(images_path),
        _quote(images_path),
        IDX_IMAGES_MAGIC,
        (MNIST_SIDE, MNIST_SIDE),
        "image",
    )
    labels = _parse_idx(_read_maybe_gzip(labels_path), _quote(labels_path), IDX_LABELS_MAGIC, (), "label")
    if images.shape[0] != labels.shape[0]:
        raise _fail(
            _quote(labels_path),
            f"{labels.shape[0]} labels but {images_path.name} holds {images.shape[0]} images",
        )
    return images.reshape(-1, MNIST_FEATURES), _check_labels(labels, _quote(labels_path))


# ---------------------------------------------------------------------------------------------------------
# MNIST: mnist.npz


def _npz_images(x: np.ndarray, where: str, key: str) -> np.ndarray:
    if x.ndim == 3 and x.shape[1:] == (MNIST_SIDE, MNIST_SIDE):
        x = x.reshape(x.shape[0], MNIST_FEATURES)
    if x.ndim != 2 or x.shape[1] != MNIST_FEATURES:
        raise _fail(where, f"array {key!r} has shape {x.shape}, expected (n, 28, 28) or (n, 784)")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise _fail(where, f"array {key!r} has dtype {x.dtype}, expected integer or float pixels")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise _fail(where, f"array {key!r} contains NaN or infinite pixels")
    return x


def _npz_labels(y: np.ndarray, where: str, key: str, n: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise _fail(where, f"array {key!r} has shape {y.shape} and dtype {y.dtype}, expected integer (n,)")
    if y.shape[0] != n:
        raise _fail(where, f"array {key!r} holds {y.shape[0]} labels but the images hold {n}")
    return _check_labels(y, where)


def _load_mnist_npz(path: Path) -> Split:
    where = _quote(path)
    expected = f"expected a mnist.npz archive with arrays {', '.join(MNIST_NPZ_KEYS)}"
    if not zipfile.is_zipfile(path):
        raise _fail(where, f"not a .npz (zip) file; {expected} or a directory of IDX files")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in MNIST_NPZ_KEYS if k not in archive.files]
            if missing:
                raise _fail(where, f"missing array(s) {', '.join(missing)}; found {sorted(archive.files)}")
            arrays = {k: archive[k] for k in MNIST_NPZ_KEYS}
    except DataFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _fail(where, f"unreadable .npz ({e}); {expected} (object arrays are refused)") from None
    out = []
    for split in ("train", "test"):
        x = _npz_images(arrays[f"x_{split}"], where, f"x_{split}")
        y = _npz_labels(arrays[f"y_{split}"], where, f"y_{split}", x.shape[0])
        out.append((x, y))
    (x_train, y_train), (x_test, y_test) = out
    x_train, x_test = standardise(x_train, x_test)
    return x_train, y_train, x_test, y_test


def load_mnist(path: PathLike) -> Split:
    """MNIST or Fashion-MNIST from a directory of IDX files (plain or gzipped) or a ``mnist.npz`` file.

    Returns ``(x_train float32 [n_train, 784], y_train int32 [n_train], x_test float32 [n_test, 784],
    y_test int32 [n_test])``; pixels flattened row-major and standardised with the training set's global
    scalar mean and std (see the module docstring). Raises ``DataFileError`` naming the offending file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        x_train, y_train = _load_idx_split(path, "train")
        x_test, y_test = _load_idx_split(path, "test")
        x_train, x_test = standardise(x_train, x_test)
        return x_train, y_train, x_test, y_test
    if path.is_file():
        return _load_mnist_npz(path)
    looked = ", ".join(f"{names[0]}[.gz]" for names in MNIST_FILES.values())
    raise _fail(_quote(path), f"does not exist; expected a directory holding {looked}, or a mnist.npz file")


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10: binary version


def _parse_cifar_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch (records of 1 label byte + 3072 pixel bytes) -> ``(uint8 [n, 3072], int32 [n])``."""
    if len(data) == 0 or len(data) % CIFAR_RECORD:
        raise _fail(
            where,
            f"not a CIFAR-10 binary batch ({len(data)} bytes is not a positive multiple of the "
            f"{CIFAR_RECORD}-byte record: 1 label byte + {CIFAR_FEATURES} pixel bytes)",
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    return records[:, 1:], _check_labels(records[:, 0], where)


def _python_version_hint(names: set[str]) -> str:
    if {"batches.meta", "data_batch_1", "test_batch"} & names:
        return " (this looks like the pickled Python version; use the binary version cifar-10-binary.tar.gz)"
    return ""


def _cifar_from_directory(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    wanted = (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    if not (directory / wanted[0]).exists() and (directory / CIFAR_DIR).is_dir():
        directory = directory / CIFAR_DIR
    missing = [name for name in wanted if not (directory / name).is_file()]
    if missing:
        hint = _python_version_hint({p.name for p in directory.iterdir()})
        found = "none of them" if len(missing) == len(wanted) else f"missing {', '.join(missing)}"
        raise _fail(
            _quote(directory),
            f"expected the CIFAR-10 binary files {', '.join(wanted)} here or in {CIFAR_DIR}/; {found}{hint}",
        )
    batches = {}
    for name in wanted:
        file = directory / name
        try:
            data = file.read_bytes()
        except OSError as e:
            raise _fail(_quote(file), f"cannot be read ({e.strerror or e})") from None
        batches[name] = _parse_cifar_batch(data, _quote(file))
    return batches


def _cifar_from_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    wanted = (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    expected = f"expected cifar-10-binary.tar.gz holding {', '.join(wanted)}"
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r|*") as archive:  # one streaming pass, nothing written to disk
            for member in archive:
                name = PurePosixPath(member.name).name
                seen.add(name)
                if not member.isfile() or name not in wanted:
                    continue
                if name in batches:
                    raise _fail(_quote(path), f"archive holds {name} twice (second at '{member.name}')")
                stream = archive.extractfile(member)
                assert stream is not None  # regular files always have a stream
                batches[name] = _parse_cifar_batch(stream.read(), _quote(path, member.name))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise _fail(_quote(path), f"unreadable or truncated archive ({e}); {expected}") from None
    missing = [name for name in wanted if name not in batches]
    if missing:
        hint = _python_version_hint(seen)
        raise _fail(_quote(path), f"archive lacks {', '.join(missing)}; {expected}{hint}")
    return batches


def load_cifar10(path: PathLike) -> Split:
    """CIFAR-10 from the binary version: its directory (or parent) or the ``.tar.gz`` archive itself.

    Returns ``(x_train float32 [n_train, 3072], y_train int32 [n_train], x_test float32 [n_test, 3072],
    y_test int32 [n_test])`` (50000 and 10000 for the real files), training batches concatenated in order
    1..5. Features keep the stored channel-first order (``x.reshape(n, 3, 32, 32)``) and are standardised
    with the training set's global scalar mean and std. Raises ``DataFileError`` naming the offending file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        batches = _cifar_from_directory(path)
    elif path.is_file():
        batches = _cifar_from_archive(path)
    else:
        wanted = ", ".join((*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE))
        raise _fail(
            _quote(path),
            f"does not exist; expected the {CIFAR_DIR} directory holding {wanted}, "
            "or the cifar-10-binary.tar.gz archive",
        )
    x_train = np.concatenate([batches[name][0] for name in CIFAR_TRAIN_FILES])
    y_train = np.concatenate([batches[name][1] for name in CIFAR_TRAIN_FILES])
    x_test, y_test = batches[CIFAR_TEST_FILE]
    x_train, x_test = standardise(x_train, x_test)
    return x_train, y_train, x_test, y_test


LOADERS = {"mnist": load_mnist, "fashion_mnist": load_mnist, "cifar10": load_cifar10}
"""Dataset name -> loader; each takes the user's path and returns ``(x_train, y_train, x_test, y_test)``."""
