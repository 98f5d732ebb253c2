"""Named training methods for ``shf train --method`` and ``shf compare``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from shf.config import ExperimentConfig
from shf.curvature.mlp import objective_tensor
from shf.data.split import Split
from shf.errors import ConfigError
from shf.fit import SHFMethod
from shf.method import Method
from shf.models.autoencoder import Autoencoder, sparse_init
from shf.optim.first_order import FirstOrder, FirstOrderConfig
from shf.optim.hf import MartensHF
from shf.optim.shf import SHF
from shf.optim.step import SHFConfig

METHODS = ("shf-lsmr", "shf-cg", "martens-hf", "adam", "sgd")


def sparse_init_of(
    net: Autoencoder, m0: int, sigma: float, data: Split
) -> Callable[[torch.Generator], list[torch.Tensor]]:
    """``generator -> w``: the sparse initialisation of eq. (9) in the data's dtype and device."""
    X = data.train
    return lambda gen: sparse_init(net, m0=m0, sigma=sigma, generator=gen, dtype=X.dtype, device=X.device)


def first_order_method(net: Autoencoder, data: Split, cfg: FirstOrderConfig, seed: int) -> FirstOrder:
    """Adam or SGD on the autoencoder's objective from the sparse initialisation (``m0``, ``sigma``)."""
    init = sparse_init_of(net, cfg.m0, cfg.sigma, data)
    return FirstOrder(lambda w, X, Y: objective_tensor(net, w, X, Y), init, data, cfg, seed)


def shf_method(net: Autoencoder, data: Split, cfg: SHFConfig, seed: int) -> SHFMethod:
    """Alg. 1 on the autoencoder as the paper runs it: one generator seeded with ``seed`` draws
    the sparse initialisation (eq. 9), then the batches and the preconditioner's probes.
    The network is moved to the data's dtype and device."""
    net.to(dtype=data.train.dtype, device=data.train.device)
    opt = SHF(net, config=cfg, train_size=data.train.shape[0], generator=torch.Generator().manual_seed(seed))

    def init(opt: SHF) -> None:
        # Initialize w according to (9) with m0, sigma
        X, gen = data.train, opt.generator
        w = sparse_init(net, m0=cfg.m0, sigma=cfg.sigma, generator=gen, dtype=X.dtype, device=X.device)
        opt.set_weights(w)

    # The loop's validation error is the squared error; it is the step's loss only for that loss.
    return SHFMethod(opt, data, init, reuse_val=net.loss_name == "squared")


def build_method(name: str, net: Autoencoder, data: Split, cfg: ExperimentConfig) -> Method:
    """The optimiser ``name`` configured from ``cfg``'s ``optimizer``, ``hf`` or ``first_order`` section."""
    seed = cfg.run.seed
    if name == "shf-lsmr":
        return shf_method(net, data, dataclasses.replace(cfg.optimizer, solver="lsmr"), seed)
    if name == "shf-cg":
        return shf_method(net, data, dataclasses.replace(cfg.optimizer, solver="cg"), seed)
    if name == "martens-hf":
        return MartensHF(net, sparse_init_of(net, cfg.hf.m0, cfg.hf.sigma, data), data, cfg.hf, seed)
    if name in ("adam", "sgd"):
        return first_order_method(net, data, dataclasses.replace(cfg.first_order, optimizer=name), seed)
    raise ConfigError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
