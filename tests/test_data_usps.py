"""Tests of the USPS loader: both .mat layouts, orientation, value ranges, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from shf.data.usps import SIZES_9298, default_sizes, load_usps, read_usps_mat
from shf.errors import ConfigError, DataError


def _shared_usps() -> Path | None:
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        for cand in (root.parent / "shared", root / "shared"):
            p = cand / "data" / "usps" / "usps_9298.mat"
            if p.is_file():
                return p
    return None


def _pattern() -> np.ndarray:
    """An asymmetric 16x16 image: a bar along the top row and one pixel below its left end."""
    img = np.zeros((16, 16), dtype=np.uint8)
    img[0, :] = 255  # top row
    img[1, 0] = 128  # just below the top-left corner
    img[15, 15] = 64  # bottom-right corner
    return img


def _write_layout_a(path: Path, n_per: int = 12) -> np.ndarray:
    """Roweis-style ``data`` (256 x n x 10); image (j, c) is the pattern times a class value."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(256, n_per, 10), dtype=np.uint8)
    # Store the pattern column-major (MATLAB order) as example 0 of class 10 (digit 0).
    data[:, 0, 9] = _pattern().flatten(order="F")
    scipy.io.savemat(path, {"data": data})
    return data


def test_layout_a_orientation_and_labels(tmp_path: Path) -> None:
    p = tmp_path / "usps_all.mat"
    _write_layout_a(p)
    u = read_usps_mat(p)
    assert u.images.shape == (120, 256) and u.images.dtype == np.float32
    assert u.layout.startswith("usps_all.mat")
    assert u.digits.tolist() == [d for d in [1, 2, 3, 4, 5, 6, 7, 8, 9, 0] for _ in range(12)]
    img = u.images[9 * 12].reshape(16, 16)  # first example of class 10, row-major
    np.testing.assert_allclose(img * 255, _pattern(), atol=1e-4)  # upright: top bar, pixel below its left end
    assert img[0].min() == 1.0 and img[1, 0] > 0 and img[0, 1] == 1.0 and img[15, 15] > 0


def test_layout_a_split(tmp_path: Path) -> None:
    p = tmp_path / "usps_all.mat"
    _write_layout_a(p)
    s = load_usps(p, seed=0)
    assert s.name == "USPS (usps_all.mat, 120)"
    assert (len(s.train), len(s.val), len(s.test)) == default_sizes(120) == (87, 11, 22)
    assert float(s.train.max()) <= 1.0
    s2 = load_usps(p, seed=0, sizes=(50, 10, 20))
    assert (len(s2.train), len(s2.val), len(s2.test)) == (50, 10, 20)
    assert torch.equal(load_usps(p, seed=5).train, load_usps(p, seed=5).train)
    assert not torch.equal(load_usps(p, seed=5).train, s.train)


def test_default_sizes_paper_and_9298() -> None:
    assert default_sizes(11000) == (8000, 1000, 2000)
    assert default_sizes(9298) == SIZES_9298 == (6762, 845, 1691)


def _write_layout_b(
    path: Path, n: int = 30, *, dtype: type = np.uint8, pixels: np.ndarray | None = None
) -> None:
    rng = np.random.default_rng(1)
    table: np.ndarray = np.zeros((n, 257), dtype=dtype)
    table[:, :256] = rng.integers(0, 256, size=(n, 256)) if pixels is None else pixels
    table[:, 256] = np.arange(n) % 10 + 1
    if pixels is None:
        table[0, :256] = _pattern().flatten()  # row-major, as in the real 9,298-image file
    scipy.io.savemat(path, {"usps_all": table})


def test_layout_b_orientation_and_labels(tmp_path: Path) -> None:
    p = tmp_path / "usps_9298.mat"
    _write_layout_b(p)
    u = read_usps_mat(p)
    assert u.layout.startswith("9298") and u.images.shape == (30, 256)
    assert u.digits[:11].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    np.testing.assert_allclose(u.images[0].reshape(16, 16) * 255, _pattern(), atol=1e-4)
    s = load_usps(p)
    assert s.name == "USPS (30)" and (len(s.train), len(s.val), len(s.test)) == (22, 3, 5)


