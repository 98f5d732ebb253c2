"""The training loop of Alg. 1 around :func:`shf.optim.shf.shf_step`.

Per HF iteration ``i``: draw ``n`` training rows without replacement, take one SHF
step, evaluate ``f_val,i = f(w; X_val)``, predict ``n_hat_i`` with Alg. 2 at the new
weights on the same batch, and update ``n`` and ``maxiter`` with the growth rule.
"Not converged" (NOTES item 12) means: validation error improved within the last
``patience`` iterations, fewer than ``max_iters`` iterations, less than ``max_time``
seconds of optimiser time. The weights with the lowest validation error are kept.

Errors are reported on two scales: the paper's ``(1/N) sum_i 1/2 ||xhat_i - x_i||^2``
(= the loss ``f``) and the no-1/2 scale ``(1/N) sum_i ||xhat_i - x_i||^2`` of Martens
and Hinton & Salakhutdinov (= ``2 f``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import torch
from torch import Tensor

from shf import tensorlist as tl
from shf.batchsize import BatchSchedule, predict_batch_size
from shf.curvature.mlp import AutoencoderJacobian
from shf.data.split import Split, check_array
from shf.errors import ConfigError
from shf.models.autoencoder import SQUARED, Autoencoder, loss, sparse_init
from shf.optim.shf import SHFConfig, SHFState, shf_step

log = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    """When to stop and what to measure (NOTES item 12).

    Attributes:
        max_iters: cap on HF iterations.
        max_time: cap on optimiser wall time in seconds (evaluation of the train and
            test errors for the metrics is not counted; the validation error is, since
            Alg. 1 uses it).
        patience: stop after this many iterations without a new best validation error.
        train_eval_size: measure the train error on a fixed random subset of this many
            rows (``None``: the whole training set).
        eval_every: compute train/test errors every this many iterations (and at the
            best-validation iterations, always).
    """

    max_iters: int = 1000
    max_time: float = math.inf
    patience: int = 100
    train_eval_size: int | None = None
    eval_every: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.max_iters, int) and self.max_iters >= 1):
            raise ConfigError(f"max_iters must be a positive integer, got {self.max_iters}")
        if not self.max_time > 0:
            raise ConfigError(f"max_time must be > 0 seconds, got {self.max_time}")
        if not (isinstance(self.patience, int) and self.patience >= 1):
            raise ConfigError(f"patience must be a positive integer, got {self.patience}")
        if self.train_eval_size is not None and self.train_eval_size < 1:
            raise ConfigError(f"train_eval_size must be >= 1, got {self.train_eval_size}")
        if not (isinstance(self.eval_every, int) and self.eval_every >= 1):
            raise ConfigError(f"eval_every must be a positive integer, got {self.eval_every}")


@dataclass
class TrainResult:
    """Best-validation weights, the metrics of every iteration and a summary."""

    weights: list[Tensor]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    initial_weights: list[Tensor] = field(default_factory=list)


class Method(Protocol):
    """An optimiser the loop can drive: initial weights, then one iteration at a time.

    ``step`` returns the new weights and a metrics dictionary that holds at least
    ``examples`` (training rows used by the iteration) and may hold ``val_error`` (the
    validation error at the new weights, when the method computed it anyway).
    """

    def init_weights(self) -> list[Tensor]: ...

    def step(self, w: list[Tensor]) -> tuple[list[Tensor], dict[str, Any]]: ...

    def summary(self) -> dict[str, Any]: ...


def check_data_for(net: Autoencoder, data: Split) -> None:
    """Raise a clear error unless ``data`` fits ``net`` (width, finiteness, [0, 1] range)."""
    if data.dim != net.input_dim:
        raise ConfigError(
            f"the data have {data.dim} features but the network's input layer has {net.input_dim}: "
            f"give an encoder that starts with the data width (e.g. --encoder {data.dim},...)"
        )
    if data.train.shape[0] < 2:
        raise ConfigError(f"need at least 2 training examples, got {data.train.shape[0]}")
    for part, X_part in (("train", data.train), ("validation", data.val), ("test", data.test)):
        check_array(X_part, f"{data.name} {part}")  # NaN/Inf or values outside [0, 1]


class SHFMethod:
    """Alg. 1: sparse initialisation, then per iteration a random batch, one SHF step,
    the validation error, Alg. 2 at the new weights and the batch-size rule."""

    def __init__(self, net: Autoencoder, data: Split, cfg: SHFConfig, seed: int = 0) -> None:
        self.net, self.data, self.cfg = net, data, cfg
        self.N = data.train.shape[0]
        self.gen = torch.Generator().manual_seed(seed)
        # n <- n1; lambda <- lambda1; gamma <- gamma1; maxiter <- maxiter1
        self.state = SHFState.initial(cfg)
        n1 = min(cfg.n1, self.N)
        self.sched = BatchSchedule(
            n=n1,
            maxiter=cfg.maxiter1,
            n_max=max(min(cfg.n_max, self.N), n1),
            window=cfg.window,
            growth=cfg.batch_growth,
            rrel_tol=cfg.rrel_tol,
        )

    def init_weights(self) -> list[Tensor]:
        # Initialize w according to (9) with m0, sigma; d <- 0 (§4.1)
        X = self.data.train
        return sparse_init(
            self.net, m0=self.cfg.m0, sigma=self.cfg.sigma, generator=self.gen, dtype=X.dtype, device=X.device
        )

    def step(self, w: list[Tensor]) -> tuple[list[Tensor], dict[str, Any]]:
        net, data, cfg = self.net, self.data, self.cfg
        n = self.sched.n
        self.state.maxiter = self.sched.maxiter
        # S <- draw n instances from {1..N} randomly; X <- X_train[S, :]
        idx = torch.randperm(self.N, generator=self.gen)[:n].to(data.train.device)
        X = data.train[idx]
        w, info = shf_step(net, w, X, self.state, cfg, X_val=data.val, generator=self.gen)
        # f_val,i <- f(w; X_val); when the step was w + d with s = 1, LSMR's merit already
        # computed exactly this number (same weights, same loss function): reuse it.
        t_val = time.perf_counter()
        if info.val_loss_new is not None and net.loss_name == SQUARED:
            f_val = info.val_loss_new
        else:
            f_val = loss(net, w, data.val)
        t_bs = time.perf_counter()
        n_hat: int | None = None
        r_rel: float | None = None
        if cfg.batch_schedule == "dynamic":
            # n_hat_i <- BatchSize(w, S, N, theta)  (Alg. 2, at the new w on the same batch)
            grad, sumsq = AutoencoderJacobian(net, w, X).per_example_gradient_stats()
            n_hat = predict_batch_size(grad, sumsq, n, self.N, cfg.theta).n_hat
            n_next, maxiter_next, r_rel = self.sched.update(f_val, n_hat)
        else:  # ablation: the batch size and LSMR cap stay at n1 and maxiter1
            n_next, maxiter_next = self.sched.n, self.sched.maxiter
        info.times["validation"] = t_bs - t_val
        info.times["batch_stats"] = time.perf_counter() - t_bs
        rec = {k: v for k, v in info.as_dict().items() if k != "times"}
        rec.update(
            examples=n, n_hat=n_hat, r_rel=r_rel, n_next=n_next, maxiter_next=maxiter_next,
            batch_schedule=cfg.batch_schedule, val_error=f_val, times=info.times,
        )  # fmt: skip
        return w, rec

    def summary(self) -> dict[str, Any]:
        return {"final_batch_size": self.sched.n, "final_lambda": self.state.lam}


def run_loop(
    net: Autoencoder,
    data: Split,
    method: Method,
    loop: LoopConfig,
    *,
    seed: int = 0,
    on_iteration: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Drive ``method`` until patience, ``max_iters`` or ``max_time``; keep the best-validation weights.

    ``on_iteration`` receives each iteration's metrics (for progress bars and metric
    files); the library itself prints nothing.
    """
    check_data_for(net, data)
    N = data.train.shape[0]
    w = method.init_weights()
    w0 = cast(list[Tensor], tl.clone(w))
    # A fixed subset of the training set for the train error, if asked (documented in metrics).
    if loop.train_eval_size is not None and loop.train_eval_size < N:
        sub = torch.randperm(N, generator=torch.Generator().manual_seed(seed + 1))[: loop.train_eval_size]
        X_train_eval = data.train[sub.to(data.train.device)]
    else:
        X_train_eval = data.train

    f_val0 = loss(net, w, data.val)
    f_test0 = loss(net, w, data.test)
    best = {"val": f_val0, "iteration": 0}
    best_w = cast(list[Tensor], tl.clone(w))
    history: list[dict[str, Any]] = []
    opt_time = 0.0
    examples = 0
    stop_reason = "max_iters"
    wall0 = time.perf_counter()
    i = 0
    for i in range(1, loop.max_iters + 1):
        t_iter = time.perf_counter()
        w, info = method.step(w)
        f_val = info.pop("val_error", None)
        if f_val is None:
            f_val = loss(net, w, data.val)
        opt_time += time.perf_counter() - t_iter
        examples += int(info.pop("examples"))
        improved = f_val < best["val"]
        times = info.pop("times", {})
        rec: dict[str, Any] = {
            "iteration": i,
            "time_s": opt_time,
            "wall_s": time.perf_counter() - wall0,
            "examples": examples,
            **info,
            "val_error": f_val,
            "val_error_no_half": 2.0 * f_val,
            "times": times,
            "train_error_subset": X_train_eval is not data.train,
        }
        if i % loop.eval_every == 0:
            f_tr = loss(net, w, X_train_eval)
            f_te = loss(net, w, data.test)
            rec.update(
                train_error=f_tr, train_error_no_half=2 * f_tr, test_error=f_te, test_error_no_half=2 * f_te
            )
        if improved:
            best = {"val": f_val, "iteration": i}
            best_w = cast(list[Tensor], tl.clone(w))
        rec["best_val_error"] = best["val"]
        history.append(rec)
        if on_iteration is not None:
            on_iteration(rec)
        if i - int(best["iteration"]) >= loop.patience:
            stop_reason = "patience"
            break
        if opt_time >= loop.max_time:
            stop_reason = "max_time"
            break
        if should_stop is not None and should_stop():
            stop_reason = "interrupted"
            break

    # Train and test errors at the best-validation weights (what the paper reports).
    best_train = loss(net, best_w, X_train_eval)
    best_test = loss(net, best_w, data.test)
    summary = {
        "train_error": best_train,
        "val_error": best["val"],
        "test_error": best_test,
        "train_error_no_half": 2 * best_train,
        "val_error_no_half": 2 * float(best["val"]),
        "test_error_no_half": 2 * best_test,
        "initial_test_error": f_test0,
        "initial_val_error": f_val0,
        "best_iteration": int(best["iteration"]),
        "hf_iterations": i,
        "wall_time_s": time.perf_counter() - wall0,
        "optimizer_time_s": opt_time,
        "examples_processed": examples,
        "stop_reason": stop_reason,
        "train_error_on_subset": X_train_eval is not data.train,
        **method.summary(),
    }
    log.info("finished: %s", summary)
    return TrainResult(weights=best_w, history=history, summary=summary, initial_weights=w0)


def train(
    net: Autoencoder,
    data: Split,
    cfg: SHFConfig,
    loop: LoopConfig,
    *,
    seed: int = 0,
    on_iteration: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Run Alg. 1 (SHF-LSMR) on ``data``; return the best-validation weights and metrics."""
    check_data_for(net, data)
    return run_loop(
        net, data, SHFMethod(net, data, cfg, seed), loop, seed=seed, on_iteration=on_iteration,
        should_stop=should_stop,
    )  # fmt: skip
