"""Datasets as plain arrays: generated locally (MNIST-1D, a Gaussian mixture) or read from local files.

Nothing is downloaded. MNIST-1D is produced by the ``mnist1d`` package's procedural generator with its
default arguments (seed 42), so everyone gets the same data; it is generated once per machine and kept,
checksummed, in the cache directory beside the compiled programs (``SWEEP_CACHE_DIR=off``: never).
Inputs are float32 ``[n, features]``, standardised; labels int32 ``[n]``. Each dataset also carries the
shape of one input, ``input_shape = (*positions, channels)``: a row is that array flattened in C order
(channels last). MNIST-1D is ``(40, 1)``, the Gaussian mixture ``(input_dim, 1)`` (a sequence with one
channel), MNIST and Fashion-MNIST ``(28, 28, 1)``, CIFAR-10 ``(32, 32, 3)`` (its files store each colour
plane whole; rows are reordered to channels last here). Fully connected networks read the flat rows;
convolutional ones (``sweep.nets.cnn``) reshape them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from sweep.config import ConfigError, DataConfig
from sweep.data.files import LOADERS, DataFileError, standardise
from sweep.storage import integrity, store
from sweep.storage.compile_cache import cache_dir


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # [n_train, input_dim] float32
    y_train: np.ndarray  # [n_train] int32
    x_test: np.ndarray  # [n_test, input_dim] float32
    y_test: np.ndarray  # [n_test] int32
    n_classes: int
    input_shape: tuple[int, ...] = ()  # (*positions, channels) of one row; () : (input_dim, 1)

    def __post_init__(self) -> None:
        if not self.input_shape:
            object.__setattr__(self, "input_shape", (self.input_dim, 1))
        if math.prod(self.input_shape) != self.input_dim:
            raise ValueError(f"input_shape {self.input_shape} does not hold {self.input_dim} features")

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]


MNIST1D_FEATURES = 40
MNIST1D_CACHE = "datasets"  # beside the compiled programs: sweep.storage.compile_cache.cache_dir() / this


def _mnist1d_cache_path(n_samples: int) -> Path | None:
    """Where MNIST-1D of ``n_samples`` examples is kept between processes (None: caching is off,
    ``SWEEP_CACHE_DIR=off``). The name holds the generator's version and arguments (its defaults and
    ``n_samples``), so another release of ``mnist1d`` never reads this one's data."""
    directory = cache_dir()
    if directory is None:
        return None
    return directory / MNIST1D_CACHE / f"mnist1d-{version('mnist1d')}-defaults-n{n_samples}.npz"


