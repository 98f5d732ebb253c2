"""USPS handwritten digits (16x16) from a MATLAB ``.mat`` file, in either of two layouts.

The content of the file decides the layout:

(a) ``data``: the paper's ``usps_all.mat`` (Sam Roweis), ``uint8`` array
    ``256 x n x 10`` (pixels x examples x class; ``n = 1100``). Class index ``c`` (1-based)
    holds digit ``c``, except class 10 which holds digit 0. Each 256-vector is a 16x16 image
    stored **column-major** (MATLAB order), so it is transposed here: the returned rows are
    the upright images flattened **row-major**. Images are stacked class by class (digits
    1, ..., 9, 0) before the split permutes them.
(b) ``usps_all``: the 9,298-image USPS (7,291 train + 2,007 test of the original, here
    merged), ``uint8`` array ``n x 257``: columns 0..255 are the pixels, column 256 the label
    1..10 (label ``k`` is digit ``k - 1``). Its images are stored **row-major** already (an
    image reshaped in C order is upright), so they are kept as stored.

So both layouts give the same orientation: an upright image flattened row by row, pixel
``(r, c)`` at column ``16 r + c``. In both files the ink is bright (255) on a dark (0)
background.

Values: integer pixels must lie in [0, 255] and are divided by 255 (both real files are
``uint8`` 0..255). Floating-point pixels are accepted in [0, 1] (kept), in [-1, 1] (the
common USPS scaling; mapped by ``(x + 1) / 2``) or in [0, 255] (divided by 255).

Split: the paper's 8,000 train / 1,000 validation / 2,000 test of the 11,000 images of
layout (a). For other sizes the same proportions are kept: validation ``round(n / 11)``,
test ``round(2 n / 11)``, train the rest, which for the 9,298 images of layout (b) is
6,762 / 845 / 1,691. The parts are cut from a seeded permutation of all images
(:func:`~shf.data.own.permuted_parts`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import scipy.io

from shf.data.own import FloatImages, check_seed, check_sizes, seeded_split
from shf.data.split import Split
from shf.errors import ConfigError, DataError, DataFileNotFoundError

logger = logging.getLogger(__name__)

SIDE: Final[int] = 16
"""Side of a USPS image in pixels."""
N_PIXELS: Final[int] = SIDE * SIDE
"""Pixels per image (256)."""
PAPER_SIZES: Final[tuple[int, int, int]] = (8000, 1000, 2000)
"""The paper's USPS split of 11,000 images, **(train, val, test)**."""
SIZES_9298: Final[tuple[int, int, int]] = (6762, 845, 1691)
"""The paper's proportions applied to the 9,298-image USPS, **(train, val, test)**."""


@dataclass(frozen=True)
class UspsImages:
    """All images of a USPS file, before the split."""

    images: FloatImages
    """``(n, 256)`` float32 in [0, 1], upright images flattened row-major."""
    digits: npt.NDArray[np.int64]
    """``(n,)`` digit of each image, 0..9."""
    layout: str
    """``"usps_all.mat (data)"`` for layout (a) or ``"9298 (usps_all)"`` for layout (b)."""


def default_sizes(n: int) -> tuple[int, int, int]:
    """(train, val, test) in the paper's 8:1:2 proportions: the rest, ``round(n/11)``, ``round(2n/11)``."""
    n_val = round(n / 11)
    n_test = round(2 * n / 11)
    return n - n_val - n_test, n_val, n_test


