"""Tests of the IDX reader/writer and the MNIST-format loaders (tiny generated files, no network)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import shf.data.mnist as mnist
from shf.data.download import file_md5
from shf.data.idx import idx_content_md5, read_idx, write_idx
from shf.data.mnist import (
    MNIST_CONTENT_MD5,
    find_idx_file,
    load_fashion_mnist,
    load_idx_dataset,
    load_mnist,
    load_mnist_t10k,
    read_idx_images,
)
from shf.errors import ConfigError, DataError


def _shared_data() -> Path | None:
    """``../shared/data`` of the checkout (CI has it), or None."""
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        for cand in (root.parent / "shared" / "data", root / "shared" / "data"):
            if cand.is_dir():
                return cand
    return None


SHARED = _shared_data()


def _images(n: int, seed: int, rows: int = 28, cols: int = 28) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)


def _mnist_dir(
    d: Path, n_train: int = 50, n_test: int = 20, *, gz: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    d.mkdir(parents=True, exist_ok=True)
    train, test = _images(n_train, 1), _images(n_test, 2)
    suffix = ".gz" if gz else ""
    write_idx(d / f"train-images-idx3-ubyte{suffix}", train, gzip=gz)
    write_idx(d / f"t10k-images-idx3-ubyte{suffix}", test, gzip=gz)
    write_idx(d / f"train-labels-idx1-ubyte{suffix}", np.arange(n_train, dtype=np.uint8) % 10, gzip=gz)
    return train, test


def _rows(t: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in (t.numpy() * 255).round().astype(np.uint8)}


# ------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, gz: bool, dtype: type) -> None:
    a: np.ndarray = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    p = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), a, gzip=gz)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == gz
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


def test_idx_header_bytes_and_labels(tmp_path: Path) -> None:
    p = write_idx(tmp_path / "l", np.array([7, 2, 1], dtype=np.uint8), gzip=False)
    assert p.read_bytes() == bytes.fromhex("00000801 00000003 070201".replace(" ", ""))
    np.testing.assert_array_equal(read_idx(p), [7, 2, 1])


def test_idx_gz_detected_by_content(tmp_path: Path) -> None:
    a = _images(3, 0)
    plain = write_idx(tmp_path / "x-idx3-ubyte.gz", a, gzip=False)  # a decompressed file with a .gz name
    np.testing.assert_array_equal(read_idx(plain), a)


def test_idx_md5(tmp_path: Path) -> None:
    a = _images(2, 0)
    p = write_idx(tmp_path / "x.gz", a)
    good = hashlib.md5(gzip.decompress(p.read_bytes())).hexdigest()
    assert idx_content_md5(p) == good
    read_idx(p, md5=good.upper())
    with pytest.raises(DataError, match="md5 of the decompressed content"):
        read_idx(p, md5="0" * 32)


def test_idx_bad_magic(tmp_path: Path) -> None:
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 10)
    with pytest.raises(DataError, match="bad magic number 0x01020801"):
        read_idx(p)


def test_idx_unknown_dtype_code(tmp_path: Path) -> None:
    p = tmp_path / "bad"
    p.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataError, match="unknown IDX element type code 0x07"):
        read_idx(p)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated_data(tmp_path: Path, gz: bool) -> None:
    raw = write_idx(tmp_path / "full", _images(4, 0), gzip=False).read_bytes()
    cut = raw[:-5]
    p = tmp_path / "cut"
    p.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(DataError, match=r"truncated: the header announces shape \(4, 28, 28\)"):
        read_idx(p)


def test_idx_trailing_bytes_and_short_header(tmp_path: Path) -> None:
    raw = write_idx(tmp_path / "full", _images(1, 0), gzip=False).read_bytes()
    p = tmp_path / "long"
    p.write_bytes(raw + b"xyz")
    with pytest.raises(DataError, match="3 unexpected bytes"):
        read_idx(p)
    p.write_bytes(raw[:9])
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(p)
    p.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        read_idx(p)


def test_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    data = write_idx(tmp_path / "x.gz", _images(5, 0)).read_bytes()
    p = tmp_path / "y.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="damaged or truncated gzip"):
        read_idx(p)


def test_idx_garbage_gz(tmp_path: Path) -> None:
    p = tmp_path / "junk-idx3-ubyte.gz"
    p.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataError, match="not a gzip file"):
        read_idx(p)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_write_idx_rejects_bad_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot store dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))


# ------------------------------------------------------------------------ MNIST loaders


def test_read_idx_images_scales(tmp_path: Path) -> None:
    a = _images(3, 0)
    x = read_idx_images(write_idx(tmp_path / "i.gz", a))
    assert x.dtype == np.float32 and x.shape == (3, 784)
    np.testing.assert_allclose(x * 255, a.reshape(3, -1), atol=1e-4)
    with pytest.raises(DataError, match="3-D IDX array"):
        read_idx_images(write_idx(tmp_path / "l.gz", np.arange(3, dtype=np.uint8)))


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_dataset_sizes_and_disjointness(tmp_path: Path, gz: bool) -> None:
    train, test = _mnist_dir(tmp_path, gz=gz)
    s = load_idx_dataset(tmp_path, n_train=30, n_val=15, n_test=20, seed=0)
    assert (s.train.shape, s.val.shape, s.test.shape) == ((30, 784), (15, 784), (20, 784))
    assert s.train.dtype == torch.float32 and float(s.train.min()) >= 0.0 and float(s.train.max()) <= 1.0
    all_train = {r.tobytes() for r in train.reshape(50, -1)}
    tr, va = _rows(s.train), _rows(s.val)
    assert tr <= all_train and va <= all_train and not tr & va
    np.testing.assert_allclose(s.test.numpy() * 255, test.reshape(20, -1), atol=1e-3)  # test in file order


def test_load_idx_dataset_seed_and_fixed_val(tmp_path: Path) -> None:
    _mnist_dir(tmp_path)
    a = load_idx_dataset(tmp_path, n_train=30, n_val=10, n_test=5, seed=3)
    b = load_idx_dataset(tmp_path, n_train=30, n_val=10, n_test=5, seed=3)
    c = load_idx_dataset(tmp_path, n_train=30, n_val=10, n_test=5, seed=4)
    small = load_idx_dataset(tmp_path, n_train=5, n_val=10, n_test=5, seed=3)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert not torch.equal(a.train, c.train)
    assert torch.equal(a.val, small.val)  # validation rows do not depend on n_train
    assert torch.equal(small.train, a.train[:5])


def test_load_idx_dataset_errors(tmp_path: Path) -> None:
    _mnist_dir(tmp_path)
    with pytest.raises(ConfigError, match="has 50 images"):
        load_idx_dataset(tmp_path, n_train=45, n_val=10, n_test=5, seed=0)
    with pytest.raises(ConfigError, match="holds 20 images"):
        load_idx_dataset(tmp_path, n_train=5, n_val=5, n_test=21, seed=0)
    with pytest.raises(ConfigError, match="positive integer"):
        load_idx_dataset(tmp_path, n_train=0, n_val=5, n_test=5, seed=0)
    only = tmp_path / "train-only"
    _mnist_dir(only)
    (only / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="no t10k-images-idx3-ubyte"):
        load_idx_dataset(only, n_train=1, n_val=1, n_test=1, seed=0)
    with pytest.raises(DataError, match="does not exist"):
        load_idx_dataset(tmp_path / "nowhere", n_train=1, n_val=1, n_test=1, seed=0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", _images(20, 2, 16, 16))
    with pytest.raises(DataError, match="training images have 784 pixels, test images 256"):
        load_idx_dataset(tmp_path, n_train=1, n_val=1, n_test=1, seed=0)


def test_find_idx_file_spellings(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images.idx3-ubyte", _images(1, 0), gzip=False)
    assert find_idx_file(tmp_path, "train-images-idx3-ubyte") == tmp_path / "train-images.idx3-ubyte"
    assert find_idx_file(tmp_path, "t10k-images-idx3-ubyte") is None


def test_load_mnist_from_path_and_verify(tmp_path: Path) -> None:
    _mnist_dir(tmp_path)
    s = load_mnist(tmp_path, sizes=(40, 10, 20), verify=False)
    assert s.name == "MNIST" and (len(s.train), len(s.val), len(s.test)) == (40, 10, 20)
    with pytest.raises(DataError, match="md5 of the decompressed content"):
        load_mnist(tmp_path, sizes=(40, 10, 20))  # not the official files


def test_load_mnist_downloads_into_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    _mnist_dir(mirror)
    sums = {f.name: file_md5(f) for f in mirror.iterdir()}
    content = {f.name[:-3]: idx_content_md5(f) for f in mirror.iterdir()}
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", ("http://127.0.0.1:9/mnist/", mirror.as_uri() + "/"))
    monkeypatch.setattr(mnist, "MNIST_GZ_MD5", sums)
    monkeypatch.setattr(mnist, "MNIST_CONTENT_MD5", content)
    cache = tmp_path / "cache"
    s = load_mnist(cache=cache, sizes=(30, 20, 10), progress=False)
    assert s.name == "MNIST" and (len(s.train), len(s.val), len(s.test)) == (30, 20, 10)
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "train-images-idx3-ubyte.gz",
    ]
    # Second call: mirrors unreachable, the cache is used.
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", ("http://127.0.0.1:9/mnist/",))
    s2 = load_mnist(cache=cache, sizes=(30, 20, 10), progress=False)
    assert torch.equal(s.train, s2.train)
    # A recompressed copy (different .gz md5, same content) put in by hand is accepted.
    p = cache / "mnist" / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes()), compresslevel=1, mtime=1))
    assert file_md5(p) != sums[p.name]
    load_mnist(cache=cache, sizes=(30, 20, 10), progress=False)


def test_load_mnist_download_failure_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", ("http://127.0.0.1:9/mnist/",))
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        load_mnist(cache=cache, progress=False)
    msg = str(info.value)
    assert "http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz" in msg and str(cache / "mnist") in msg
    assert list((cache / "mnist").iterdir()) == []
    with pytest.raises(DataError, match="download=False"):
        load_mnist(cache=tmp_path / "empty", download=False)


def test_load_fashion_mnist_from_path_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _mnist_dir(tmp_path)
    s = load_fashion_mnist(tmp_path, sizes=(40, 10, 20), verify=False)
    assert s.name == "Fashion-MNIST (MNIST stand-in)" and len(s.test) == 20
    monkeypatch.setattr(mnist, "FASHION_MNIST_DIR", tmp_path / "not-installed")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()


def test_load_mnist_t10k_generated(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", _images(100, 5))
    s = load_mnist_t10k(tmp_path, sizes=(60, 20, 20), verify=False, seed=1)
    assert s.name == "MNIST-t10k (stand-in)" and (len(s.train), len(s.val), len(s.test)) == (60, 20, 20)
    parts = [_rows(s.train), _rows(s.val), _rows(s.test)]
    assert len(set.union(*parts)) == 100
    with pytest.raises(ConfigError, match="need 101 images"):
        load_mnist_t10k(tmp_path, sizes=(61, 20, 20), verify=False)
    with pytest.raises(DataError, match="md5"):
        load_mnist_t10k(tmp_path, sizes=(60, 20, 20))


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(
    SHARED is None or not (SHARED / "mnist-t10k" / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="shared MNIST test set not available",
)
def test_real_mnist_t10k() -> None:
    assert SHARED is not None
    d = SHARED / "mnist-t10k"
    assert idx_content_md5(d / "t10k-images-idx3-ubyte.gz") == "2646ac647ad5339dbf082846283269ea"
    assert idx_content_md5(d / "t10k-labels-idx1-ubyte.gz") == "27ae3e4e09519cfbb04c329615203637"
    assert MNIST_CONTENT_MD5["t10k-images-idx3-ubyte"] == "2646ac647ad5339dbf082846283269ea"
    labels = read_idx(d / "t10k-labels-idx1-ubyte.gz", md5=MNIST_CONTENT_MD5["t10k-labels-idx1-ubyte"])
    assert labels.shape == (10000,) and labels[:3].tolist() == [7, 2, 1]
    s = load_mnist_t10k(d)
    assert (s.train.shape, s.val.shape, s.test.shape) == ((6000, 784), (2000, 784), (2000, 784))
    assert float(s.train.max()) == 1.0 and float(s.train.min()) == 0.0


@pytest.mark.skipif(
    mnist.find_idx_file(mnist.FASHION_MNIST_DIR, "train-images-idx3-ubyte") is None,
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist() -> None:
    s = load_fashion_mnist(sizes=(1000, 500, 500))
    assert (s.train.shape, s.val.shape, s.test.shape) == ((1000, 784), (500, 784), (500, 784))


def test_load_mnist_t10k_labels_follow_their_images(tmp_path: Path) -> None:
    digits = (np.arange(100) % 10).astype(np.uint8)
    images = np.broadcast_to(digits[:, None, None] * 20, (100, 28, 28)).copy()
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", (np.arange(100) % 10).astype(np.uint8))
    s = load_mnist_t10k(tmp_path, sizes=(60, 20, 20), verify=False, seed=1, labels=True)
    for X, y in ((s.train, s.train_targets), (s.val, s.val_targets), (s.test, s.test_targets)):
        assert y is not None
        torch.testing.assert_close(X[:, 0] * 255 / 20, y.to(X.dtype), atol=1e-3, rtol=0)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(99).astype(np.uint8))
    with pytest.raises(DataError, match="expected 100 labels"):
        load_mnist_t10k(tmp_path, sizes=(60, 20, 20), verify=False, labels=True)


def test_load_mnist_t10k_does_not_search_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert mnist.t10k_candidates(tmp_path) == [tmp_path / "mnist"]