def _read_cached(path: Path, n_samples: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays if the file is there and intact (its checksums and identity agree), else None."""
    try:
        with np.load(path) as archive:
            arrays = integrity.unseal(dict(archive), {"dataset": path.name})
        x, y = arrays["x"], arrays["y"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # missing, damaged or foreign: generate anew (and replace it)
    return (x, y) if x.shape == (n_samples, MNIST1D_FEATURES) and y.shape == (n_samples,) else None


@functools.lru_cache(maxsize=4)
def _mnist1d(n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` MNIST-1D examples (a multiple of 10), shuffled by the generator: x [n, 40] float32,
    y [n] int32. Generated once per machine (about a second, plus a second to import the generator),
    then read from the cache; a cache that cannot be written is skipped."""
    path = _mnist1d_cache_path(n_samples)
    cached = _read_cached(path, n_samples) if path is not None else None
    if cached is not None:
        return cached
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_samples
    args.train_split = 1.0
    state = np.random.get_state()  # noqa: NPY002  # the generator seeds numpy's global RNG; leave it as we found it
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    x, y = raw["x"].astype(np.float32), raw["y"].astype(np.int32)
    if path is not None:
        with contextlib.suppress(store.WriteFailed):  # a read-only or full cache: run without it
            with store.atomic_write(path) as handle:
                np.savez(handle, **integrity.seal({"x": x, "y": y}, {"dataset": path.name}))
    return x, y


def _gaussian_mixture(n: int, input_dim: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k has mean mu_k ~ N(0, I/2) and unit isotropic noise: separable, but not trivially."""
    rng = np.random.default_rng(20170101)
    means = rng.normal(0.0, np.sqrt(0.5), size=(n_classes, input_dim))
    y = rng.integers(0, n_classes, size=n)
    x = means[y] + rng.normal(size=(n, input_dim))
    return x.astype(np.float32), y.astype(np.int32)


SYNTHETIC_IMAGE_SHAPE = (8, 8, 1)


def _synthetic_images(n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Small images for tests and quick runs, ``SYNTHETIC_IMAGE_SHAPE`` (8 x 8, one channel): class k is a
    fixed random template, smoothed over a 3 x 3 neighbourhood (circularly), shifted by a random circular
    offset and buried in unit noise. Translations make it a task for convolutions. Flat rows [n, 64]."""
    rng = np.random.default_rng(20180601)
    side = SYNTHETIC_IMAGE_SHAPE[0]
    templates = rng.normal(size=(n_classes, side, side))
    templates = sum(np.roll(templates, (a, b), axis=(1, 2)) for a in (-1, 0, 1) for b in (-1, 0, 1)) / 3.0
    y = rng.integers(0, n_classes, size=n)
    shifts = rng.integers(0, side, size=(n, 2))
    rows = np.arange(side)
    i = (rows[None, :, None] + shifts[:, :1, None]) % side  # [n, side, 1]
    j = (rows[None, None, :] + shifts[:, 1:, None]) % side  # [n, 1, side]
    x = templates[y[:, None, None], i, j] + rng.normal(size=(n, side, side))
    return x.reshape(n, -1).astype(np.float32), y.astype(np.int32)


def input_shape(cfg: DataConfig) -> tuple[int, ...]:
    """``(*positions, channels)`` of one input of the dataset ``cfg`` names, without loading it."""
    if cfg.name in IMAGE_SHAPES:
        return IMAGE_SHAPES[cfg.name]
    if cfg.name == "synthetic_images":
        return SYNTHETIC_IMAGE_SHAPE
    return (MNIST1D_FEATURES if cfg.name == "mnist1d" else cfg.input_dim, 1)


def load_dataset(cfg: DataConfig, source: str = "<config>") -> Dataset:
    """Build or read the dataset named by ``cfg.name``; first ``n_train`` train and ``n_test`` test rows."""
    n = cfg.n_train + cfg.n_test
    if cfg.name == "mnist1d":
        x, y = _mnist1d(-(-n // 10) * 10)
        n_classes = 10
    elif cfg.name == "gaussian_mixture":
        x, y = _gaussian_mixture(n, cfg.input_dim, cfg.n_classes)
        n_classes = cfg.n_classes
    elif cfg.name == "synthetic_images":
        x, y = _synthetic_images(n, cfg.n_classes)
        n_classes = cfg.n_classes
    else:
        return _from_files(cfg, source)
    x_train, x_test = standardise(x[: cfg.n_train], x[cfg.n_train : n])
    return Dataset(x_train, y[: cfg.n_train], x_test, y[cfg.n_train : n], n_classes, input_shape(cfg))


def _from_files(cfg: DataConfig, source: str) -> Dataset:
    """MNIST-format or CIFAR-10 files at ``cfg.path`` (the loaders standardise with training statistics)."""
    if not cfg.path:
        raise ConfigError(f"{source}: data.path: data.name = {cfg.name!r} reads local files; set data.path")
    try:
        x_train, y_train, x_test, y_test = LOADERS[cfg.name](cfg.path)
    except DataFileError as error:
        raise ConfigError(f"{source}: data.path: {error}") from None
    if len(x_train) < cfg.n_train or len(x_test) < cfg.n_test:
        raise ConfigError(
            f"{source}: data.n_train: {cfg.name} at {cfg.path!r} has only "
            f"{len(x_train)} training and {len(x_test)} test examples"
        )
    x_train, x_test = (_channels_last(x, cfg.name) for x in (x_train[: cfg.n_train], x_test[: cfg.n_test]))
    return Dataset(x_train, y_train[: cfg.n_train], x_test, y_test[: cfg.n_test], 10, input_shape(cfg))


IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def _channels_last(x: np.ndarray, name: str) -> np.ndarray:
    """Rows flattened channels last: CIFAR-10's files store the colour planes whole ([n, 3, 32, 32])."""
    if name != "cifar10":
        return x
    return np.ascontiguousarray(x.reshape(len(x), 3, 32, 32).transpose(0, 2, 3, 1)).reshape(len(x), -1)
