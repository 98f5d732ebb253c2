"""MNIST, Fashion-MNIST and the MNIST test set as a stand-in, from IDX files.

All loaders return a :class:`~shf.data.split.Split` of float32 images in [0, 1] (uint8
pixels divided by 255), one 28x28 image per row, flattened row-major (as stored in IDX).
Only the image files are read; the label files are not needed by an autoencoder.

A directory in MNIST format holds ``train-images-idx3-ubyte`` and ``t10k-images-idx3-ubyte``,
each plain or gzip-compressed (``.gz``); the spelling ``train-images.idx3-ubyte`` of some
copies is accepted too.

Splits (sizes are always given in the order **(train, val, test)**):

* :func:`load_mnist` and :func:`load_fashion_mnist`: the paper's 50,000 / 10,000 / 10,000.
  Train and validation come from the 60,000 training images, cut by a seeded permutation
  (:func:`~shf.data.own.permuted_parts`: train from the front of the permutation, validation
  from its end, so a smaller training set keeps the same validation set); the test set is the
  first ``n_test`` images of the 10,000 test images, in file order (the whole test set by
  default, independent of the seed).
* :func:`load_mnist_t10k`: a stand-in for machines that have only the MNIST test set
  (``t10k-images-idx3-ubyte``, a path or the download cache): its 10,000 images are cut
  by a seeded permutation into 6,000 / 2,000 / 2,000 (default). Results on it are *not*
  comparable with the paper's MNIST numbers (5x less training data).

Downloads (:func:`load_mnist` without ``path``): the two ``.gz`` image files are fetched
into ``<cache>/mnist`` (:func:`shf.data.download.cache_dir`) from the first mirror of
:data:`MNIST_MIRRORS` that answers, and checked against the official md5 sums
(:data:`MNIST_GZ_MD5`). A copy that was recompressed (different ``.gz`` md5) or
decompressed and put there by hand is accepted when its decompressed content has the
official md5 (:data:`MNIST_CONTENT_MD5`).

Fashion-MNIST (Xiao et al. 2017; same format and shapes) is the full-size stand-in for MNIST
where MNIST cannot be downloaded. The Debian package ``dataset-fashion-mnist`` installs it in
``/usr/share/datasets/fashion-mnist/`` as ``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
``t10k-labels-idx1-ubyte.gz``; Debian recompressed the files, so their ``.gz`` md5 sums
differ from the upstream ones but the decompressed content is identical to upstream
(:data:`FASHION_MNIST_CONTENT_MD5`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from shf.data.download import cache_dir, fetch, file_md5
from shf.data.idx import idx_content_md5, read_idx
from shf.data.own import FloatImages, check_seed, check_sizes, permuted_parts, seeded_split
from shf.data.split import Split, make_split
from shf.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

TRAIN_IMAGES: Final[str] = "train-images-idx3-ubyte"
"""Stem of the training images file (``.gz`` optional)."""
TEST_IMAGES: Final[str] = "t10k-images-idx3-ubyte"
"""Stem of the test images file (``.gz`` optional)."""
TEST_LABELS: Final[str] = "t10k-labels-idx1-ubyte"
"""Stem of the test labels file (``.gz`` optional)."""

PAPER_SIZES: Final[tuple[int, int, int]] = (50000, 10000, 10000)
"""The paper's MNIST split, **(train, val, test)**."""
T10K_SIZES: Final[tuple[int, int, int]] = (6000, 2000, 2000)
"""Default (train, val, test) split of the 10,000 MNIST test images in :func:`load_mnist_t10k`."""