def test_float_ranges(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, size=(20, 256)).astype(np.float64)
    p = tmp_path / "f.mat"
    for pixels, expect in [(base / 255, base / 255), (base / 127.5 - 1, base / 255), (base, base / 255)]:
        _write_layout_b(p, 20, dtype=np.float64, pixels=pixels)
        u = read_usps_mat(p)
        np.testing.assert_allclose(u.images, expect, atol=1e-6)
    _write_layout_b(p, 20, dtype=np.float64, pixels=base * 2)
    with pytest.raises(DataError, match=r"expected \[0, 1\], \[-1, 1\] or \[0, 255\]"):
        read_usps_mat(p)


def test_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.mat"
    scipy.io.savemat(p, {"images": np.zeros((3, 3))})
    with pytest.raises(DataError, match=r"expected 'data' .* or 'usps_all' .*found \['images'\]"):
        load_usps(p)
    scipy.io.savemat(p, {"data": np.zeros((256, 5, 9), dtype=np.uint8)})
    with pytest.raises(DataError, match="256 x n x 10"):
        load_usps(p)
    scipy.io.savemat(p, {"usps_all": np.zeros((5, 256), dtype=np.uint8)})
    with pytest.raises(DataError, match="n x 257"):
        load_usps(p)
    scipy.io.savemat(p, {"usps_all": np.zeros((5, 257), dtype=np.uint8)})
    with pytest.raises(DataError, match=r"labels 1\.\.10"):
        load_usps(p)
    p.write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(DataError, match="not a readable MATLAB"):
        load_usps(p)
    with pytest.raises(FileNotFoundError):
        load_usps(tmp_path / "missing.mat")
    q = tmp_path / "small.mat"
    _write_layout_b(q, 30)
    with pytest.raises(ConfigError, match="need 31 images"):
        load_usps(q, sizes=(20, 5, 6))
    _write_layout_b(q, 4)
    with pytest.raises(DataError, match="too few"):
        load_usps(q)


_REAL = _shared_usps()


@pytest.mark.skipif(_REAL is None, reason="shared usps_9298.mat not available")
def test_real_usps_9298() -> None:
    assert _REAL is not None
    u = read_usps_mat(_REAL)
    assert u.images.shape == (9298, 256) and float(u.images.min()) == 0.0 and float(u.images.max()) == 1.0
    assert np.bincount(u.digits).tolist()[:2] == [1553, 1269]
    # Orientation: the ink of the digit 1 is a (near) vertical stroke, so its mean image varies
    # much more across columns than down the rows; a transposed image would be the other way round.
    ones = u.images[u.digits == 1].mean(axis=0).reshape(16, 16)
    assert ones.sum(axis=0).std() > 3 * ones.sum(axis=1).std()
    s = load_usps(_REAL)
    assert s.name == "USPS (9298)"
    assert (len(s.train), len(s.val), len(s.test)) == SIZES_9298


def test_labels_follow_their_images_through_the_split(tmp_path: Path) -> None:
    p = tmp_path / "usps_9298.mat"
    n = 40
    pixels = np.tile((np.arange(n) % 10)[:, None] * 20, (1, 256)).astype(np.uint8)  # row value = 20 * digit
    _write_layout_b(p, n, pixels=pixels)
    plain, s = load_usps(p, seed=3), load_usps(p, seed=3, labels=True)
    assert torch.equal(plain.train, s.train) and not plain.supervised and s.supervised
    for X, y in ((s.train, s.train_targets), (s.val, s.val_targets), (s.test, s.test_targets)):
        assert y is not None and y.dtype == torch.int64
        torch.testing.assert_close(X[:, 0] * 255 / 20, y.to(X.dtype), atol=1e-3, rtol=0)


def test_registry_finds_usps_in_the_data_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shf.data.registry import DataConfig, load_dataset

    monkeypatch.chdir(tmp_path)  # a checkout's ../shared beside the working directory is not searched
    with pytest.raises(DataError, match=r"usps_9298\.mat"):
        load_dataset(DataConfig(dataset="usps", cache_dir=str(tmp_path / "cache")))
    (tmp_path / "cache").mkdir()
    _write_layout_b(tmp_path / "cache" / "usps_9298.mat", 40)
    s = load_dataset(DataConfig(dataset="usps", cache_dir=str(tmp_path / "cache")), labels=True)
    assert s.name == "USPS (40), labelled" and s.supervised
