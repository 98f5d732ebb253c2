"""Named training methods for ``shf train --method`` and ``shf compare``."""

from __future__ import annotations

import dataclasses

from shf.config import ExperimentConfig
from shf.data.split import Split
from shf.errors import ConfigError
from shf.models.autoencoder import Autoencoder
from shf.optim.first_order import FirstOrder
from shf.optim.hf import MartensHF
from shf.train import Method, SHFMethod

METHODS = ("shf-lsmr", "shf-cg", "martens-hf", "adam", "sgd")


def build_method(name: str, net: Autoencoder, data: Split, cfg: ExperimentConfig) -> Method:
    """The optimiser ``name`` configured from ``cfg``'s ``optimizer``, ``hf`` or ``first_order`` section."""
    seed = cfg.run.seed
    if name == "shf-lsmr":
        return SHFMethod(net, data, dataclasses.replace(cfg.optimizer, solver="lsmr"), seed)
    if name == "shf-cg":
        return SHFMethod(net, data, dataclasses.replace(cfg.optimizer, solver="cg"), seed)
    if name == "martens-hf":
        return MartensHF(net, data, cfg.hf, seed)
    if name in ("adam", "sgd"):
        return FirstOrder(net, data, dataclasses.replace(cfg.first_order, optimizer=name), seed)
    raise ConfigError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