MNIST_MIRRORS: Final[tuple[str, ...]] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Base URLs of the MNIST files, tried in order."""
MNIST_GZ_MD5: Final[dict[str, str]] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""Official md5 sums of the published ``.gz`` files (what a download is checked against)."""
MNIST_CONTENT_MD5: Final[dict[str, str]] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
"""md5 sums of the decompressed MNIST files."""
FASHION_MNIST_CONTENT_MD5: Final[dict[str, str]] = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
"""md5 sums of the decompressed Fashion-MNIST files (upstream = Debian package content)."""
FASHION_MNIST_DIR: Final[Path] = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs Fashion-MNIST."""

_MNIST_SUBDIR: Final[str] = "mnist"


# ------------------------------------------------------------------------------- files


def find_idx_file(directory: str | os.PathLike[str], stem: str) -> Path | None:
    """The file of ``stem`` in ``directory``: ``stem``, ``stem.gz``, or with ``-idx`` spelt ``.idx``.

    Returns ``None`` when there is none.
    """
    d = Path(directory)
    alt = stem.replace("-idx", ".idx")
    for name in (f"{stem}.gz", stem, f"{alt}.gz", alt):
        p = d / name
        if p.is_file():
            return p
    return None


def _require_idx_file(directory: Path, stem: str, what: str) -> Path:
    p = find_idx_file(directory, stem)
    if p is None:
        if directory.is_file():
            raise DataError(f"{what}: {directory} is a file; give the directory that holds the IDX files")
        if not directory.is_dir():
            raise DataError(f"{what}: directory {directory} does not exist")
        raise DataError(f"{what}: no {stem} or {stem}.gz in {directory}")
    return p


def read_idx_images(path: str | os.PathLike[str], *, md5: str | None = None) -> FloatImages:
    """Images of an IDX file as float32 in [0, 1], one row-major flattened image per row.

    The file must hold a 3-D array ``(n, rows, cols)``; ``uint8`` pixels are divided by 255,
    floating-point pixels are kept (and must lie in [0, 1]). ``md5`` is that of the
    decompressed content.
    """
    arr = read_idx(path, md5=md5)
    if arr.ndim != 3:
        raise DataError(f"{path}: expected images, a 3-D IDX array (n, rows, cols); got shape {arr.shape}")
    flat = arr.reshape(arr.shape[0], -1)
    if arr.dtype == np.uint8:
        return flat.astype(np.float32) / np.float32(255.0)
    if arr.dtype.kind == "f":
        return flat.astype(np.float32)
    raise DataError(f"{path}: image pixels must be unsigned bytes or floats, got {arr.dtype}")


def load_idx_dataset(
    directory: str | os.PathLike[str],
    *,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int,
    name: str = "MNIST-format",
    md5: Mapping[str, str] | None = None,
) -> Split:
    """Load an MNIST-format directory and split it as described in the module docstring.

    Args:
        directory: holds ``train-images-idx3-ubyte[.gz]`` and ``t10k-images-idx3-ubyte[.gz]``.
        n_train, n_val: training and validation images, drawn without overlap from the
            training file by a seeded permutation (``n_train + n_val`` <= its images).
        n_test: the first ``n_test`` images of the test file.
        seed: seed of the permutation.
        name: the split's name.
        md5: optional md5 of the decompressed content, keyed by the stems
            :data:`TRAIN_IMAGES` / :data:`TEST_IMAGES` (missing keys are not checked).

    Raises:
        DataError: a file is missing or invalid, or the image sizes of the two files differ.
        ConfigError: bad sizes or seed, or more images asked for than the files hold.
    """
    n_train, n_val, n_test = check_sizes((n_train, n_val, n_test), "n_train, n_val, n_test")
    seed = check_seed(seed)
    d = Path(directory)
    sums = md5 or {}
    train_path = _require_idx_file(d, TRAIN_IMAGES, name)
    test_path = _require_idx_file(d, TEST_IMAGES, name)
    train_all = read_idx_images(train_path, md5=sums.get(TRAIN_IMAGES))
    test_all = read_idx_images(test_path, md5=sums.get(TEST_IMAGES))
    if train_all.shape[1] != test_all.shape[1]:
        raise DataError(
            f"{name}: training images have {train_all.shape[1]} pixels, test images {test_all.shape[1]}"
        )
    if n_train + n_val > train_all.shape[0]:
        raise ConfigError(
            f"{name}: n_train + n_val = {n_train} + {n_val}, but {train_path} has {train_all.shape[0]} images"
        )
    if n_test > test_all.shape[0]:
        raise ConfigError(f"{name}: n_test = {n_test} but {test_path} holds {test_all.shape[0]} images")
    tr, va = permuted_parts(train_all.shape[0], (n_train, n_val), seed)
    logger.info("%s: %d train / %d val / %d test images from %s", name, n_train, n_val, n_test, d)
    return make_split(train_all[tr], train_all[va], test_all[:n_test], name)


# --------------------------------------------------------------------------------- MNIST


def _cached_ok(directory: Path, stem: str, content_md5: str) -> bool:
    """Whether the cache holds a usable copy of ``stem`` (official .gz, or right content)."""
    gz = directory / f"{stem}.gz"
    if gz.is_file() and file_md5(gz) == MNIST_GZ_MD5[f"{stem}.gz"]:
        return True
    p = find_idx_file(directory, stem)
    if p is None:
        return False
    try:
        return idx_content_md5(p) == content_md5
    except DataError:
        return False


def download_mnist(cache: str | os.PathLike[str] | None = None, *, progress: bool = True) -> Path:
    """Make sure the MNIST image files are in ``<cache>/mnist`` and return that directory.

    ``cache`` defaults to :func:`shf.data.download.cache_dir`. Files already there are kept
    when their ``.gz`` md5 is the official one or their decompressed content is; others are
    downloaded from :data:`MNIST_MIRRORS` (see :func:`shf.data.download.fetch`).
    """
    directory = cache_dir(cache) / _MNIST_SUBDIR
    for stem in (TRAIN_IMAGES, TEST_IMAGES):
        if _cached_ok(directory, stem, MNIST_CONTENT_MD5[stem]):
            continue
        filename = f"{stem}.gz"
        fetch(
            [base + filename for base in MNIST_MIRRORS], filename, MNIST_GZ_MD5[filename], directory, progress
        )
    return directory


def load_mnist(
    path: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    cache: str | os.PathLike[str] | None = None,
    seed: int = 0,
    sizes: tuple[int, int, int] = PAPER_SIZES,
    verify: bool = True,
    progress: bool = True,
) -> Split:
    """MNIST, split 50,000 / 10,000 / 10,000 (train, val, test) as in the paper.

    Args:
        path: a directory holding the MNIST image files; ``None`` uses ``<cache>/mnist``,
            downloading what is missing (:func:`download_mnist`) when ``download`` is true.
        download: allow downloading into the cache.
        cache: the cache directory (default :func:`shf.data.download.cache_dir`).
        seed: seed of the train / validation permutation.
        sizes: (train, val, test) image counts; train + val <= 60,000, test <= 10,000.
        verify: check the decompressed content against the official md5 sums
            (:data:`MNIST_CONTENT_MD5`); turn off for a modified MNIST-format directory.
        progress: show download progress bars.
    """
    n_train, n_val, n_test = check_sizes(sizes)
    if path is not None:
        directory = Path(path)
    elif download:
        try:
            directory = download_mnist(cache, progress=progress)
        except DataError as exc:
            raise DataError(f"MNIST: {exc}\nOr pass a directory that holds the MNIST files as path.") from exc
    else:
        directory = cache_dir(cache) / _MNIST_SUBDIR
        missing = [s for s in (TRAIN_IMAGES, TEST_IMAGES) if find_idx_file(directory, s) is None]
        if missing:
            raise DataError(
                f"MNIST: {', '.join(m + '.gz' for m in missing)} not in {directory} and download=False; "
                "allow the download or put the files there by hand"
            )
    return load_idx_dataset(
        directory,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        seed=seed,
        name="MNIST",
        md5=MNIST_CONTENT_MD5 if verify else None,
    )


def load_fashion_mnist(
    path: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    sizes: tuple[int, int, int] = PAPER_SIZES,
    verify: bool = True,
) -> Split:
    """Fashion-MNIST as the full-size MNIST stand-in, split like MNIST (50k / 10k / 10k).

    Args:
        path: a directory with the Fashion-MNIST IDX files; default
            :data:`FASHION_MNIST_DIR`, where the Debian package ``dataset-fashion-mnist``
            puts them.
        seed, sizes: as for :func:`load_mnist`.
        verify: check the decompressed content against :data:`FASHION_MNIST_CONTENT_MD5`.
    """
    directory = FASHION_MNIST_DIR if path is None else Path(path)
    if path is None and find_idx_file(directory, TRAIN_IMAGES) is None:
        raise DataError(
            f"Fashion-MNIST not found in {directory}: install the Debian package dataset-fashion-mnist "
            "(sudo apt-get update && sudo apt-get install dataset-fashion-mnist), or pass the directory "
            "holding train-images-idx3-ubyte.gz and t10k-images-idx3-ubyte.gz as path"
        )
    n_train, n_val, n_test = check_sizes(sizes)
    return load_idx_dataset(
        directory,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        seed=seed,
        name="Fashion-MNIST (MNIST stand-in)",
        md5=FASHION_MNIST_CONTENT_MD5 if verify else None,
    )


def t10k_candidates(cache: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories :func:`load_mnist_t10k` searches when no path is given: the MNIST
    download cache ``<cache>/mnist`` (the library never looks into a development checkout)."""
    return [cache_dir(cache) / _MNIST_SUBDIR]


