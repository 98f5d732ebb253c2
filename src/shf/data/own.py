"""A user's own data set from ``.npy``, ``.npz``, ``.csv`` or ``.csv.gz``, and seeded splits.

Formats (one example per row; the model needs values in [0, 1]):

* ``.npy``: one numeric array, ``(n, m)``; arrays of more dimensions (e.g. ``n x 28 x 28``
  images) are flattened to ``(n, prod(rest))`` in C (row-major) order.
* ``.npz``: the array named ``key``; without ``key`` the archive must hold exactly one array.
* ``.csv`` / ``.csv.gz``: numbers separated by commas (a semicolon or a tab when the first
  line holds no comma). The first line is a header when any of its fields is not a number;
  the header's names can then be used as ``label_column``. Empty lines are skipped.

``label_column`` drops one column (e.g. a class label, which an autoencoder does not use):
an ``int`` is a 0-based column index (negative counts from the end), a ``str`` is a header
name (CSV files with a header only).

Values must lie in [0, 1]. With ``scale_255=True`` they must lie in [0, 255] and are divided
by 255 (8-bit pixels). When values outside [0, 1] look like 8-bit pixels (all in [0, 255]),
the error says to pass ``scale_255=True``.

Splits (:func:`load_own`): a seeded permutation of the rows
(``numpy.random.default_rng(seed).permutation``) cut into train / validation / test parts of
``round(f_val n)`` and ``round(f_test n)`` rows for validation and test and the rest for
training. :func:`permuted_parts` is the cut shared by all loaders of :mod:`shf.data`.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import logging
import math
import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from shf.data.split import Split, make_split
from shf.errors import ConfigError, DataError, DataFileNotFoundError

logger = logging.getLogger(__name__)

FloatImages = npt.NDArray[np.float32]
"""Examples, one per row, float32."""
IndexArray = npt.NDArray[np.intp]

DEFAULT_FRACTIONS: Final[tuple[float, float, float]] = (0.8, 0.1, 0.1)
"""Default (train, validation, test) fractions of :func:`load_own`."""
SUFFIXES: Final[tuple[str, ...]] = (".npy", ".npz", ".csv", ".csv.gz")
"""File types :func:`load_own` reads."""


# ------------------------------------------------------------------------ shared helpers


def check_seed(seed: object) -> int:
    """``seed`` as an ``int`` if it is a non-negative integer, else :class:`ConfigError`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_sizes(sizes: object, what: str = "sizes") -> tuple[int, int, int]:
    """``sizes`` as ``(train, val, test)`` if it is a sequence of three integers >= 1."""
    if not isinstance(sizes, (tuple, list)) or len(sizes) != 3:
        raise ConfigError(f"{what} must be (train, val, test), three positive integers; got {sizes!r}")
    out = []
    for part, v in zip(("train", "val", "test"), sizes):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{what}: the {part} size must be a positive integer, got {v!r}")
        out.append(int(v))
    return out[0], out[1], out[2]


def permuted_parts(n_rows: int, sizes: Sequence[int], seed: int) -> list[IndexArray]:
    """Row indices of disjoint parts of a seeded permutation of ``range(n_rows)``.

    The permutation is ``numpy.random.default_rng(seed).permutation(n_rows)``. The first part
    is its first ``sizes[0]`` entries; the other parts are packed at its *end*, the last part
    last: ``[part 0 | unused | part 1 | ... | part k]``. So the validation and test rows do
    not change when a smaller training set is asked for, and when the sizes add up to
    ``n_rows`` it is a plain consecutive cut.
    """
    total = sum(sizes)
    if total > n_rows:
        raise ConfigError(f"the sizes {tuple(sizes)} need {total} rows but the data have only {n_rows}")
    perm = np.random.default_rng(seed).permutation(n_rows).astype(np.intp)
    parts = [perm[: sizes[0]]]
    end = n_rows
    tail: list[IndexArray] = []
    for s in reversed(sizes[1:]):
        tail.append(perm[end - s : end])
        end -= s
    parts.extend(reversed(tail))
    return parts


def seeded_split(
    x: FloatImages,
    sizes: tuple[int, int, int],
    seed: int,
    name: str,
    labels: npt.NDArray[np.int64] | None = None,
) -> Split:
    """Cut the rows of ``x`` (and of ``labels``, if given, as the targets) into train / val /
    test with :func:`permuted_parts`; check them."""
    tr, va, te = permuted_parts(x.shape[0], sizes, seed)
    split = make_split(x[tr], x[va], x[te], name)
    if labels is None:
        return split
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return dataclasses.replace(
        split, train_targets=y[tr], val_targets=y[va], test_targets=y[te], name=f"{name}, labelled"
    )


