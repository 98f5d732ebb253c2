"""Martens' (2010) Hessian-free optimisation, the baseline the paper compares with.

Per iteration (Martens 2010, §4 and his published code; the project's reading notes):

1. gradient and per-example squared gradients on the gradient batch (the whole
   training set by default), objective ``f = L + weight_cost/2 ||w||^2``;
2. curvature products ``B v = (G + (lambda + weight_cost) I) v`` on one of
   ``num_chunks`` fixed chunks of the training set, cycled; ``lambda`` is added
   unsquared (NOTES item 9);
3. preconditioned CG (diagonal ``M = (mean_i (grad f_i)^2 + lambda + weight_cost)^(3/4)``)
   from ``0.95`` times the previous CG solution, Martens' relative-progress stop, at
   most 250 iterations, iterates stored at ``ceil(5 * 1.3^j)``;
4. CG backtracking: from the last stored iterate go back while the objective on the
   gradient batch improves;
5. ``rho`` with the undamped model, Levenberg-Marquardt with factors 3/2 and 2/3;
6. Armijo line search with ``c = 1e-2``, step multiplied by 0.8 up to 60 times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from shf import tensorlist as tl
from shf.curvature.base import CurvatureModel
from shf.errors import ConfigError, require
from shf.optim.damping import LAMBDA_MAX
from shf.optim.linesearch import armijo_backtracking
from shf.sets import Split
from shf.solvers.cg import cg

#: The least ``lambda`` a decrease gives (H10): far below any curvature float32 resolves (its
#: eps is 1.2e-7), so no step changes, but inside float32's normal range, so Martens'
#: preconditioner ``(mean squared gradient + lambda)^(3/4)`` stays finite for a weight whose
#: gradient is 0 on every example.
LAMBDA_FLOOR = 1e-30


@dataclass
class HFConfig:
    """Hyper-parameters of Martens (2010) HF (defaults: his published settings)."""

    lambda1: float = 45.0
    lm_increase: float = 1.5
    lm_decrease: float = 2.0 / 3.0
    maxiter: int = 250
    cg_tol: float = 5e-4
    decay: float = 0.95
    armijo_c: float = 1e-2
    armijo_shrink: float = 0.8
    max_backtracks: int = 60
    precond_exponent: float = 0.75
    weight_cost: float = 2e-5
    m0: int | None = None  # None: SHF's initial weights for the seed (every method starts there)
    sigma: float | None = None  # Martens' own: m0 = 15, sigma = 1.0, from this method's generator
    num_chunks: int = 4
    grad_batch: int | None = None

    def __post_init__(self) -> None:
        need = require

        need(
            math.isfinite(self.lambda1) and 0 <= self.lambda1 <= LAMBDA_MAX,
            f"hf.lambda1 must be in [0, {LAMBDA_MAX:g}] (the damping's ceiling), got {self.lambda1}",
        )
        need(self.lm_increase > 1, f"hf.lm_increase must be > 1, got {self.lm_increase}")
        need(0 < self.lm_decrease < 1, f"hf.lm_decrease must be in (0, 1), got {self.lm_decrease}")
        need(self.maxiter >= 1, f"hf.maxiter must be >= 1, got {self.maxiter}")
        need(self.cg_tol >= 0, f"hf.cg_tol must be >= 0, got {self.cg_tol}")
        need(0 <= self.decay < 1, f"hf.decay must be in [0, 1), got {self.decay}")
        need(0 < self.armijo_c < 1, f"hf.armijo_c must be in (0, 1), got {self.armijo_c}")
        need(0 < self.armijo_shrink < 1, f"hf.armijo_shrink must be in (0, 1), got {self.armijo_shrink}")
        need(self.weight_cost >= 0, f"hf.weight_cost must be >= 0, got {self.weight_cost}")
        need(
            (self.m0 is None and self.sigma is None)
            or (self.m0 is not None and self.sigma is not None and self.m0 >= 1 and self.sigma > 0),
            "hf.m0 and hf.sigma are set together (m0 >= 1, sigma > 0) or both left out "
            "(SHF's initial weights)",
        )
        need(self.num_chunks >= 1, f"hf.num_chunks must be >= 1, got {self.num_chunks}")
        need(
            self.grad_batch is None or self.grad_batch >= 2,
            f"hf.grad_batch must be >= 2, got {self.grad_batch}",
        )


class MartensHF:
    """Martens (2010) HF as a :class:`shf.method.Method` (one HF iteration per step).

    Args:
        net: the model and loss as operators (:class:`shf.curvature.base.CurvatureModel`: the
            paper's autoencoder, or :class:`shf.curvature.module.ModuleProblem` for any module).
        init: ``generator -> w``, the initial weights (Martens: sparse, eq. 9 with his settings).
        data: the split (targets ``data.train_targets``, or the inputs).
        cfg: Martens' hyper-parameters.
        seed: seeds the generator of the initialisation and the gradient batches.
    """

    def __init__(
        self,
        net: CurvatureModel,
        init: Callable[[torch.Generator], list[Tensor]],
        data: Split,
        cfg: HFConfig,
        seed: int = 0,
    ) -> None:
        self.net, self.init, self.data, self.cfg = net, init, data, cfg
        self.gen = torch.Generator().manual_seed(seed)
        self.lam = cfg.lambda1
        self.ch: list[Tensor] | None = None  # the last CG solution (warm start source)
        N = data.train.shape[0]
        # Fixed curvature chunks of the training set (a seeded permutation, then cut).
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed + 7)).to(data.train.device)
        k = min(cfg.num_chunks, N)
        self.chunks = [perm[j::k] for j in range(k)]
        self.iteration = 0

    def init_weights(self) -> list[Tensor]:
        return self.init(self.gen)

    def _objective(self, w: list[Tensor], X: Tensor, Y: Tensor | None) -> float:
        """``L(w; X, Y) + weight_cost/2 ||w||^2``."""
        return self.net.loss(w, X, Y) + 0.5 * self.cfg.weight_cost * tl.dot(w, w)

    def _rows(self, idx: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Training inputs and targets of the rows ``idx`` (all rows for None)."""
        X, Y = self.data.train, self.data.train_targets
        if idx is None:
            return X, Y
        return X[idx], None if Y is None else Y[idx]

    def _grad_batch(self) -> tuple[Tensor, Tensor | None]:
        X = self.data.train
        gb = self.cfg.grad_batch
        if gb is None or gb >= X.shape[0]:
            return self._rows(None)
        return self._rows(torch.randperm(X.shape[0], generator=self.gen)[:gb].to(X.device))

    def step(self, w: list[Tensor], deadline: float | None = None) -> tuple[list[Tensor], dict[str, Any]]:
        """One HF iteration; CG stops at ``deadline`` (a ``time.perf_counter()`` value)."""
        cfg, net = self.cfg, self.net
        times: dict[str, float] = {}
        t = time.perf_counter()
        Xg, Yg = self._grad_batch()
        # 1. gradient, per-example squared gradients and objective on the gradient batch
        Ag = net.jacobian(w, Xg, Yg)
        grad, sumsq = Ag.per_example_gradient_stats()
        wc = cfg.weight_cost
        g = cast(list[Tensor], tl.axpy(wc, w, grad))  # grad f = grad L + wc w
        f0 = Ag.loss + 0.5 * wc * tl.dot(w, w)
        ng = Xg.shape[0]
        del Ag
        times["gradient"] = time.perf_counter() - t
        if not (math.isfinite(f0) and tl.all_finite(g) and tl.all_finite(sumsq)):
            # a gradient batch with non-finite values: no step, the run goes on
            rec_bad: dict[str, Any] = {
                "examples": ng, "n": 0, "grad_batch": ng, "loss": f0, "loss_new": f0, "lam": self.lam,
                "lam_next": self.lam, "cg_iterations": 0, "cg_stop": "not_finite_batch", "step": 0.0,
                "accepted": False, "times": times,
            }  # fmt: skip
            return cast(list[Tensor], tl.clone(w)), rec_bad

        # 2. curvature on the next fixed chunk, cycled
        t = time.perf_counter()
        chunk = self.chunks[self.iteration % len(self.chunks)]
        self.iteration += 1
        Ac = net.jacobian(w, *self._rows(chunk))
        lam = self.lam

        def Gv(v: Any, shift: float) -> Any:
            # (G + shift I) v with G = A^T A the Gauss-Newton matrix of the chunk
            return tl.axpy(shift, v, Ac.rmatvec(Ac.matvec(v)))

        # 3. preconditioned CG: M = (mean_i (grad f_i)^2 + lambda + wc)^(3/4), given to cg as the
        # inverse preconditioner c = M^{-1/2} (cg applies M^{-1} = c ∘ c, as lsmr's column scaling)
        c = [torch.pow(s / ng + (lam + wc), -0.5 * cfg.precond_exponent) for s in sumsq]
        if not all(bool((torch.isfinite(t) & (t > 0)).all()) for t in c):
            raise ConfigError(
                f"Martens' preconditioner (mean squared gradient + lambda + hf.weight_cost)^"
                f"{cfg.precond_exponent:g} is not finite and positive at lambda = {lam:g}, hf.weight_cost = "
                f"{wc:g} (a weight with zero gradients needs lambda + weight_cost > 0, and their sum must "
                f"fit {sumsq[0].dtype}): raise hf.weight_cost or hf.lambda1 (at most {LAMBDA_MAX:g})"
            )
        x0 = tl.scale(cfg.decay, self.ch) if self.ch is not None else None
        p_last, info = cg(
            lambda v: Gv(v, lam + wc),
            tl.scale(-1.0, g),
            x0=x0,
            precond=c,
            maxiter=cfg.maxiter,
            tol=cfg.cg_tol,
            callback=None if deadline is None else (lambda i, x, info: time.perf_counter() >= deadline),
        )
        self.ch = cast(list[Tensor], p_last) if tl.all_finite(p_last) else None
        times["cg"] = time.perf_counter() - t

        # 4. CG backtracking over the stored iterates, on the gradient batch
        t = time.perf_counter()
        p, f_p, chosen, evals = self._cg_backtracking(info.stored, w, Xg, Yg)
        times["backtrack"] = time.perf_counter() - t

        # 5. rho with the undamped model q(p) = 1/2 p^T (G + wc I) p + g^T p; LM 3/2, 2/3
        t = time.perf_counter()
        finite = tl.all_finite(p) and math.isfinite(f_p)
        if finite:
            q = 0.5 * tl.dot(p, Gv(p, wc)) + tl.dot(g, p)
            rho = (f_p - f0) / q if q < 0 else -math.inf
        else:
            rho = -math.inf
        self.lam = self._damping(lam, rho)

        # 6. Armijo: c = 1e-2, s <- 0.8 s, at most 60 times
        slope = tl.dot(g, p) if finite else math.nan
        ls = armijo_backtracking(
            lambda s: self._objective(cast(list[Tensor], tl.axpy(s, p, w)), Xg, Yg),
            f0,
            slope,
            alpha=cfg.armijo_c,
            shrink=cfg.armijo_shrink,
            max_backtracks=cfg.max_backtracks,
            f_at_one=f_p,
        )
        w_new = cast(list[Tensor], tl.axpy(ls.step, p, w)) if ls.accepted else cast(list[Tensor], tl.clone(w))
        if not tl.all_finite(w_new):  # never write NaN weights
            w_new, ls_step, accepted = cast(list[Tensor], tl.clone(w)), 0.0, False
        else:
            ls_step, accepted = ls.step, ls.accepted
        times["linesearch"] = time.perf_counter() - t
        rec = {
            "examples": ng + int(chunk.numel()),
            "n": int(chunk.numel()),
            "grad_batch": ng,
            "loss": f0,
            "loss_new": ls.f_new if accepted else f0,
            "lam": lam,
            "lam_next": self.lam,
            "cg_iterations": info.iterations,
            "cg_stop": info.stop.value,
            "cg_chosen_iteration": chosen,
            "backtrack_evaluations": evals,
            "rho": rho if math.isfinite(rho) else None,
            "step": ls_step,
            "accepted": accepted,
            "times": times,
        }
        return w_new, rec

    def _cg_backtracking(
        self, stored: list[tuple[int, Any]], w: list[Tensor], Xg: Tensor, Yg: Tensor | None
    ) -> tuple[list[Tensor], float, int, int]:
        """Martens' CG backtracking: from the last stored CG iterate back while the objective on
        the gradient batch keeps falling; ``(p, f(w + p), its CG iteration, evaluations)``."""
        j = len(stored) - 1
        p = cast(list[Tensor], stored[j][1])
        f_p = self._objective(cast(list[Tensor], tl.add(w, p)), Xg, Yg)
        evals = 1
        while j > 0:
            f_prev = self._objective(cast(list[Tensor], tl.add(w, stored[j - 1][1])), Xg, Yg)
            evals += 1
            if not f_prev < f_p:
                break
            j -= 1
            p, f_p = cast(list[Tensor], stored[j][1]), f_prev
        return p, f_p, stored[j][0], evals

    def _damping(self, lam: float, rho: float) -> float:
        """Martens' Levenberg-Marquardt rule: ``lambda`` times 3/2 when ``rho < 1/4``, 2/3 when
        ``rho > 3/4``."""
        cfg = self.cfg
        if rho < 0.25:
            # at most shf.optim.damping.LAMBDA_MAX (docs/deviations.md H9): no overflow after many failures
            return min(lam * cfg.lm_increase, LAMBDA_MAX)
        if rho > 0.75:
            # at least LAMBDA_FLOOR (docs/deviations.md H10): without a weight cost, hundreds of
            # successes took lambda below float32's range, and M = 0 for a weight with zero gradients
            return max(lam * cfg.lm_decrease, LAMBDA_FLOOR) if lam > 0 else lam
        return lam

    def summary(self) -> dict[str, Any]:
        return {"final_lambda": self.lam}

    def state_dict(self) -> dict[str, Any]:
        """``lambda``, the CG warm start, the chunk counter and the generator."""
        gen = self.gen.get_state()
        return {"lam": self.lam, "ch": self.ch, "iteration": self.iteration, "generator": gen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam, self.ch, self.iteration = state["lam"], state["ch"], state["iteration"]
        self.gen.set_state(state["generator"].clone())