def load_mnist_t10k(
    path: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    sizes: tuple[int, int, int] = T10K_SIZES,
    verify: bool = True,
    download: bool = True,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
    labels: bool = False,
) -> Split:
    """The 10,000 MNIST test images, split by a seed into train / val / test: a small stand-in.

    Only the MNIST *test* set is used (``t10k-images-idx3-ubyte[.gz]``), for machines without
    the training set. Its images are permuted with ``seed`` and cut with
    :func:`~shf.data.own.permuted_parts` into ``sizes`` = (train, val, test), by default
    6,000 / 2,000 / 2,000. Error numbers on this stand-in are not comparable with the
    paper's MNIST results.

    Args:
        path: the directory with the file; default: the first of :func:`t10k_candidates`
            that holds it (the download cache).
        seed: seed of the permutation.
        sizes: (train, val, test), summing to at most 10,000.
        verify: check the decompressed content against the official md5
            (``2646ac647ad5339dbf082846283269ea``).
        download: when ``path`` is ``None`` and no candidate holds the file, download
            ``t10k-images-idx3-ubyte.gz`` (1.6 MB) into ``<cache>/mnist`` from
            :data:`MNIST_MIRRORS`.
        cache: the cache directory (default :func:`shf.data.download.cache_dir`).
        progress: show the download progress bar.
        labels: attach the digits (``t10k-labels-idx1-ubyte[.gz]`` beside the images,
            downloaded the same way) as the targets, for classification.
    """
    n_train, n_val, n_test = check_sizes(sizes)
    seed = check_seed(seed)
    if path is not None:
        file = _require_idx_file(Path(path), TEST_IMAGES, "MNIST-t10k")
    else:
        found = [p for p in (find_idx_file(d, TEST_IMAGES) for d in t10k_candidates(cache)) if p is not None]
        if found:
            file = found[0]
        elif download:
            filename = f"{TEST_IMAGES}.gz"
            urls = [base + filename for base in MNIST_MIRRORS]
            file = fetch(urls, filename, MNIST_GZ_MD5[filename], cache_dir(cache) / _MNIST_SUBDIR, progress)
        else:
            searched = ", ".join(str(d) for d in t10k_candidates(cache))
            raise DataError(
                f"MNIST-t10k: {TEST_IMAGES}.gz not found (searched {searched}); pass its directory as path "
                "or allow the download"
            )
    x = read_idx_images(file, md5=MNIST_CONTENT_MD5[TEST_IMAGES] if verify else None)
    if n_train + n_val + n_test > x.shape[0]:
        raise ConfigError(
            f"MNIST-t10k: sizes {(n_train, n_val, n_test)} need {n_train + n_val + n_test} images, "
            f"{file} holds {x.shape[0]}"
        )
    digits = None
    if labels:
        digits = _t10k_labels(file.parent, x.shape[0], verify=verify, cache=cache, progress=progress)
    logger.info("MNIST-t10k stand-in from %s: %d / %d / %d", file, n_train, n_val, n_test)
    return seeded_split(x, (n_train, n_val, n_test), seed, "MNIST-t10k (stand-in)", digits)


def _t10k_labels(
    directory: Path, n: int, *, verify: bool, cache: str | os.PathLike[str] | None, progress: bool
) -> npt.NDArray[np.int64]:
    """The MNIST test labels beside the images (or downloaded into the cache), checked."""
    file = find_idx_file(directory, TEST_LABELS)
    if file is None:
        filename = f"{TEST_LABELS}.gz"
        urls = [base + filename for base in MNIST_MIRRORS]
        file = fetch(urls, filename, MNIST_GZ_MD5[filename], cache_dir(cache) / _MNIST_SUBDIR, progress)
    y = read_idx(file, md5=MNIST_CONTENT_MD5[TEST_LABELS] if verify else None)
    if y.ndim != 1 or y.shape[0] != n or y.dtype.kind not in "iu" or (y.size and int(y.max()) > 9):
        raise DataError(f"{file}: expected {n} labels 0..9 (a 1-D IDX array), got {y.shape} {y.dtype}")
    return y.astype(np.int64)