def to_unit_range(x: npt.NDArray[Any], what: str, *, scale_255: bool) -> FloatImages:
    """Check the value range of ``x`` and return it as float32 in [0, 1].

    Without ``scale_255`` values must already be in [0, 1]; with it they must be in
    [0, 255] and are divided by 255. Messages name ``what`` and suggest the flag when
    values look like 8-bit pixels.
    """
    if x.dtype.kind not in "biuf":
        raise DataError(f"{what}: values must be numbers, got dtype {x.dtype}")
    a = x.astype(np.float64, copy=False)
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{what}: {int(bad.sum())} NaN or Inf values (first at row {r}, column {c})")
    lo, hi = float(a.min()), float(a.max())
    if scale_255:
        if lo < 0.0 or hi > 255.0:
            raise DataError(f"{what}: with scale_255 values must lie in [0, 255], found [{lo:g}, {hi:g}]")
        if hi <= 1.0:
            warnings.warn(
                f"{what}: scale_255 divides by 255 but all values are already in [0, 1] "
                f"(max {hi:g}); the data will be nearly zero",
                stacklevel=3,
            )
        return (a / 255.0).astype(np.float32)
    if lo < 0.0 or hi > 1.0:
        hint = (
            "; they look like 8-bit pixel values (0..255): pass scale_255=True "
            "(shf train --scale-255) to divide them by 255"
            if lo >= 0.0 and hi <= 255.0
            else "; rescale the data to [0, 1] first (the model's logistic outputs cannot reach other values)"
        )
        raise DataError(f"{what}: values must lie in [0, 1], found [{lo:g}, {hi:g}]{hint}")
    return a.astype(np.float32)


# --------------------------------------------------------------------------------- reading


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in (".csv.gz", ".npy", ".npz", ".csv"):
        if name.endswith(s):
            return s
    raise DataError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)}")


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[npt.NDArray[np.float64], list[str] | None]:
    """Numbers of a CSV file and its header names (``None`` without a header)."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        compressed = "gzip-compressed " if path.name.lower().endswith(".gz") else ""
        raise DataError(f"{path}: cannot read as {compressed}UTF-8 text: {exc}") from exc
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise DataError(f"{path}: the file is empty")
    first = lines[0][1]
    delim = "," if "," in first else ";" if ";" in first else "\t" if "\t" in first else ","
    first_fields = next(csv.reader([first], delimiter=delim))
    header: list[str] | None = None
    if not all(_is_number(f) for f in first_fields):
        header = [h.strip() for h in first_fields]
        lines = lines[1:]
        if not lines:
            raise DataError(f"{path}: only a header line, no data rows")
    width = len(first_fields)
    try:  # fast path (C parser); the slow path below only runs to explain a failure
        out: npt.NDArray[np.float64] = np.loadtxt(
            io.StringIO("\n".join(ln for _, ln in lines)),
            delimiter=delim,
            dtype=np.float64,
            ndmin=2,
            comments=None,
            quotechar='"',
        )
    except ValueError as exc:
        for lineno, ln in lines:
            row = next(csv.reader([ln], delimiter=delim))
            if len(row) != width:
                raise DataError(
                    f"{path}, line {lineno}: {len(row)} fields, expected {width} (as in the first line)"
                ) from None
            for j, field in enumerate(row):
                if not _is_number(field):
                    raise DataError(f"{path}, line {lineno}, column {j}: {field!r} is not a number") from None
        raise DataError(f"{path}: cannot parse as numbers: {exc}") from exc
    if out.shape[1] != width:
        raise DataError(f"{path}: rows have {out.shape[1]} fields but the first line has {width}")
    return out, header


def _read_npz(path: Path, key: str | None) -> npt.NDArray[Any]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if key is None:
                if len(keys) != 1:
                    raise DataError(
                        f"{path}: the archive holds {len(keys)} arrays {keys}; choose one with key=..."
                    )
                key = keys[0]
            if key not in keys:
                raise DataError(f"{path}: no array named {key!r} (found {keys})")
            arr: npt.NDArray[Any] = archive[key]
            return arr
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz file: {exc}") from exc


def _read_npy(path: Path) -> npt.NDArray[Any]:
    try:
        arr: npt.NDArray[Any] = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file: {exc}") from exc
    if not isinstance(arr, np.ndarray):  # pragma: no cover - np.load of .npy returns arrays
        raise DataError(f"{path}: not a .npy array")
    return arr


def read_table(
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    label_column: int | str | None = None,
) -> npt.NDArray[Any]:
    """Read a user's data file into a 2-D array, one example per row (values not rescaled).

    See the module docstring for the formats and ``label_column``.

    Raises:
        DataFileNotFoundError: the file does not exist (a ``FileNotFoundError``).
        DataError: unsupported type, unreadable content, not numeric, fewer than 2 dimensions,
            ragged or non-numeric CSV rows, or a bad ``label_column`` / ``key``.
    """
    p = Path(path)
    if p.is_dir():
        raise DataFileNotFoundError(f"{p} is a directory; give the data file itself")
    if not p.is_file():
        raise DataFileNotFoundError(f"data file not found: {p}")
    kind = _suffix(p)
    header: list[str] | None = None
    if kind == ".npy":
        arr = _read_npy(p)
    elif kind == ".npz":
        arr = _read_npz(p, key)
    else:
        arr, header = _read_csv(p)
    if key is not None and kind != ".npz":
        raise ConfigError(f"{p}: key= selects an array of a .npz file; this is a {kind} file")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{p}: the data must be numeric, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise DataError(f"{p}: expected a 2-D array (examples x features), got shape {arr.shape}")
    if arr.ndim > 2:
        if label_column is not None:
            raise DataError(f"{p}: label_column needs a 2-D array, got shape {arr.shape}")
        logger.info("%s: flattening array of shape %s to one example per row", p, arr.shape)
        arr = arr.reshape(arr.shape[0], -1)
    if label_column is not None:
        arr = _drop_column(p, arr, label_column, header)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{p}: no data (shape {arr.shape})")
    return arr


def _drop_column(
    path: Path, arr: npt.NDArray[Any], label_column: int | str, header: list[str] | None
) -> npt.NDArray[Any]:
    width = arr.shape[1]
    if isinstance(label_column, str):
        if header is None:
            raise DataError(
                f"{path}: label_column={label_column!r} is a column name but the file has no header row; "
                "give the column's index (an int) instead"
            )
        if label_column not in header:
            raise DataError(f"{path}: no column named {label_column!r} in the header {header}")
        if header.count(label_column) > 1:
            raise DataError(f"{path}: the header names {header.count(label_column)} columns {label_column!r}")
        idx = header.index(label_column)
    elif isinstance(label_column, (int, np.integer)) and not isinstance(label_column, bool):
        idx = int(label_column)
        if not -width <= idx < width:
            raise DataError(f"{path}: label_column={idx} is out of range for {width} columns")
        idx %= width
    else:
        raise ConfigError(f"label_column must be a column name (str) or index (int), got {label_column!r}")
    if width == 1:
        raise DataError(f"{path}: dropping the label column leaves no data")
    return np.delete(arr, idx, axis=1)


# --------------------------------------------------------------------------------- loading


def check_fractions(fractions: object) -> tuple[float, float, float]:
    """``fractions`` as (train, val, test) floats: three positive numbers summing to 1 (±1e-9)."""
    if not isinstance(fractions, (tuple, list)) or len(fractions) != 3:
        raise ConfigError(f"fractions must be (train, val, test), three numbers; got {fractions!r}")
    out = []
    for part, v in zip(("train", "val", "test"), fractions):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ConfigError(f"fractions: the {part} fraction must be a number, got {v!r}")
        f = float(v)
        if not math.isfinite(f) or f <= 0.0:
            raise ConfigError(f"fractions: the {part} fraction must be positive, got {v!r}")
        out.append(f)
    if abs(sum(out) - 1.0) > 1e-9:
        raise ConfigError(f"fractions must sum to 1, got {tuple(out)} (sum {sum(out)!r})")
    return out[0], out[1], out[2]


def fraction_sizes(n_rows: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Rows per part: ``round(f n)`` for validation and test, the rest for training."""
    n_val = round(fractions[1] * n_rows)
    n_test = round(fractions[2] * n_rows)
    n_train = n_rows - n_val - n_test
    return n_train, n_val, n_test


