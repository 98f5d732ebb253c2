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


def shared_init(
    net: Autoencoder, shf_cfg: SHFConfig, data: Split, seed: int
) -> Callable[[torch.Generator], list[torch.Tensor]]:
    """``generator -> w``: SHF-LSMR's initial weights for ``seed`` whatever the generator given,
    the sparse initialisation of eq. (9) with ``shf_cfg``'s ``m0`` and ``sigma`` drawn first from a
    generator seeded with ``seed``, exactly as :func:`shf_method` draws them: every method of a
    comparison starts from the same weights."""
    own = sparse_init_of(net, shf_cfg.m0, shf_cfg.sigma, data)
    return lambda gen: own(torch.Generator().manual_seed(seed))


def initial_weights_for(
    net: Autoencoder, data: Split, cfg: ExperimentConfig, m0: int | None, sigma: float | None
) -> Callable[[torch.Generator], list[torch.Tensor]]:
    """A baseline's initialisation: its own sparse one (``m0``, ``sigma``, from its generator) when
    set, else SHF's initial weights for the run's seed (:func:`shared_init`)."""
    if m0 is None or sigma is None:
        return shared_init(net, cfg.optimizer, data, cfg.run.seed)
    return sparse_init_of(net, m0, sigma, data)


def first_order_method(
    net: Autoencoder,
    data: Split,
    cfg: FirstOrderConfig,
    seed: int,
    init: Callable[[torch.Generator], list[torch.Tensor]] | None = None,
) -> FirstOrder:
    """Adam or SGD on the autoencoder's objective (its ``loss_name``) from ``init`` (default: the
    sparse initialisation with ``cfg``'s ``m0`` and ``sigma``, which must then be set)."""
    if init is None:
        if cfg.m0 is None or cfg.sigma is None:
            raise ConfigError("first_order.m0 and sigma are needed without an init")
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
        init = initial_weights_for(net, data, cfg, cfg.hf.m0, cfg.hf.sigma)
        return MartensHF(net, init, data, cfg.hf, seed)
    if name in ("adam", "sgd"):
        fo = dataclasses.replace(cfg.first_order, optimizer=name)
        return first_order_method(net, data, fo, seed, initial_weights_for(net, data, cfg, fo.m0, fo.sigma))
    raise ConfigError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
