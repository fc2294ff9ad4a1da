"""The file loaders against tiny files written in exactly the published formats, good and damaged."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from sweep.data.files import (
    CIFAR_TEST_FILE,
    CIFAR_TRAIN_FILES,
    LOADERS,
    DataFileError,
    load_cifar10,
    load_mnist,
    standardise,
)

N_TRAIN, N_TEST = 7, 3


# ---------------------------------------------------------------------------------------------------------
# Writers for the real formats


def idx_images(images: np.ndarray, magic: int = 2051) -> bytes:
    """IDX3 unsigned bytes: big-endian magic, n, rows, cols, then the pixels row-major."""
    return struct.pack(">IIII", magic, *images.shape) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray, magic: int = 2049) -> bytes:
    return struct.pack(">II", magic, labels.shape[0]) + labels.astype(np.uint8).tobytes()


def mnist_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def write_mnist_dir(
    directory: Path, arrays: dict[str, np.ndarray], gz: bool = False, dotted: bool = False
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": idx_images(arrays["x_train"]),
        "train-labels-idx1-ubyte": idx_labels(arrays["y_train"]),
        "t10k-images-idx3-ubyte": idx_images(arrays["x_test"]),
        "t10k-labels-idx1-ubyte": idx_labels(arrays["y_test"]),
    }
    for name, data in files.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        if gz:
            name, data = f"{name}.gz", gzip.compress(data)
        (directory / name).write_bytes(data)
    return directory


def cifar_batch(n: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    records = np.concatenate([labels[:, None], pixels], axis=1)
    return records.tobytes(), pixels, labels


def cifar_files(seed: int = 0) -> tuple[dict[str, bytes], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    files, xs, ys = {}, [], []
    for i, name in enumerate(CIFAR_TRAIN_FILES):
        files[name], x, y = cifar_batch(1 + i % 2, rng)  # batches of unequal size: order must be kept
        xs.append(x)
        ys.append(y)
    files[CIFAR_TEST_FILE], x_test, y_test = cifar_batch(N_TEST, rng)
    return files, np.concatenate(xs), np.concatenate(ys), x_test, y_test


def write_cifar_dir(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def write_cifar_tar(path: Path, files: dict[str, bytes], prefix: str = "cifar-10-batches-bin/") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def expected_standardised(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    train = train.reshape(train.shape[0], -1).astype(np.float64)
    test = test.reshape(test.shape[0], -1).astype(np.float64)
    mean, std = train.mean(), train.std()
    return (train - mean) / std, (test - mean) / std


def check_outputs(out, x_train, y_train, x_test, y_test, features: int) -> None:
    got_x_train, got_y_train, got_x_test, got_y_test = out
    assert got_x_train.shape == (x_train.shape[0], features) and got_x_train.dtype == np.float32
    assert got_x_test.shape == (x_test.shape[0], features) and got_x_test.dtype == np.float32
    assert got_y_train.shape == (y_train.shape[0],) and got_y_train.dtype == np.int32
    assert got_y_test.shape == (y_test.shape[0],) and got_y_test.dtype == np.int32
    np.testing.assert_array_equal(got_y_train, y_train)
    np.testing.assert_array_equal(got_y_test, y_test)
    want_train, want_test = expected_standardised(x_train, x_test)
    np.testing.assert_allclose(got_x_train, want_train, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_x_test, want_test, rtol=1e-5, atol=1e-5)  # training-set statistics
    assert abs(float(got_x_train.mean())) < 1e-5
    assert abs(float(got_x_train.std()) - 1.0) < 1e-5


@contextmanager
def raises_naming(path: Path, match: str = ""):
    """``pytest.raises(DataFileError)`` whose one-line message names ``path`` and contains ``match``."""
    with pytest.raises(DataFileError) as info:
        yield info
    message = str(info.value)
    assert str(path) in message, message
    assert match in message, message
    assert "\n" not in message, message


# ---------------------------------------------------------------------------------------------------------
# MNIST: good files


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_mnist_idx_directory_round_trips(tmp_path, gz, dotted):
    arrays = mnist_arrays()
    directory = write_mnist_dir(tmp_path / "mnist", arrays, gz=gz, dotted=dotted)
    out = load_mnist(directory)
    check_outputs(out, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], 784)


def test_mnist_gzip_detected_by_content_and_mixed_names(tmp_path):
    arrays = mnist_arrays(1)
    directory = write_mnist_dir(tmp_path / "fashion", arrays)
    # A gzipped file without .gz, and a .gz-named variant of another file: both must load.
    images = directory / "train-images-idx3-ubyte"
    images.write_bytes(gzip.compress(images.read_bytes()))
    (directory / "t10k-labels-idx1-ubyte").unlink()
    (directory / "t10k-labels.idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels(arrays["y_test"])))
    out = LOADERS["fashion_mnist"](str(directory))
    check_outputs(out, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], 784)


@pytest.mark.parametrize("flat", [False, True])
def test_mnist_npz_round_trips(tmp_path, flat):
    arrays = mnist_arrays(2)
    saved = dict(arrays)
    if flat:
        saved["x_train"] = saved["x_train"].reshape(N_TRAIN, 784)
        saved["x_test"] = saved["x_test"].reshape(N_TEST, 784)
        saved["y_train"] = saved["y_train"].astype(np.int64)
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **saved)
    out = load_mnist(path)
    check_outputs(out, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], 784)


def test_standardise_constant_training_set_only_centres():
    x_train, x_test = standardise(np.full((4, 3), 5, np.uint8), np.full((2, 3), 7, np.uint8))
    assert x_train.dtype == x_test.dtype == np.float32
    np.testing.assert_array_equal(x_train, 0.0)
    np.testing.assert_array_equal(x_test, 2.0)


# ---------------------------------------------------------------------------------------------------------
# MNIST: damaged files


def test_mnist_missing_path_lists_expected_files(tmp_path):
    missing = tmp_path / "nowhere"
    with raises_naming(missing, "train-images-idx3-ubyte"):
        load_mnist(missing)


def test_mnist_missing_file_in_directory(tmp_path):
    directory = write_mnist_dir(tmp_path / "mnist", mnist_arrays())
    (directory / "t10k-images-idx3-ubyte").unlink()
    with raises_naming(directory, "t10k-images-idx3-ubyte[.gz]"):
        load_mnist(directory)


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("train-images-idx3-ubyte", struct.pack(">IIII", 1234, 0, 28, 28), "magic 2051 expected, got 1234"),
        ("train-labels-idx1-ubyte", struct.pack(">II", 2051, 0), "magic 2049 expected, got 2051"),
        ("train-images-idx3-ubyte", b"\x00\x00", "no header"),
        ("train-images-idx3-ubyte", struct.pack(">II", 2051, 7), "truncated"),
        ("train-images-idx3-ubyte", struct.pack(">IIII", 2051, 2, 32, 32) + bytes(2048), "shape (2, 32, 32)"),
    ],
)
def test_mnist_bad_headers(tmp_path, name, data, match):
    directory = write_mnist_dir(tmp_path / "mnist", mnist_arrays())
    (directory / name).write_bytes(data)
    with raises_naming(directory / name, match):
        load_mnist(directory)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_truncated_pixels(tmp_path, gz):
    directory = write_mnist_dir(tmp_path / "mnist", mnist_arrays(), gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = directory / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # gz: a cut stream; plain: too few pixels
    with raises_naming(path, "truncated"):
        load_mnist(directory)


def test_mnist_trailing_bytes(tmp_path):
    directory = write_mnist_dir(tmp_path / "mnist", mnist_arrays())
    path = directory / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x01")
    with raises_naming(path, "1 bytes after"):
        load_mnist(directory)


def test_mnist_label_out_of_range(tmp_path):
    arrays = mnist_arrays()
    arrays["y_test"][1] = 10
    directory = write_mnist_dir(tmp_path / "mnist", arrays)
    with raises_naming(directory / "t10k-labels-idx1-ubyte", "label 10 at index 1"):
        load_mnist(directory)


def test_mnist_mismatched_counts(tmp_path):
    arrays = mnist_arrays()
    arrays["y_train"] = arrays["y_train"][:-1]
    directory = write_mnist_dir(tmp_path / "mnist", arrays)
    with raises_naming(directory / "train-labels-idx1-ubyte", f"{N_TRAIN - 1} labels but"):
        load_mnist(directory)


def test_mnist_npz_missing_key(tmp_path):
    arrays = mnist_arrays()
    del arrays["y_test"]
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    with raises_naming(path, "missing array(s) y_test"):
        load_mnist(path)


def test_mnist_npz_refuses_object_arrays(tmp_path):
    arrays: dict[str, np.ndarray] = dict(mnist_arrays())
    arrays["y_test"] = np.array([1, "a", None], dtype=object)
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    with raises_naming(path, "object arrays are refused"):
        load_mnist(path)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("x_test", np.zeros((N_TEST, 27, 28), np.uint8), "expected (n, 28, 28) or (n, 784)"),
        ("y_train", np.zeros(N_TRAIN + 1, np.uint8), f"{N_TRAIN + 1} labels but the images hold {N_TRAIN}"),
        ("y_train", np.full(N_TRAIN, -1, np.int64), "label -1 at index 0"),
        ("y_test", np.zeros(N_TEST, np.float32), "expected integer (n,)"),
    ],
)
def test_mnist_npz_bad_arrays(tmp_path, key, value, match):
    arrays = mnist_arrays()
    arrays[key] = value
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    with raises_naming(path, match):
        load_mnist(path)


def test_mnist_file_that_is_not_npz(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_images(mnist_arrays()["x_train"]))
    with raises_naming(path, "not a .npz"):
        load_mnist(path)


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar_directory_round_trips(tmp_path):
    files, x_train, y_train, x_test, y_test = cifar_files()
    directory = write_cifar_dir(tmp_path / "cifar-10-batches-bin", files)
    out = load_cifar10(directory)
    check_outputs(out, x_train, y_train, x_test, y_test, 3072)
    assert out[0].shape[0] == sum(1 + i % 2 for i in range(5))
    # The parent directory (where the archive was extracted) works too.
    check_outputs(load_cifar10(tmp_path), x_train, y_train, x_test, y_test, 3072)


def test_cifar_archive_round_trips_without_extracting(tmp_path):
    files, x_train, y_train, x_test, y_test = cifar_files(1)
    files_with_extras = {"batches.meta.txt": b"airplane\n", "readme.html": b"<html/>", **files}
    path = write_cifar_tar(tmp_path / "cifar-10-binary.tar.gz", files_with_extras)
    out = LOADERS["cifar10"](path)
    check_outputs(out, x_train, y_train, x_test, y_test, 3072)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-binary.tar.gz"]


def test_cifar_missing_path(tmp_path):
    missing = tmp_path / "cifar"
    with raises_naming(missing, "data_batch_1.bin"):
        load_cifar10(missing)


def test_cifar_missing_batch_in_directory(tmp_path):
    files = cifar_files()[0]
    del files["data_batch_3.bin"]
    directory = write_cifar_dir(tmp_path / "bin", files)
    with raises_naming(directory, "missing data_batch_3.bin"):
        load_cifar10(directory)


def test_cifar_python_version_gets_a_hint(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (directory / name).write_bytes(b"\x80\x04")  # never unpickled
    with raises_naming(directory, "pickled Python version"):
        load_cifar10(directory)


@pytest.mark.parametrize(
    ("cut", "match"),
    [(-5, "not a positive multiple of the 3073-byte record"), (None, "not a positive multiple")],
)
def test_cifar_bad_record_size(tmp_path, cut, match):
    files = cifar_files()[0]
    files["data_batch_2.bin"] = files["data_batch_2.bin"][:cut] if cut else b""
    directory = write_cifar_dir(tmp_path / "bin", files)
    with raises_naming(directory / "data_batch_2.bin", match):
        load_cifar10(directory)


def test_cifar_label_out_of_range(tmp_path):
    files = cifar_files()[0]
    test = bytearray(files[CIFAR_TEST_FILE])
    test[3073] = 200  # label byte of the second record
    files[CIFAR_TEST_FILE] = bytes(test)
    directory = write_cifar_dir(tmp_path / "bin", files)
    with raises_naming(directory / CIFAR_TEST_FILE, "label 200 at index 1"):
        load_cifar10(directory)


def test_cifar_archive_bad_member_names_member(tmp_path):
    files = cifar_files()[0]
    files["data_batch_4.bin"] = files["data_batch_4.bin"] + b"\x00"
    path = write_cifar_tar(tmp_path / "cifar-10-binary.tar.gz", files)
    with raises_naming(path, "(member 'cifar-10-batches-bin/data_batch_4.bin')"):
        load_cifar10(path)


def test_cifar_archive_missing_member(tmp_path):
    files = cifar_files()[0]
    del files[CIFAR_TEST_FILE]
    path = write_cifar_tar(tmp_path / "cifar-10-binary.tar.gz", files)
    with raises_naming(path, "archive lacks test_batch.bin"):
        load_cifar10(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_cifar_archive_damaged(tmp_path, damage):
    path = write_cifar_tar(tmp_path / "cifar-10-binary.tar.gz", cifar_files()[0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a tar archive at all")
    with raises_naming(path, "unreadable or truncated archive"):
        load_cifar10(path)
