"""Named training methods for ``shf train --method`` and ``shf compare``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from shf.config import ExperimentConfig
from shf.curvature.mlp import objective_tensor
from shf.data.split import Split
from shf.errors import ConfigError
from shf.fit import SHFMethod
from shf.method import Method
from shf.models.autoencoder import (
    CROSS_ENTROPY,
    Autoencoder,
    as_sequential,
    autoencoder_weights,
    sequential_weights,
    sparse_init,
)
from shf.optim.first_order import FirstOrder, FirstOrderConfig
from shf.optim.hf import MartensHF
from shf.optim.shf import SHF
from shf.optim.step import SHFConfig

METHODS = ("shf-lsmr", "shf-cg", "martens-hf", "adam", "sgd")

SHF_METHODS = ("shf-lsmr", "shf-cg")
"""The methods that are SHF (they read the ``[optimizer]`` section, SHF's settings)."""


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


class AsAutoencoder:
    """A method that trains the autoencoder written as ``nn.Sequential`` (:func:`as_sequential`),
    seen by the loop through the autoencoder's weights ``W_l``: the loop's errors, best weights and
    ``weights.pt`` are the same as on the hand-written path."""

    def __init__(self, inner: SHFMethod) -> None:
        self.inner = inner

    def init_weights(self) -> list[torch.Tensor]:
        return autoencoder_weights(self.inner.init_weights())

    def step(
        self, w: list[torch.Tensor], deadline: float | None = None
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        w_new, rec = self.inner.step(sequential_weights(w), deadline)
        return autoencoder_weights(w_new), rec

    @property
    def collectives(self) -> Any:
        return self.inner.collectives

    def summary(self) -> dict[str, Any]:
        return self.inner.summary()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def sequential_shf_method(net: Autoencoder, data: Split, cfg: SHFConfig, seed: int) -> AsAutoencoder:
    """Alg. 1 on the autoencoder as a user writes it (``model.path = "sequential"``, issue 27):
    ``nn.Sequential`` of ``nn.Linear`` and ``nn.Sigmoid`` through the ``torch.func`` products and
    the per-layer rules, with the loss ``mse`` (the squared error) or ``bce`` on the logits (the
    cross-entropy objective). The initial weights are :func:`shf_method`'s for the seed (eq. 9
    drawn first from the same generator), and so are the batches and probes that follow."""
    net.to(dtype=data.train.dtype, device=data.train.device)
    ce = net.loss_name == CROSS_ENTROPY
    gen = torch.Generator().manual_seed(seed)
    opt = SHF(as_sequential(net, logits=ce), "bce" if ce else "mse", config=cfg,
              train_size=data.train.shape[0], generator=gen, generic=True)  # fmt: skip

    def init(opt: SHF) -> None:
        # Initialize w according to (9) with m0, sigma, as nn.Linear's parameters
        X, gen = data.train, opt.generator
        w = sparse_init(net, m0=cfg.m0, sigma=cfg.sigma, generator=gen, dtype=X.dtype, device=X.device)
        opt.set_weights(sequential_weights(w))

    # the step's loss is on the module's output (logits with bce), not the loop's squared error
    return AsAutoencoder(SHFMethod(opt, data, init, reuse_val=False))


def build_method(name: str, net: Autoencoder, data: Split, cfg: ExperimentConfig) -> Method:
    """The optimiser ``name`` configured from ``cfg``'s ``optimizer``, ``hf`` or ``first_order`` section."""
    seed = cfg.run.seed
    if name in SHF_METHODS:
        solver = name.removeprefix("shf-")
        if solver != cfg.optimizer.solver != "lsmr":  # lsmr: the field's default, not a choice
            raise ConfigError(
                f"method {name} with optimizer.solver = {cfg.optimizer.solver!r}: the method names the "
                f"solver; run method shf-{cfg.optimizer.solver} instead"
            )
        shf_cfg = dataclasses.replace(cfg.optimizer, solver=solver)
        if cfg.model.path == "sequential":
            return sequential_shf_method(net, data, shf_cfg, seed)
        return shf_method(net, data, shf_cfg, seed)
    if name == "martens-hf":
        init = initial_weights_for(net, data, cfg, cfg.hf.m0, cfg.hf.sigma)
        return MartensHF(net, init, data, cfg.hf, seed)
    if name in ("adam", "sgd"):
        fo = dataclasses.replace(cfg.first_order, optimizer=name)
        return first_order_method(net, data, fo, seed, initial_weights_for(net, data, cfg, fo.m0, fo.sigma))
    raise ConfigError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
