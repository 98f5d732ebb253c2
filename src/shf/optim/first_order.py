"""First-order baselines from ``torch.optim``: Adam and SGD with Nesterov momentum.

One "iteration" of the training loop is ``steps`` mini-batch updates (by default one
epoch), so validation tracking, metrics and time limits work as for the HF methods.
Gradients come from autograd on a differentiable ``objective(w, X, Y)`` (for the paper's
autoencoders the squared error or cross-entropy of :mod:`shf.curvature.mlp`; for any
module its loss through ``torch.func.functional_call``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from shf.errors import ConfigError
from shf.sets import Split

OPTIMIZERS = ("adam", "sgd")


@dataclass
class FirstOrderConfig:
    """``optimizer``: ``adam`` or ``sgd`` (Nesterov momentum ``momentum``).

    ``m0``, ``sigma``: the autoencoder's own sparse initialisation (eq. 9), drawn from this
    method's generator; ``None`` (the default): start from SHF's initial weights for the same
    seed (the ``[optimizer]`` section's ``m0`` and ``sigma``), so a comparison starts every
    method from the same point.

    ``weight_decay``: ``torch.optim``'s coupled L2 weight decay ``c`` (the gradient of
    ``c/2 ||w||^2`` added to the loss's), the objective of SHF's weight cost (B10) for a baseline
    that is to get every advantage SHF gets; 0 (the default): none."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    batch_size: int = 250
    steps: int | None = None  # mini-batch updates per loop iteration (None: one epoch)
    m0: int | None = None
    sigma: float | None = None
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if (self.m0 is None) != (self.sigma is None) or not (
            self.m0 is None or (self.m0 >= 1 and self.sigma is not None and self.sigma > 0)
        ):
            raise ConfigError(
                f"m0 and sigma are set together (m0 >= 1, sigma > 0) or both left out (SHF's initial "
                f"weights), got m0={self.m0}, sigma={self.sigma}"
            )


Objective = Callable[[list[Tensor], Tensor, "Tensor | None"], Tensor]
"""``objective(w, X, Y)``: the mean training loss on a batch, differentiable in ``w``."""


class FirstOrder:
    """Adam or SGD-Nesterov as a :class:`shf.method.Method`.

    Args:
        objective: the differentiable mean loss ``objective(w, X, Y)``.
        init: ``generator -> w``, the initial weights (drawn first from the method's generator).
        data: the split (targets ``data.train_targets``, or the inputs).
        cfg: the optimizer and its settings.
        seed: seeds the generator of the initialisation and the batches.
    """

    def __init__(
        self,
        objective: Objective,
        init: Callable[[torch.Generator], list[Tensor]],
        data: Split,
        cfg: FirstOrderConfig,
        seed: int = 0,
    ) -> None:
        self.objective, self.init, self.data, self.cfg = objective, init, data, cfg
        self.gen = torch.Generator().manual_seed(seed)
        self.params: list[Tensor] = []
        self.opt: torch.optim.Optimizer | None = None

    def init_weights(self) -> list[Tensor]:
        w = self.init(self.gen)
        self.params = [W.clone().requires_grad_(True) for W in w]
        if self.cfg.optimizer == "adam":
            self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        else:
            self.opt = torch.optim.SGD(self.params, lr=self.cfg.lr, momentum=self.cfg.momentum, nesterov=True,
                                       weight_decay=self.cfg.weight_decay)  # fmt: skip
        return w

    def step(self, w: list[Tensor], deadline: float | None = None) -> tuple[list[Tensor], dict[str, Any]]:
        """One epoch (``steps`` updates), cut short at ``deadline`` (a ``time.perf_counter()``
        value) so that a time limit holds within one update."""
        assert self.opt is not None
        X = self.data.train
        N = X.shape[0]
        bs = min(self.cfg.batch_size, N)
        steps = self.cfg.steps or max(1, N // bs)
        t = time.perf_counter()
        perm = torch.randperm(N, generator=self.gen).to(X.device)
        last = math.nan
        used = 0
        updates = 0
        for j in range(steps):
            if deadline is not None and j > 0 and time.perf_counter() >= deadline:
                break
            start = (j * bs) % N
            idx = perm[start : start + bs]
            if idx.numel() < bs:  # wrap around: a fresh permutation
                perm = torch.randperm(N, generator=self.gen).to(X.device)
                idx = perm[:bs]
            self.opt.zero_grad(set_to_none=True)
            Y = self.data.train_targets
            f = self.objective(self.params, X[idx], None if Y is None else Y[idx])
            f.backward()  # type: ignore[no-untyped-call]
            if not all(bool(torch.isfinite(p.grad).all()) for p in self.params if p.grad is not None):
                break  # a non-finite gradient: stop this iteration before it reaches the weights
            self.opt.step()
            last = float(f.detach())
            used += int(idx.numel())
            updates += 1
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
            "updates": updates,
            "loss": last,
            "lr": self.cfg.lr,
            "times": {"updates": time.perf_counter() - t},
        }

    def summary(self) -> dict[str, Any]:
        return {"optimizer": self.cfg.optimizer, "lr": self.cfg.lr}

    def state_dict(self) -> dict[str, Any]:
        """The parameters, the ``torch.optim`` state (moments) and the batch generator."""
        assert self.opt is not None
        return {
            "params": [p.detach().clone() for p in self.params],
            "opt": self.opt.state_dict(),
            "generator": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore after :meth:`init_weights` (which builds the ``torch.optim`` optimizer)."""
        assert self.opt is not None
        with torch.no_grad():
            for p, v in zip(self.params, state["params"]):
                p.copy_(v)
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["generator"].clone())
