"""Turn a :class:`shf.config.DataConfig` into a checked :class:`Split`.

Data sets (``data.dataset``):

* ``curves``: ``digs3pts_1.mat`` at ``data.path`` if given, else the seeded synthetic CURVES;
* ``mnist``: the IDX files in ``data.path``, or downloaded into the cache (``data.cache_dir``,
  ``$SHF_DATA_DIR``, ``~/.cache/shf``);
* ``fashion-mnist``: ``data.path`` or ``/usr/share/datasets/fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``), the full-size MNIST stand-in;
* ``mnist-t10k``: the 10,000-image MNIST test set split into train/val/test, a small stand-in;
* ``usps``: a ``.mat`` file (``usps_all.mat``, 11,000 images, or the 9,298-image layout);
* ``own``: a user's ``.npy``/``.npz``/``.csv``/``.csv.gz`` file, split by ``data.fractions``.

``n_train``/``n_val``/``n_test`` override the split sizes where the loader has them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from shf.data.curves import PAPER_SPLIT, load_curves
from shf.data.download import cache_dir
from shf.data.mnist import PAPER_SIZES, T10K_SIZES, load_fashion_mnist, load_mnist, load_mnist_t10k
from shf.data.own import load_own
from shf.data.split import Split, make_split
from shf.data.usps import default_sizes, load_usps, read_usps_mat
from shf.errors import ConfigError, DataError

DATASETS = ("curves", "mnist", "fashion-mnist", "mnist-t10k", "usps", "own")
USPS_URL = "https://cs.nyu.edu/~roweis/data/usps_all.mat"
USPS_FILES = ("usps_all.mat", "usps_9298.mat")
"""USPS files looked for in the data cache, in order, when no path is given."""


@dataclass
class DataConfig:
    """Which data set and how to split it.

    Attributes:
        dataset: one of :data:`DATASETS` (see the module docstring).
        path: a data file or directory; ``None`` for the built-in/synthetic/cached source.
        n_train, n_val, n_test: split sizes (``None``: the paper's, Table 1).
        seed: seed of the synthetic generator and of the split.
        cache_dir: download cache (default ``$SHF_DATA_DIR`` or ``~/.cache/shf``).
        download: allow downloading MNIST when it is not cached.
        fractions, label_column, scale_255, key: a user's own file (``dataset = "own"``):
            train/val/test fractions, a label column to drop (name or index), divide
            0..255 values by 255, the array's key in an ``.npz``.
    """

    dataset: str = "curves"
    path: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    seed: int = 0
    cache_dir: str | None = None
    download: bool = True
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    label_column: int | str | None = None
    scale_255: bool = False
    key: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"data.dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        for k in ("n_train", "n_val", "n_test"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ConfigError(f"data.{k} must be a positive integer, got {v}")



def _sizes(cfg: DataConfig, default: tuple[int, int, int]) -> tuple[int, int, int]:
    """(train, val, test) with the configured overrides."""
    return (cfg.n_train or default[0], cfg.n_val or default[1], cfg.n_test or default[2])


def _usps_path(cfg: DataConfig) -> Path:
    if cfg.path:
        return Path(cfg.path)

    # Only the data cache: the library never looks into a development checkout.
    cache = cache_dir(cfg.cache_dir)
    for name in USPS_FILES:
        if (cache / name).is_file():
            return (cache / name).resolve()
    raise DataError(
        f"no USPS file found: give data.path (--data-path), or download {USPS_URL} "
        f"and put it in {cache} as usps_all.mat (the 9,298-image file as usps_9298.mat)"
    )


LABELLED = ("mnist-t10k", "usps")
"""Data sets whose loaders can attach class labels (``load_dataset(..., labels=True)``)."""


def load_dataset(cfg: DataConfig, *, labels: bool = False) -> Split:
    """Load and check the data set named by ``cfg`` (with class labels as targets if ``labels``)."""
    name = cfg.dataset
    if labels and name not in LABELLED:
        raise ConfigError(f"classification needs labels, which only {', '.join(LABELLED)} have; got {name!r}")
    if name == "curves":

        tr, te, va = PAPER_SPLIT
        train, val, test = _sizes(cfg, (tr, va, te))
        cs = load_curves(cfg.path, seed=cfg.seed, sizes=(train, test, val))
        label = "CURVES (file)" if cfg.path and os.path.exists(cfg.path) else "CURVES (synthetic)"
        return make_split(cs.train[:train], cs.val[:val], cs.test[:test], label)
    if name == "mnist":

        return load_mnist(
            cfg.path,
            download=cfg.download,
            cache=cfg.cache_dir,
            seed=cfg.seed,
            sizes=_sizes(cfg, PAPER_SIZES),
        )
    if name == "fashion-mnist":

        return load_fashion_mnist(cfg.path, seed=cfg.seed, sizes=_sizes(cfg, PAPER_SIZES))
    if name == "mnist-t10k":

        return load_mnist_t10k(
            cfg.path, seed=cfg.seed, sizes=_sizes(cfg, T10K_SIZES), download=cfg.download,
            cache=cfg.cache_dir, labels=labels,
        )  # fmt: skip
    if name == "usps":

        path = _usps_path(cfg)
        n = len(read_usps_mat(path).images)
        return load_usps(path, seed=cfg.seed, sizes=_sizes(cfg, default_sizes(n)), labels=labels)
    if name == "own":

        if not cfg.path:
            raise ConfigError("data.dataset = 'own' needs data.path (shf train --data FILE)")
        fr = cfg.fractions
        if len(fr) != 3:
            raise ConfigError(f"data.fractions must be [train, val, test], got {fr}")
        return load_own(
            cfg.path,
            fractions=(fr[0], fr[1], fr[2]),
            seed=cfg.seed,
            label_column=cfg.label_column,
            scale_255=cfg.scale_255,
            key=cfg.key,
        )
    raise ConfigError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
