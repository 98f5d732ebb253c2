"""First-order baselines from ``torch.optim`` on the same autoencoder: Adam and SGD with Nesterov momentum.

One "iteration" of the training loop is ``steps`` mini-batch updates (by default one
epoch), so validation tracking, metrics and time limits work as for the HF methods.
Gradients come from autograd on the model's objective (squared error or cross-entropy).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from shf.data.split import Split
from shf.errors import ConfigError
from shf.models.autoencoder import CROSS_ENTROPY, LOGISTIC, Autoencoder, affine, sparse_init

OPTIMIZERS = ("adam", "sgd")


@dataclass
class FirstOrderConfig:
    """``optimizer``: ``adam`` or ``sgd`` (Nesterov momentum ``momentum``)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    batch_size: int = 250
    steps: int | None = None  # mini-batch updates per loop iteration (None: one epoch)
    m0: int = 15
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")


def objective_tensor(net: Autoencoder, w: list[Tensor], X: Tensor) -> Tensor:
    """The differentiable training objective on a batch (mean over rows)."""
    S = X
    Z = X
    for act, W in zip(net.activations, w):
        Z = affine(S, W)
        S = torch.sigmoid(Z) if act == LOGISTIC else Z
    if net.loss_name == CROSS_ENTROPY:
        return (torch.nn.functional.softplus(Z) - X * Z).sum() / X.shape[0]
    return 0.5 * ((S - X) ** 2).sum() / X.shape[0]


class FirstOrder:
    """Adam or SGD-Nesterov as a :class:`shf.fit.Method`."""

    def __init__(self, net: Autoencoder, data: Split, cfg: FirstOrderConfig, seed: int = 0) -> None:
        self.net, self.data, self.cfg = net, data, cfg
        self.gen = torch.Generator().manual_seed(seed)
        self.params: list[Tensor] = []
        self.opt: torch.optim.Optimizer | None = None

    def init_weights(self) -> list[Tensor]:
        X = self.data.train
        w = sparse_init(
            self.net, m0=self.cfg.m0, sigma=self.cfg.sigma, generator=self.gen, dtype=X.dtype, device=X.device
        )
        self.params = [W.clone().requires_grad_(True) for W in w]
        if self.cfg.optimizer == "adam":
            self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr)
        else:
            self.opt = torch.optim.SGD(self.params, lr=self.cfg.lr, momentum=self.cfg.momentum, nesterov=True)
        return w

    def step(self, w: list[Tensor]) -> tuple[list[Tensor], dict[str, Any]]:
        assert self.opt is not None
        X = self.data.train
        N = X.shape[0]
        bs = min(self.cfg.batch_size, N)
        steps = self.cfg.steps or max(1, N // bs)
        t = time.perf_counter()
        perm = torch.randperm(N, generator=self.gen).to(X.device)
        last = math.nan
        used = 0
        for j in range(steps):
            start = (j * bs) % N
            idx = perm[start : start + bs]
            if idx.numel() < bs:  # wrap around: a fresh permutation
                perm = torch.randperm(N, generator=self.gen).to(X.device)
                idx = perm[:bs]
            self.opt.zero_grad(set_to_none=True)
            f = objective_tensor(self.net, self.params, X[idx])
            f.backward()  # type: ignore[no-untyped-call]
            if not all(bool(torch.isfinite(p.grad).all()) for p in self.params if p.grad is not None):
                break  # a non-finite gradient: stop this iteration before it reaches the weights
            self.opt.step()
            last = float(f.detach())
            used += int(idx.numel())
        w_new = [p.detach().clone() for p in self.params]
        diverged = not all(bool(torch.isfinite(W).all()) for W in w_new)
        if diverged:  # never hand NaN weights on: restart from the previous ones
            w_new = [W.clone() for W in w]
            with torch.no_grad():
                for p, W in zip(self.params, w):
                    p.copy_(W)
        return w_new, {
            "diverged": diverged,
            "examples": used,
            "n": bs,
            "updates": steps,
            "loss": last,
            "lr": self.cfg.lr,
            "times": {"updates": time.perf_counter() - t},
        }

    def summary(self) -> dict[str, Any]:
        return {"optimizer": self.cfg.optimizer, "lr": self.cfg.lr}
