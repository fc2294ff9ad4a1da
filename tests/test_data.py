"""Datasets: MNIST-1D is generated once per machine and read back from the cache, checked."""

from __future__ import annotations

import mnist1d.data
import numpy as np
import pytest

from sweep.config import DataConfig
from sweep.data import datasets as data

SMALL = DataConfig(name="mnist1d", n_train=80, n_test=20)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache directory, and no dataset kept in this process's memory."""
    monkeypatch.setenv("SWEEP_CACHE_DIR", str(tmp_path / "cache"))
    data._mnist1d.cache_clear()
    yield tmp_path / "cache"
    data._mnist1d.cache_clear()


def _count_generations(monkeypatch) -> list[int]:
    calls: list[int] = []
    generate = mnist1d.data.make_dataset

    def counting(args):
        calls.append(args.num_samples)
        return generate(args)

    monkeypatch.setattr(mnist1d.data, "make_dataset", counting)
    return calls


def test_mnist1d_is_generated_once_then_read_from_the_cache(cache, monkeypatch):
    calls = _count_generations(monkeypatch)
    first = data.load_dataset(SMALL)
    assert calls == [100] and len(list((cache / data.MNIST1D_CACHE).glob("*.npz"))) == 1
    data._mnist1d.cache_clear()  # as a new process would
    second = data.load_dataset(SMALL)
    assert calls == [100]  # not generated again
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not list((cache / data.MNIST1D_CACHE).glob(".*tmp"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "other size"])
def test_a_damaged_cache_file_is_generated_anew(cache, monkeypatch, damage):
    reference = data.load_dataset(SMALL)
    path = data._mnist1d_cache_path(100)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    else:  # a valid file of another dataset under this name
        data._mnist1d.cache_clear()
        data.load_dataset(DataConfig(name="mnist1d", n_train=150, n_test=50))
        data._mnist1d_cache_path(200).replace(path)
    calls = _count_generations(monkeypatch)
    data._mnist1d.cache_clear()
    again = data.load_dataset(SMALL)
    assert calls == [100]
    np.testing.assert_array_equal(reference.x_train, again.x_train)
    data._mnist1d.cache_clear()
    data.load_dataset(SMALL)
    assert calls == [100]  # the damaged file was replaced by a good one


def test_cache_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_CACHE_DIR", "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    data._mnist1d.cache_clear()
    data.load_dataset(SMALL)
    data._mnist1d.cache_clear()
    assert not list(tmp_path.rglob("*.npz"))