def load_own(
    path: str | os.PathLike[str],
    *,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    label_column: int | str | None = None,
    scale_255: bool = False,
    key: str | None = None,
    name: str | None = None,
) -> Split:
    """Load a user's data file and split it with a seed (see the module docstring).

    Args:
        path: a ``.npy``, ``.npz``, ``.csv`` or ``.csv.gz`` file, one example per row.
        fractions: (train, validation, test) fractions, positive, summing to 1.
        seed: seed of the row permutation.
        label_column: a column to drop, by 0-based index or header name.
        scale_255: divide by 255 (values must then lie in [0, 255]).
        key: the array of a ``.npz`` archive holding several.
        name: the split's name; default ``"own data (<file name>)"``.

    Returns:
        The checked float32 :class:`Split`.

    Raises:
        ConfigError: bad ``fractions``, ``seed``, ``label_column`` type, or ``key`` for a
            non-``.npz`` file.
        DataError: unreadable file, bad values, or too few rows for every part to get one.
    """
    fr = check_fractions(fractions)
    seed = check_seed(seed)
    p = Path(path)
    arr = read_table(p, key=key, label_column=label_column)
    x = to_unit_range(arr, str(p), scale_255=scale_255)
    sizes = fraction_sizes(x.shape[0], fr)
    if min(sizes) < 1:
        raise DataError(
            f"{p}: {x.shape[0]} rows are too few for the fractions {fr}: the parts would get "
            f"{sizes} rows (train, val, test); every part needs at least 1"
        )
    return seeded_split(x, sizes, seed, name or f"own data ({p.name})")
