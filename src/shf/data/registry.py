"""Turn a :class:`shf.config.DataConfig` into a checked :class:`Split`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shf.data.split import Split, make_split
from shf.errors import ConfigError

if TYPE_CHECKING:
    from shf.config import DataConfig

DATASETS = ("curves",)


def load_dataset(cfg: DataConfig) -> Split:
    """Load and check the data set named by ``cfg`` (sizes cut to ``n_train/n_val/n_test``)."""
    if cfg.dataset == "curves":
        from shf.data.curves import PAPER_SPLIT, load_curves

        tr, te, va = PAPER_SPLIT
        sizes = (cfg.n_train or tr, cfg.n_test or te, cfg.n_val or va)
        cs = load_curves(cfg.path, seed=cfg.seed, sizes=sizes)
        name = "CURVES (file)" if cfg.path else "CURVES (synthetic)"
        return make_split(cs.train[: sizes[0]], cs.val[: sizes[2]], cs.test[: sizes[1]], name)
    raise ConfigError(f"unknown dataset {cfg.dataset!r}; choose from {DATASETS}")
