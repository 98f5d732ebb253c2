"""Tests of a user's own data files (.npy, .npz, .csv, .csv.gz) and the seeded split helpers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from shf.data.own import check_fractions, fraction_sizes, load_own, permuted_parts, read_table
from shf.errors import ConfigError, DataError


def _data(n: int = 40, m: int = 5) -> np.ndarray:
    return np.random.default_rng(0).random((n, m))


def _rows(t: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(np.round(r, 5)) for r in t.double().numpy()}


def _csv(path: Path, x: np.ndarray, header: list[str] | None = None, *, gz: bool = False) -> Path:
    lines = ([",".join(header)] if header else []) + [",".join(f"{v:.9g}" for v in row) for row in x]
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _check(s_rows: list[torch.Tensor], x: np.ndarray) -> None:
    got = set.union(*(_rows(t) for t in s_rows))
    assert got == {tuple(np.round(r.astype(np.float32).astype(np.float64), 5)) for r in x}


def test_npy(tmp_path: Path) -> None:
    x = _data()
    np.save(tmp_path / "d.npy", x)
    s = load_own(tmp_path / "d.npy")
    assert s.name == "own data (d.npy)" and s.train.dtype == torch.float32
    assert (len(s.train), len(s.val), len(s.test)) == (32, 4, 4)
    _check([s.train, s.val, s.test], x)


def test_npy_images_flattened(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((20, 4, 4))
    np.save(tmp_path / "d.npy", x)
    s = load_own(tmp_path / "d.npy", fractions=(0.5, 0.25, 0.25))
    assert s.dim == 16 and len(s.train) == 10


def test_npz_single_and_key(tmp_path: Path) -> None:
    x = _data()
    np.savez(tmp_path / "one.npz", x)
    assert load_own(tmp_path / "one.npz").dim == 5
    np.savez(tmp_path / "two.npz", a=x, b=x[:, :2])
    with pytest.raises(DataError, match=r"holds 2 arrays \['a', 'b'\]; choose one with key="):
        load_own(tmp_path / "two.npz")
    assert load_own(tmp_path / "two.npz", key="b").dim == 2
    with pytest.raises(DataError, match="no array named 'c'"):
        load_own(tmp_path / "two.npz", key="c")
    with pytest.raises(ConfigError, match="key= selects"):
        np.save(tmp_path / "d.npy", x)
        load_own(tmp_path / "d.npy", key="a")


@pytest.mark.parametrize("gz", [False, True])
def test_csv_plain_and_gz(tmp_path: Path, gz: bool) -> None:
    x = _data()
    p = _csv(tmp_path / ("d.csv.gz" if gz else "d.csv"), x, gz=gz)
    s = load_own(p, seed=3)
    assert s.dim == 5
    _check([s.train, s.val, s.test], x)


def test_csv_header_and_label_column_by_name_and_index(tmp_path: Path) -> None:
    x = _data()
    labels = np.arange(40) % 10
    table = np.column_stack([x[:, :2], labels, x[:, 2:]])
    p = _csv(tmp_path / "d.csv", table, header=["a", "b", "label", "c", "d", "e"])
    by_name = load_own(p, label_column="label")
    by_index = load_own(p, label_column=2)
    by_negative = load_own(_csv(tmp_path / "e.csv", np.column_stack([x, labels])), label_column=-1)
    for s in (by_name, by_index, by_negative):
        assert s.dim == 5
        _check([s.train, s.val, s.test], x)
    assert torch.equal(by_name.train, by_index.train)
    with pytest.raises(DataError, match="label"):
        load_own(p)  # the label column 0..9 is not in [0, 1]
    with pytest.raises(DataError, match="no column named 'y'"):
        load_own(p, label_column="y")
    with pytest.raises(DataError, match="out of range for 6 columns"):
        load_own(p, label_column=6)
    headerless = _csv(tmp_path / "h.csv", x)
    with pytest.raises(DataError, match="no header row; give the column's index"):
        load_own(headerless, label_column="label")


def test_label_column_npy_index(tmp_path: Path) -> None:
    x = _data()
    np.save(tmp_path / "d.npy", np.column_stack([np.arange(40) % 3, x]))
    assert load_own(tmp_path / "d.npy", label_column=0).dim == 5


def test_csv_semicolon_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("0.1;0.2\n0.3;0.4\n0.5;0.6\n")
    assert load_own(p, fractions=(1 / 3, 1 / 3, 1 / 3)).dim == 2
    p.write_text("0.1,0.2\n0.3,0.4,0.5\n0.5,0.6\n")
    with pytest.raises(DataError, match="line 2: 3 fields, expected 2"):
        load_own(p)
    p.write_text("x,y\n0.1,0.2\n0.3,abc\n")
    with pytest.raises(DataError, match="line 3, column 1: 'abc' is not a number"):
        load_own(p)
    p.write_text("x,y\n")
    with pytest.raises(DataError, match="only a header"):
        load_own(p)
    p.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        load_own(p)
    q = tmp_path / "bad.csv.gz"
    q.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        load_own(q)


def test_scale_255(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(30, 8)).astype(np.uint8)
    np.save(tmp_path / "p.npy", x)
    with pytest.raises(
        DataError, match=r"found \[0, 255\]; they look like 8-bit pixel values .*scale_255=True"
    ):
        load_own(tmp_path / "p.npy")
    s = load_own(tmp_path / "p.npy", scale_255=True)
    assert float(s.train.max()) <= 1.0
    _check([s.train, s.val, s.test], x / 255.0)
    np.save(tmp_path / "big.npy", x.astype(np.float64) * 2)
    with pytest.raises(DataError, match=r"with scale_255 values must lie in \[0, 255\], found \[0, 5\d\d\]"):
        load_own(tmp_path / "big.npy", scale_255=True)
    with pytest.raises(DataError, match="rescale the data to"):
        load_own(tmp_path / "big.npy")
    np.save(tmp_path / "neg.npy", _data() - 0.5)
    with pytest.raises(DataError, match=r"values must lie in \[0, 1\], found \[-0\.\d+, 0\.\d+\]; rescale"):
        load_own(tmp_path / "neg.npy")
    np.save(tmp_path / "unit.npy", _data())
    with pytest.warns(UserWarning, match="already in"):
        load_own(tmp_path / "unit.npy", scale_255=True)


def test_nan_and_non_numeric(tmp_path: Path) -> None:
    x = _data()
    x[3, 2] = np.nan
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(DataError, match="NaN or Inf values \\(first at row 3, column 2\\)"):
        load_own(tmp_path / "n.npy")
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match="numeric"):
        load_own(tmp_path / "s.npy")
    np.save(tmp_path / "v.npy", np.arange(5) / 5)
    with pytest.raises(DataError, match="2-D array"):
        load_own(tmp_path / "v.npy")
    (tmp_path / "junk.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"not a readable \.npy"):
        load_own(tmp_path / "junk.npy")
    (tmp_path / "d.txt").write_text("1,2")
    with pytest.raises(DataError, match="unsupported file type"):
        load_own(tmp_path / "d.txt")
    with pytest.raises(FileNotFoundError):
        load_own(tmp_path / "missing.csv")


def test_fractions_validation(tmp_path: Path) -> None:
    assert check_fractions([0.7, 0.2, 0.1]) == (0.7, 0.2, 0.1)
    for bad, msg in [
        ((0.8, 0.2), "three numbers"),
        ((0.9, 0.1, 0.0), "positive"),
        ((0.8, 0.3, -0.1), "positive"),
        ((0.8, 0.1, 0.11), "sum to 1"),
        ((0.8, "a", 0.2), "must be a number"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            check_fractions(bad)
    np.save(tmp_path / "few.npy", _data(5))
    with pytest.raises(DataError, match=r"5 rows are too few .* \(5, 0, 0\)"):
        load_own(tmp_path / "few.npy")
    with pytest.raises(ConfigError, match="seed"):
        load_own(tmp_path / "few.npy", seed=-1)


def test_split_determinism(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", _data(100))
    a, b, c = (load_own(tmp_path / "d.npy", seed=s) for s in (1, 1, 2))
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train, c.train)
    assert fraction_sizes(100, (0.8, 0.1, 0.1)) == (80, 10, 10)


def test_permuted_parts_layout() -> None:
    perm = np.random.default_rng(7).permutation(20)
    tr, va, te = permuted_parts(20, (5, 3, 4), 7)
    assert tr.tolist() == perm[:5].tolist()
    assert va.tolist() == perm[13:16].tolist() and te.tolist() == perm[16:].tolist()
    with pytest.raises(ConfigError, match="need 21 rows"):
        permuted_parts(20, (10, 5, 6), 0)


def test_read_table_plain(tmp_path: Path) -> None:
    x = _data(4, 3)
    np.testing.assert_allclose(read_table(_csv(tmp_path / "r.csv", x, header=["a", "b", "c"])), x, rtol=1e-8)
