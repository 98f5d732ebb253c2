"""Mini-batch size selection: Alg. 2 (Byrd et al. 2012) and the growth rule of Alg. 1."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from shf import tensorlist as tl
from shf.errors import ConfigError


@dataclass(frozen=True)
class BatchStats:
    """What Alg. 2 computed: the prediction and its ingredients."""

    n_hat: int
    var_l1: float
    grad_norm_sq: float


def predict_batch_size(
    grad: Sequence[Tensor],
    sumsq: Sequence[Tensor],
    n: int,
    N: int | None,
    theta: float,
    *,
    squared: bool = True,
) -> BatchStats:
    """``BatchSize(w, S, N, theta)``, Alg. 2.

    Args:
        grad: ``grad f_S = (1/n) sum_i grad f_i``.
        sumsq: ``sum_i (grad f_i)^2`` (componentwise squares).
        n: ``|S|``; N: the training-set size (``None``: an unbounded stream of examples,
            the limit ``N -> inf`` of the formula below); theta: the tolerance of eq. (10).

    ``Var = n/(n-1) [ (1/n) sum_i (grad f_i)^2 - (grad f_S)^2 ]`` (sample variance) and
    ``n_hat = ceil(N ||Var||_1 / (||Var||_1 + theta^2 (N-1) ||grad f_S||_2^2))``, the
    smallest size satisfying eq. (14). The norm is *squared* (NOTES item 6, a
    deliberate deviation from the paper's text, as in Byrd et al. 2012 eq. 3.9).
    ``squared=False`` (docs/deviations.md B6) takes eq. (13) literally instead: ``||grad f_S||_2``
    unsquared in place of ``||grad f_S||_2^2`` (``grad_norm_sq`` then holds that norm).
    """
    if n < 2:
        raise ConfigError(f"the batch-size test needs n >= 2 examples, got {n}")
    if N is not None and n > N:
        raise ConfigError(f"training-set size N={N} is smaller than the batch n={n}")
    # Var(grad f_S) <- n/(n-1) [ (1/n) sum_i (grad f_i)^2 - (grad f_S)^2 ]
    var = [(s / n - g * g).clamp_(min=0.0) * (n / (n - 1)) for g, s in zip(grad, sumsq)]
    var_l1 = tl.norm1(var)  # ||Var||_1 (entries are >= 0)
    g2 = tl.dot(list(grad), list(grad))  # ||grad f_S||_2^2
    if not squared:
        g2 = math.sqrt(g2)  # eq. (13) as printed: ||grad f_S||_2 (B6)
    if N is None:
        # N -> inf: n_hat = ||Var||_1 / (theta^2 ||grad f_S||^2)
        if not (math.isfinite(var_l1) and g2 > 0.0):
            return BatchStats(n_hat=n, var_l1=var_l1, grad_norm_sq=g2)
        return BatchStats(n_hat=max(math.ceil(var_l1 / (theta**2 * g2)), 1), var_l1=var_l1, grad_norm_sq=g2)
    denom = var_l1 + theta**2 * (N - 1) * g2
    if not math.isfinite(denom) or denom <= 0.0:
        # Zero gradient and zero variance: nothing to estimate, keep the batch.
        return BatchStats(n_hat=n, var_l1=var_l1, grad_norm_sq=g2)
    # n_hat <- ceil(N ||Var||_1 / (||Var||_1 + theta^2 (N-1) ||grad f_S||^2))
    n_hat = math.ceil(N * var_l1 / denom)
    return BatchStats(n_hat=max(n_hat, 1), var_l1=var_l1, grad_norm_sq=g2)


def batch_cap(n_max: int, n1: int, N: int | None, fraction: float | None = None) -> int:
    """The largest batch a run draws: ``n_max`` (Table 1), at most the training-set size ``N``
    and, beyond the paper (B13), at most ``ceil(fraction N)``; never below the first batch
    ``min(n1, N)``. ``N = None`` (unknown): ``n_max``; ``fraction = None``: no B13 cap."""
    if N is None:
        return n_max
    cap = min(n_max, N)
    if fraction is not None:
        cap = min(cap, math.ceil(fraction * N))
    return max(cap, min(n1, N))


@dataclass
class BatchSchedule:
    """The mini-batch growth rule of Alg. 1 (§4.3, §4.5).

    After iteration ``i`` (1-based) with validation error ``f_val,i`` and prediction
    ``n_hat_i``, and once ``i > window``:

    * ``r_rel = (f_val,{i-window} - f_val,i) / f_val,i`` (Alg. 1's window of 5; §4.3
      writes ``i-4``: we follow Alg. 1, NOTES item 7),
    * ``n_avg = ceil(mean(n_hat_{i-window+1..i}))``,
    * ``n_next = min(n_avg, n_max)`` if ``n_avg > n``, else ``min(ceil(growth n), n_max)``
      if ``r_rel < rrel_tol``, else ``n``;
    * ``maxiter <- ceil(n_next / n * maxiter)``.
    """

    n: int
    maxiter: int
    n_max: int
    window: int = 5
    growth: float = 1.005
    rrel_tol: float = 0.005
    fval: deque[float] = field(default_factory=deque)
    nhat: deque[int] = field(default_factory=deque)
    iteration: int = 0

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ConfigError(f"n1 must be at least 2, got {self.n}")
        if self.n_max < self.n:
            raise ConfigError(f"n_max ({self.n_max}) must be >= n1 ({self.n})")
        if self.maxiter < 1:
            raise ConfigError(f"maxiter must be >= 1, got {self.maxiter}")
        if self.window < 1:
            raise ConfigError(f"window must be >= 1, got {self.window}")
        if not self.growth > 1.0:
            raise ConfigError(f"batch growth factor must be > 1, got {self.growth}")

    def update(self, f_val: float, n_hat: int) -> tuple[int, int, float | None]:
        """Record iteration ``i``; return ``(n, maxiter, r_rel)`` for iteration ``i+1``."""
        self.iteration += 1
        self.fval.append(f_val)
        self.nhat.append(n_hat)
        # Keep f_val,{i-window..i} (window+1 values) and n_hat_{i-window+1..i} (window values).
        while len(self.fval) > self.window + 1:
            self.fval.popleft()
        while len(self.nhat) > self.window:
            self.nhat.popleft()
        if self.iteration <= self.window:  # "if i > 5"
            return self.n, self.maxiter, None
        f_old = self.fval[0]
        # r_rel <- (f_val,i-5 - f_val,i) / f_val,i
        r_rel = (f_old - f_val) / f_val if f_val > 0 else 0.0
        # n_avg <- ceil((n_hat_{i-4} + ... + n_hat_i)/5)
        n_avg = math.ceil(sum(self.nhat) / len(self.nhat))
        if n_avg > self.n:
            n_next = min(n_avg, self.n_max)
        elif r_rel < self.rrel_tol:
            n_next = min(math.ceil(self.growth * self.n), self.n_max)
        else:
            n_next = self.n
        # maxiter <- ceil(n_next/n * maxiter)  (§4.5)
        self.maxiter = math.ceil(n_next / self.n * self.maxiter)
        self.n = n_next
        return self.n, self.maxiter, r_rel

    def state_dict(self) -> dict[str, object]:
        """Everything needed to resume the schedule exactly."""
        return {
            "n": self.n,
            "maxiter": self.maxiter,
            "fval": list(self.fval),
            "nhat": list(self.nhat),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore from :meth:`state_dict`."""
        self.n = int(state["n"])  # type: ignore[call-overload]
        self.maxiter = int(state["maxiter"])  # type: ignore[call-overload]
        self.fval = deque(float(v) for v in state["fval"])  # type: ignore[attr-defined]
        self.nhat = deque(int(v) for v in state["nhat"])  # type: ignore[attr-defined]
        self.iteration = int(state["iteration"])  # type: ignore[call-overload]


class BatchPolicy:
    """The batch part of Alg. 1, after each HF iteration: Alg. 2's prediction and the growth rule
    (:class:`BatchSchedule`) for the next batch size and the solver's cap, and B4's rules on the
    cap.

    ``dynamic``: the paper's schedule (False, the ablation: ``n1`` and ``maxiter1`` stay);
    ``theta`` and ``squared``: Alg. 2's test (``batch_test``); ``merit_cap``: B4's rule, the next
    cap ``max(ceil(1.5 k*), first_check)`` from the iteration ``k*`` of the solver's best merit;
    ``maxiter_max``: B4's bound on the cap (None: none).
    """

    def __init__(
        self, schedule: BatchSchedule, *, dynamic: bool, theta: float, squared: bool, merit_cap: bool,
        first_check: int, maxiter_max: int | None,
    ) -> None:  # fmt: skip
        self.schedule, self.dynamic, self.theta, self.squared = schedule, dynamic, theta, squared
        self.merit_cap, self.first_check, self.maxiter_max = merit_cap, first_check, maxiter_max

    def needs_statistics(self) -> bool:
        """Whether Alg. 2's prediction can change the next batch size (not at ``n_max``)."""
        return self.dynamic and self.schedule.n < self.schedule.n_max

    def update(
        self,
        val_loss: float | None,
        statistics: Callable[[], tuple[Sequence[Tensor], Sequence[Tensor]]],
        n: int,
        N: int | None,
        solver_best: int | None,
    ) -> tuple[int | None, float | None]:
        """Record an iteration: its validation loss (None without a validation set), the batch's
        per-example gradient statistics ``(grad, sumsq)`` for Alg. 2 (computed only when they can
        change a decision), the batch size ``n``, the training-set size ``N`` (None: a stream)
        and the solver's best iteration (None: no usable solve). Returns ``(n_hat, r_rel)`` (None
        where not computed)."""
        n_hat: int | None = None
        r_rel: float | None = None
        if self.dynamic:
            # At n_max every branch of the growth rule keeps n = n_max (and maxiter), so Alg. 2's
            # prediction cannot change a decision: it is not computed (deviation 23).
            # n_hat_i <- BatchSize(w, S, N, theta)  (Alg. 2, at the new w on the same batch)
            if self.needs_statistics():
                grad, sumsq = statistics()
                n_hat = predict_batch_size(grad, sumsq, n, N, self.theta, squared=self.squared).n_hat
            if val_loss is not None:
                _, _, r_rel = self.schedule.update(val_loss, self.schedule.n if n_hat is None else n_hat)
        # else (ablation): the batch size and the solver's cap stay at n1 and maxiter1
        if self.merit_cap and solver_best is not None:
            # Beyond the paper (docs/deviations.md B4): the next cap follows where the merit was
            # best, ceil(1.5 k*), at least first_check (instead of scaling with the batch).
            self.schedule.maxiter = max(math.ceil(1.5 * solver_best), self.first_check)
        if self.maxiter_max is not None:
            self.schedule.maxiter = min(self.schedule.maxiter, self.maxiter_max)  # B4's bound
        return n_hat, r_rel