def _pixels_to_unit(x: npt.NDArray[Any], where: str) -> FloatImages:
    """Scale pixel values to [0, 1] by their type and range (see the module docstring)."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: pixels must be numeric, got dtype {x.dtype}")
    a = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise DataError(f"{where}: pixels contain NaN or Inf")
    lo, hi = float(a.min()), float(a.max())
    if x.dtype.kind in "biu":
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer pixels must lie in [0, 255], found [{lo:g}, {hi:g}]")
        return (a / 255.0).astype(np.float32)
    if lo >= 0.0 and hi <= 1.0:
        return a.astype(np.float32)
    if lo >= -1.0 and hi <= 1.0:
        logger.info("%s: pixels in [-1, 1], mapped to [0, 1] by (x + 1) / 2", where)
        return ((a + 1.0) / 2.0).astype(np.float32)
    if lo >= 0.0 and hi <= 255.0:
        return (a / 255.0).astype(np.float32)
    raise DataError(f"{where}: pixels in [{lo:g}, {hi:g}]; expected [0, 1], [-1, 1] or [0, 255]")


def _layout_a(data: npt.NDArray[Any], where: str) -> UspsImages:
    if data.ndim != 3 or data.shape[0] != N_PIXELS or data.shape[2] != 10 or data.shape[1] < 1:
        raise DataError(
            f"{where}: variable 'data' must be 256 x n x 10 (pixels x examples x class), got {data.shape}"
        )
    n_per = data.shape[1]
    # (256, n, 10) -> (10, n, 256): class-major stack of 256-vectors.
    vec = np.transpose(data, (2, 1, 0)).reshape(10 * n_per, N_PIXELS)
    # Each vector is a column-major (MATLAB) 16x16 image: element 16 c + r is pixel (r, c).
    # Reading it as row-major gives the transposed image, so transpose back.
    upright = vec.reshape(-1, SIDE, SIDE).transpose(0, 2, 1).reshape(-1, N_PIXELS)
    digits = np.repeat((np.arange(1, 11) % 10).astype(np.int64), n_per)  # class 10 is digit 0
    return UspsImages(_pixels_to_unit(upright, where), digits, "usps_all.mat (data)")


def _layout_b(table: npt.NDArray[Any], where: str) -> UspsImages:
    if table.ndim != 2 or table.shape[1] != N_PIXELS + 1 or table.shape[0] < 1:
        raise DataError(
            f"{where}: variable 'usps_all' must be n x 257 (256 pixels, then a label), got {table.shape}"
        )
    labels = np.asarray(table[:, N_PIXELS])
    if labels.dtype.kind not in "biuf" or not np.all(np.isin(labels, np.arange(1, 11))):
        found = np.unique(labels)[:10]
        raise DataError(f"{where}: column 256 of 'usps_all' must hold labels 1..10, found values {found}")
    # The 9,298-image file stores each image row-major (upright when reshaped in C order).
    images = _pixels_to_unit(np.ascontiguousarray(table[:, :N_PIXELS]), where)
    return UspsImages(images, labels.astype(np.int64) - 1, "9298 (usps_all)")


def read_usps_mat(path: str | os.PathLike[str]) -> UspsImages:
    """All images of a USPS ``.mat`` file (layout (a) or (b) of the module docstring).

    Raises:
        DataFileNotFoundError: the file does not exist (a ``FileNotFoundError``).
        DataError: not a readable MATLAB v4/v5/v7 file (v7.3/HDF5 is not supported), neither
            variable ``data`` nor ``usps_all``, wrong shapes, labels or values.
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileNotFoundError(f"USPS file not found: {p}")
    try:
        mat = scipy.io.loadmat(str(p), appendmat=False)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
        raise DataError(f"{p}: MATLAB v7.3 (HDF5) files are not supported; save it with -v7: {exc}") from exc
    except Exception as exc:  # scipy raises ValueError, MatReadError, IndexError, ... on junk
        raise DataError(f"{p}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from exc
    where = str(p)
    if "data" in mat:
        return _layout_a(np.asarray(mat["data"]), where)
    if "usps_all" in mat:
        return _layout_b(np.asarray(mat["usps_all"]), where)
    found = sorted(k for k in mat if not k.startswith("__"))
    raise DataError(
        f"{p}: no USPS variable: expected 'data' (256 x n x 10, the paper's usps_all.mat) or 'usps_all' "
        f"(n x 257, the 9,298-image USPS); found {found}"
    )


def load_usps(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    sizes: tuple[int, int, int] | None = None,
    labels: bool = False,
) -> Split:
    """USPS from a ``.mat`` file, split with a seed (see the module docstring).

    Args:
        path: ``usps_all.mat`` (variable ``data``) or the 9,298-image file (``usps_all``).
        seed: seed of the permutation.
        sizes: (train, val, test); default :func:`default_sizes` of the number of images,
            i.e. 8,000 / 1,000 / 2,000 for 11,000 images, 6,762 / 845 / 1,691 for 9,298.
        labels: attach the digits 0..9 as the targets (classification); the split of the
            images is the same either way.

    Returns:
        A :class:`Split` named ``"USPS (11000)"``-style after the layout and image count.
    """
    seed = check_seed(seed)
    u = read_usps_mat(path)
    n = u.images.shape[0]
    chosen = default_sizes(n) if sizes is None else check_sizes(sizes)
    if min(chosen) < 1:
        raise DataError(f"{path}: {n} images are too few to split into {chosen} (train, val, test)")
    if sum(chosen) > n:
        raise ConfigError(f"USPS: sizes {chosen} need {sum(chosen)} images but {path} holds {n}")
    name = f"USPS ({n})" if u.layout.startswith("9298") else f"USPS (usps_all.mat, {n})"
    logger.info("%s from %s: %s (train, val, test)", name, path, chosen)
    return seeded_split(u.images, chosen, seed, name, u.digits if labels else None)
