"""One iteration of stochastic Hessian-free optimisation with LSMR (Alg. 1, body of the loop).

Given the weights ``w``, a mini-batch ``X`` and the state carried between iterations
(``lambda``, ``gamma``, the warm start ``d`` and ``maxiter``), :func:`shf_step`

1. builds ``A = grad R(w; X)``, ``b = -R(w; X)`` and the inverse preconditioner ``c``;
2. solves ``(A^T A + lambda^2 I) d = A^T b`` with preconditioned LSMR from ``d``,
   with the validation merit ``phi(d) = f(w + d; X_val)`` (Alg. 6);
3. computes ``rho`` and applies the Levenberg-Marquardt rule (§4.2);
4. backtracks ``s`` until Armijo's condition holds and sets ``w <- w + s d``;
5. decays the warm start ``d <- gamma d``, ``gamma <- min(1.002 gamma, 0.95)`` (§4.5).

The batch schedule (Alg. 2 and the growth rule), validation tracking and stopping
live in :class:`shf.SHF` and :mod:`shf.fit`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import Tensor

from shf import batch as bt
from shf import tensorlist as tl
from shf.batch import Inputs
from shf.curvature.base import CurvatureModel
from shf.errors import require, require_choice
from shf.optim import precond as pc
from shf.optim.accel import ACCELERATIONS, Accelerated, Acceleration, make_acceleration
from shf.optim.damping import (
    DAMPING_RULES,
    LAMBDA_MAX,
    DampingRule,
    Trial,
    below_roundoff,
    make_damping,
    reduction_ratio,
)
from shf.optim.linesearch import STEP_RULES, StepLength, make_step_length
from shf.optim.objective import WEIGHT_COST_RULES, Objective, ObjectiveAt, QuadraticModel, make_objective
from shf.optim.sampler import CurvatureRows, make_sampler
from shf.optim.scaling import ColumnScaling
from shf.optim.settings import (
    PAPER_VALUES,
    PRECONDITIONER,
    Batch,
    Damping,
    Init,
    LineSearch,
    Solver,
    WarmStart,
)
from shf.optim.solve import (
    SOLVERS,
    Agree,
    DirectSolver,
    InnerSolver,
    SolveResult,
    SolveStop,
    Stops,
    System,
    Tolerances,
    any_rank,
    make_solver,
)
from shf.optim.stops import FORCING_RULES, Forcing, MeritAt, ValidationMerit, make_forcing
from shf.optim.warmstart import WARM_START_GUARDS, WarmStartGuard, make_guard
from shf.solvers.merit import MeritRule
from shf.solvers.operator import TimedOperator

NOT_FINITE_BATCH = SolveStop.NOT_FINITE_BATCH
"""The solver's stop reason when the batch's loss or residual was not finite (no solve)."""
MAXITER_RULES = ("paper", "merit")
BATCH_TESTS = ("squared", "paper")


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class SHFConfig:
    """Hyper-parameters of Alg. 1 and Alg. 6, flat (the ``[optimizer]`` section of a configuration
    file). The defaults are the settings groups' (:mod:`shf.optim.settings`): the paper's CURVES run
    (§6) with the measured-best settings beyond the paper on top; :meth:`paper` (``shf.PAPER``) is
    the paper's run exactly.

    Attributes:
        lambda1: initial damping ``lambda_1`` (LSMR's ``damp``; the system is
            ``A^T A + lambda^2 I``, NOTES item 9).
        drop: Levenberg-Marquardt factor in (0, 1) (§4.2).
        gamma1, gamma_growth, gamma_max: warm-start decay ``gamma_1`` and its schedule
            ``gamma <- min(gamma_growth gamma, gamma_max)`` (§4.5).
        maxiter1: LSMR iteration cap at the first HF iteration (§4.5).
        atol: LSMR's ``||Abar^T rbar|| <= atol ||Abar|| ||rbar||`` test (§5).
        ftol: relative merit progress per LSMR iteration below which LSMR stops (§5).
        miniter, recover: Alg. 6's minimum iterations before a merit stop and the
            patience for the merit to recover (NOTES: 50 and 100).
        first_check, check_growth: merit check points ``k = 5, ceil(1.25 k), ...``.
        theta: Byrd et al.'s variance tolerance in eq. (10).
        m0, sigma: sparse initialisation, eq. (9).
        alpha: Armijo constant; ``max_backtracks`` bounds the halvings (deviation: the
            paper's loop is unbounded).
        n1, n_max: initial and maximal mini-batch size (Table 1).
        batch_growth, rrel_tol, window: Alg. 1's growth by 1.005 when
            ``r_rel < 0.005`` over a window of 5 iterations.
        preconditioner: ``chapelle-erhan`` (Alg. 3), ``martens``, ``column-norms`` (MINPACK's
            scaling, B18), ``kfac`` (B19: Kronecker-factored per layer, LSMR's right
            preconditioner on the same damped problem; hand-written autoencoder only) or ``none``.
        use_merit: evaluate the validation merit inside LSMR (Alg. 6); off gives
            plain damped LSMR stopped by ``atol``/``maxiter`` only.
        solver: ``lsmr`` (Alg. 6), ``cg`` (ablation: CG on the same preconditioned
            damped normal equations, same merit rules, residual test ``rtol = atol``) or
            ``direct`` (beyond the paper, B20: the same problem solved exactly by QR, for a model
            with at most ``shf.optim.solve.DIRECT_MAX_WEIGHTS`` weights; the full-batch regime's
            choice for at most 16, :mod:`shf.optim.regime`).
        batch_schedule: ``dynamic`` (Alg. 2 and the growth rule) or ``fixed`` (``n = n1``
            and ``maxiter = maxiter1`` throughout; ablation).
        damping_rule: ``paper`` (§4.2, ``drop``), ``nielsen`` (the default, beyond the paper:
            Nielsen's continuous rule on ``lambda^2``, :func:`shf.optim.damping.nielsen`; ``drop``
            unused; the settings group's ``Damping(rule="auto")``)
            or ``trust-region`` (beyond the paper, B23: ``lambda`` chosen per HF iteration for a
            radius on ``||d / c||`` that moves with ``rho``, MINPACK's rule,
            :class:`shf.optim.damping.TrustRegion`; needs ``solver = "direct"``, no warm start).
        lambda_min: a floor under ``lambda`` (beyond the paper; 0, the paper's, is none): an
            undamped system lets LSMR fit the batch's noise for many iterations.
        forcing, forcing_eta0, forcing_power: beyond the paper (docs/deviations.md B3): with
            ``forcing = "gradient"`` the solver also stops once the residual of its normal
            equations is below ``eta_i ||c ∘ grad f||`` (an inexact-Newton forcing term in the
            spirit of Eisenstat & Walker), ``eta_i = forcing_eta0 min(1, (||grad f_i|| /
            ||grad f_1||)^forcing_power)``: loose early, tighter as the gradient shrinks.
            ``"none"`` (the paper's): ``atol`` alone. With ``solver = "cg"`` the residual is CG's
            own, the same quantity.
        maxiter_rule, maxiter_max: beyond the paper (B4): ``"paper"`` scales the cap with the
            batch (§4.5); ``"merit"`` sets the next cap to ``ceil(1.5 k*)``, ``k*`` the
            iteration of the best merit (the returned iterate; still improving at the cap:
            the cap grows by half, stopped early: it shrinks), at least ``first_check``.
            ``maxiter_max`` (``None``: no bound) bounds the cap under either rule.
        merit_size: beyond the paper (B5): evaluate the merit inside the solver on the first
            ``merit_size`` validation rows only (a fixed subsample; the split is random) instead
            of all; ``None`` (the paper's): all. The growth rule and the loop still read the
            whole validation set.
        curvature_size: beyond the paper (B7): the curvature products (the solver's ``A``, the
            preconditioner, ``rho``'s quadratic term) on the first ``curvature_size`` rows of
            the batch only, while the gradient, the loss, ``rho``, the line search and Alg. 2
            use the whole batch (Byrd et al. 2011's subsampled curvature): the solver solves
            ``(C A_c^T A_c C + lambda^2 I) y = -C g + lambda^2 y0`` with ``g`` the whole batch's
            gradient (by LSMR on ``[A_c C; lambda I]``, :class:`shf.solvers.operator.DampedStack`);
            needs ``lambda_min > 0``. ``None`` (the paper's): the whole batch.
        curvature_patience, curvature_growth: beyond the paper (B11,
            :class:`shf.optim.plateau.PlateauGrowth`): B7's curvature batch starts at
            ``curvature_size`` rows and grows by ``curvature_growth`` (up to ``n_max``) whenever
            the validation loss (Alg. 2's, the whole validation set) has not improved by a
            relative 1e-4 on its best for ``curvature_patience`` HF iterations: cheap early
            iterations, better curvature once the subsample's noise limits progress. ``None``
            (the default): the curvature batch stays at ``curvature_size``. Needs
            ``curvature_size`` and a validation set; set it below the run's patience.
        step_rule, step_max: beyond the paper (B8): ``"unit"`` (the paper's) backtracks from
            ``s = 1``; ``"model"`` first tries the minimiser of the undamped quadratic model
            along ``d``, ``s* = -g^T d / ||A d||^2``, when it exceeds 1 (capped at
            ``step_max``), and keeps it when it passes Armijo's test with a lower batch loss
            than ``s = 1``; otherwise the paper's backtracking from 1. A truncated LSMR
            iterate minimises the normal equations' residual, not the model, so it is often
            short along its own direction.
        weight_cost: beyond the paper (B10): an L2 weight cost ``c``, the objective
            ``f(w) = L(w) + c/2 ||w||^2`` as in Martens' HF (0, the paper's: none). In least
            squares it is ``len(w)`` more residual rows ``sqrt(c) w``: the solver's operator is
            ``[A; sqrt(c) I]`` with right-hand side ``[b; -sqrt(c) w]``, so the system is
            ``(C (A^T A + c I) C + lambda^2 I) y = -C (grad L + c w) + lambda^2 y0``; ``rho``, the
            line search and the batch loss use ``f``. The merit, Alg. 2 and the validation loss
            stay on ``L`` (the data's loss: the term is the same on every data set).
        weight_cost_rule: ``"constant"`` (``c = weight_cost``) or, beyond the paper (B16),
            ``"per-example"``: ``c = weight_cost (P / N) / 100``, ``P`` the weights and ``N`` the
            training examples (:class:`shf.optim.objective.WeightsPerExample`; needs ``N``), or
            ``"per-example-floor"`` (B24, the default): ``c = max(weight_cost, weight_cost (P / N)
            / 100)``, at most ``B24_MAX_FACTOR`` (10) times ``weight_cost``, the constant where ``N``
            is not known (moot without a weight cost, as in the paper's settings).
        n_max_fraction: beyond the paper (B13): with a known training-set size ``N`` the
            gradient batch is capped at ``ceil(n_max_fraction N)`` as well as at ``n_max``
            (never below ``n1``); ``None`` (the paper's): ``n_max`` alone. The presets' caps
            are 10% of MNIST's 60,000 images, 12.5% of CURVES' 20,000 and 30% of USPS's 6,762,
            but 75% of the 8,000-image MNIST-t10k stand-in; a batch that is most of the
            training set makes each iteration dear without a better direction.
        batch_test: ``"squared"`` (NOTES item 6: ``theta^2 ||grad f_S||^2``, Byrd et al.) or
            ``"paper"`` (beyond the NOTES reading, B6: eq. 13's literal ``theta^2 ||grad f_S||``,
            which predicts smaller batches while ``||grad f_S|| < 1``).
        warm_start_guard: ``"none"`` (the paper's: LSMR always starts from ``gamma d``) or,
            beyond the paper (B14), ``"model"``: start from 0 when ``gamma d`` does not
            decrease the undamped quadratic model on the new batch (``q(gamma d) >= 0``; one
            more Jacobian product), or ``"retry"``: solve again from 0 when the direction
            returned from ``gamma d`` does not decrease it (``q(d) >= 0``; the iterations of
            both solves are counted), or ``"reset"``: keep that direction for this step (``rho``,
            the damping update and the line search as usual) but do not warm-start the next
            solve from it. LSMR's damping pulls its iterates towards the start
            (eq. 19), so without the merit a bad start is returned almost unchanged.
        roundoff: beyond the paper (B21, :func:`shf.optim.damping.below_roundoff`): when the
            undamped model predicts a change of ``f`` smaller than ``roundoff |f|`` and ``f(w + d)``
            is not above ``f(w) + roundoff |f|``, the step is taken whole (``s = 1``, no line
            search) and counts as ``rho = 1``. Near a least-squares solution the change of ``f``
            is below its round-off (the residuals cancel the data to a few digits, so ``f``
            carries perhaps 1e-9 of relative noise), ``rho`` is noise, and the paper's rule then
            raises ``lambda`` and shortens the last Gauss-Newton steps, which are the ones that
            give the parameters their last digits. 0 (the paper's, and the stochastic defaults')
            is never; the full-batch regime's is 1e-10.
        acceleration, acceleration_max: beyond the paper (B22, :mod:`shf.optim.accel`):
            ``"geodesic"`` corrects the direction ``d`` by Transtrum & Sethna's (2012) geodesic
            acceleration, the step ``d + a/2`` with ``a`` the damped problem's solution for the
            residuals' second derivative along ``d`` (one more forward-over-forward pass and one
            more solve per HF iteration); the step is refused, as for ``rho < 0``, when
            ``2 ||a|| / ||d|| > acceleration_max`` (their ``alpha``). ``rho`` and the line search
            read the corrected step. ``"none"`` (the paper's, the stochastic defaults'): ``d``.
    """

    lambda1: float = Damping.lambda1
    drop: float = Damping.drop
    gamma1: float = WarmStart.gamma1
    gamma_growth: float = WarmStart.growth
    gamma_max: float = WarmStart.gamma_max
    maxiter1: int = Solver.maxiter1
    atol: float = Solver.atol
    ftol: float = Solver.ftol
    miniter: int = Solver.miniter
    recover: int = Solver.recover
    first_check: int = Solver.first_check
    check_growth: float = Solver.check_growth
    theta: float = Batch.theta
    m0: int = Init.m0
    sigma: float = Init.sigma
    alpha: float = LineSearch.alpha
    max_backtracks: int = LineSearch.max_backtracks
    n1: int = Batch.n1
    n_max: int = Batch.n_max
    batch_growth: float = Batch.growth
    rrel_tol: float = Batch.rrel_tol
    window: int = Batch.window
    preconditioner: str = PRECONDITIONER
    use_merit: bool = Solver.use_merit
    solver: str = Solver.kind
    batch_schedule: str = Batch.schedule
    damping_rule: str = "nielsen"  # Damping.rule's "auto" outside the full-batch regime's exact solve
    lambda_min: float = Damping.lambda_min
    forcing: str = Solver.forcing
    forcing_eta0: float = Solver.forcing_eta0
    forcing_power: float = Solver.forcing_power
    maxiter_rule: str = Solver.maxiter_rule
    maxiter_max: int | None = Solver.maxiter_max
    merit_size: int | None = Solver.merit_size
    batch_test: str = Batch.test
    curvature_size: int | None = Batch.curvature_size
    curvature_patience: int | None = Batch.curvature_patience
    curvature_growth: float = Batch.curvature_growth
    step_rule: str = LineSearch.step_rule
    step_max: float = LineSearch.step_max
    weight_cost: float = Damping.weight_cost
    n_max_fraction: float | None = Batch.n_max_fraction
    warm_start_guard: str = WarmStart.guard
    weight_cost_rule: str = Damping.weight_cost_rule
    roundoff: float = Damping.roundoff
    acceleration: str = LineSearch.acceleration
    acceleration_max: float = LineSearch.acceleration_max

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def paper(cls, **changes: Any) -> SHFConfig:
        """The paper's settings (its CURVES run, §6: :data:`shf.optim.settings.PAPER_VALUES` over
        the defaults), with ``changes`` (e.g. another preset's Table 1 row) on top."""
        return cls(**{**PAPER_VALUES, **changes})

    def ignored(self) -> dict[str, str]:
        """The keys that this configuration's chosen parts do not read, each with the part that
        ignores it (a setting given for one of them is refused where shf can tell that it was
        given: the groups, :func:`shf.optim.hyper.check_given`, and a configuration file's keys and
        overrides, :func:`shf.config.load`)."""
        out: dict[str, str] = {}

        def by(part: str, *keys: str) -> None:
            out.update(dict.fromkeys(keys, part))

        if self.damping_rule == "nielsen":
            by("Nielsen's damping rule (damping_rule = 'nielsen', NielsenDamping)", "drop")
        if self.damping_rule == "trust-region":
            by("B23's trust region (damping_rule = 'trust-region', TrustRegion), which solves from 0 "
               "and takes a step whole or not at all", "drop", "gamma1", "gamma_growth", "gamma_max",
               "warm_start_guard", "max_backtracks", "step_rule", "step_max")  # fmt: skip
        if not self.use_merit:
            merit_keys = ["ftol", "miniter", "recover", "check_growth", "merit_size"]
            if self.maxiter_rule != "merit":  # B4's merit cap reads first_check too
                merit_keys.append("first_check")
            by("the solve without Alg. 6's validation merit (use_merit = false)", *merit_keys)
        if self.forcing == "none":
            by("the solve without B3's forcing test (forcing = 'none')", "forcing_eta0", "forcing_power")
        if self.solver == "direct":
            by("the exact solve (solver = 'direct', DirectSolver, B20), which has no iterations to stop",
               "atol", "maxiter1", "maxiter_max", "maxiter_rule", "forcing", "forcing_eta0", "forcing_power",
               "ftol", "miniter", "recover", "first_check", "check_growth")  # fmt: skip
        if self.step_rule == "unit":
            by("Armijo's backtracking from 1 (step_rule = 'unit', StepLength)", "step_max")
        if self.acceleration == "none":
            by("the step without B22's geodesic acceleration (acceleration = 'none')", "acceleration_max")
        if self.curvature_patience is None:
            by("curvature rows that do not grow (curvature_patience = none)", "curvature_growth")
        if self.weight_cost == 0.0:
            by("the objective without a weight cost (weight_cost = 0)", "weight_cost_rule")
        if self.batch_schedule == "fixed":
            by("the fixed batch (batch_schedule = 'fixed')", "theta", "batch_growth", "rrel_tol", "window",
               "batch_test")  # fmt: skip
        return out

    def tolerances(self) -> Tolerances:
        """The inner solver's stopping constants (``atol`` and Alg. 6's merit rule)."""
        return Tolerances(
            self.atol, MeritRule(self.ftol, self.miniter, self.recover, self.first_check, self.check_growth)
        )

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid hyper-parameter."""
        self._check_paper_solve()
        self._check_paper_batch()
        self._check_rules()
        self._check_beyond()

    def _check_paper_solve(self) -> None:
        """The paper's damping, warm start and inner solve (§4.2, §4.5, Alg. 6)."""
        need, finite = require, _finite
        need(
            finite(self.lambda1) and 0 <= self.lambda1 <= LAMBDA_MAX,
            f"lambda1 must be in [0, {LAMBDA_MAX:g}] (the damping's ceiling), got {self.lambda1}",
        )
        need(finite(self.drop) and 0 < self.drop < 1, f"drop must be in (0, 1), got {self.drop}")
        need(finite(self.gamma1) and 0 <= self.gamma1 < 1, f"gamma1 must be in [0, 1), got {self.gamma1}")
        need(
            finite(self.gamma_max) and 0 <= self.gamma_max < 1,
            f"gamma_max must be in [0, 1), got {self.gamma_max}",
        )
        need(
            finite(self.gamma_growth) and self.gamma_growth >= 1,
            f"gamma_growth must be >= 1, got {self.gamma_growth}",
        )
        need(
            isinstance(self.maxiter1, int) and self.maxiter1 >= 1,
            f"maxiter1 must be a positive integer, got {self.maxiter1}",
        )
        need(finite(self.atol) and self.atol >= 0, f"atol must be >= 0, got {self.atol}")
        need(finite(self.ftol) and self.ftol >= 0, f"ftol must be >= 0, got {self.ftol}")
        need(isinstance(self.miniter, int) and self.miniter >= 0, f"miniter must be >= 0, got {self.miniter}")
        need(isinstance(self.recover, int) and self.recover >= 0, f"recover must be >= 0, got {self.recover}")
        need(
            isinstance(self.first_check, int) and self.first_check >= 1,
            f"first_check must be >= 1, got {self.first_check}",
        )
        need(
            finite(self.check_growth) and self.check_growth > 1,
            f"check_growth must be > 1, got {self.check_growth}",
        )

    def _check_paper_batch(self) -> None:
        """The paper's batch schedule, initialisation and line search (Alg. 1, 2, eq. 9)."""
        need, finite = require, _finite
        need(finite(self.theta) and 0 < self.theta < 1, f"theta must be in (0, 1), got {self.theta}")
        need(isinstance(self.m0, int) and self.m0 >= 1, f"m0 must be a positive integer, got {self.m0}")
        need(finite(self.sigma) and self.sigma > 0, f"sigma must be > 0, got {self.sigma}")
        need(finite(self.alpha) and 0 < self.alpha < 1, f"alpha must be in (0, 1), got {self.alpha}")
        need(
            isinstance(self.max_backtracks, int) and self.max_backtracks >= 0,
            f"max_backtracks must be >= 0, got {self.max_backtracks}",
        )
        need(isinstance(self.n1, int) and self.n1 >= 2, f"n1 must be an integer >= 2, got {self.n1}")
        need(
            isinstance(self.n_max, int) and self.n_max >= self.n1,
            f"n_max must be an integer >= n1 ({self.n1}), got {self.n_max}",
        )
        need(
            finite(self.batch_growth) and self.batch_growth > 1,
            f"batch_growth must be > 1, got {self.batch_growth}",
        )
        need(finite(self.rrel_tol) and self.rrel_tol >= 0, f"rrel_tol must be >= 0, got {self.rrel_tol}")
        need(isinstance(self.window, int) and self.window >= 1, f"window must be >= 1, got {self.window}")

    def _check_rules(self) -> None:
        """The choices of rule (solver, damping, batch schedule, forcing: B1, B3)."""
        need, finite = require, _finite
        require_choice("solver", self.solver, SOLVERS)
        need(
            finite(self.lambda_min) and self.lambda_min >= 0,
            f"lambda_min must be a number >= 0, got {self.lambda_min}",
        )
        need(
            self.lambda_min <= self.lambda1,
            f"lambda1 = {self.lambda1:g} is below lambda_min = {self.lambda_min:g}, the damping's floor: "
            f"lambda1 must be >= lambda_min (raise lambda1, or lower lambda_min too)",
        )
        require_choice("damping_rule", self.damping_rule, DAMPING_RULES)
        need(
            self.damping_rule != "trust-region" or self.acceleration == "none",
            "damping_rule 'trust-region' (B23) sizes the step d itself: it does not take B22's "
            "geodesic acceleration (set acceleration = 'none', or another damping rule)",
        )
        need(
            self.damping_rule != "trust-region" or (self.solver == "direct" and self.curvature_size is None),
            "damping_rule 'trust-region' (B23) chooses lambda on the exact solve's matrix: it needs "
            f"solver = 'direct' and curvature_size = none (got solver {self.solver!r}, curvature_size "
            f"{self.curvature_size})",
        )
        need(
            self.batch_schedule in ("dynamic", "fixed"),
            f"batch_schedule must be 'dynamic' or 'fixed', got {self.batch_schedule!r}",
        )
        require_choice("forcing", self.forcing, FORCING_RULES)
        need(
            finite(self.forcing_eta0) and 0 < self.forcing_eta0 < 1,
            f"forcing_eta0 must be in (0, 1), got {self.forcing_eta0}",
        )
        need(
            finite(self.forcing_power) and self.forcing_power >= 0,
            f"forcing_power must be >= 0, got {self.forcing_power}",
        )

    def _check_beyond(self) -> None:
        """The settings beyond the paper (B4, B5, B7, B8, B10, B11, B13, B14) and the preconditioner."""
        need, finite = require, _finite
        require_choice("maxiter_rule", self.maxiter_rule, MAXITER_RULES)
        need(
            self.maxiter_max is None or (isinstance(self.maxiter_max, int) and self.maxiter_max >= 1),
            f"maxiter_max must be a positive integer or none, got {self.maxiter_max}",
        )
        need(
            self.merit_size is None or (isinstance(self.merit_size, int) and self.merit_size >= 1),
            f"merit_size must be a positive integer or none, got {self.merit_size}",
        )
        require_choice("batch_test", self.batch_test, BATCH_TESTS)
        need(
            self.curvature_size is None
            or (isinstance(self.curvature_size, int) and self.curvature_size >= 2),
            f"curvature_size must be an integer >= 2 or none, got {self.curvature_size}",
        )
        need(
            self.curvature_size is None or self.lambda_min > 0,
            "curvature_size needs lambda_min > 0 (the solver's right-hand side divides by lambda); "
            "set curvature_size to none to use the whole batch",
        )
        need(
            self.curvature_patience is None
            or (isinstance(self.curvature_patience, int) and self.curvature_patience >= 1),
            f"curvature_patience must be a positive integer or none, got {self.curvature_patience}",
        )
        need(
            self.curvature_patience is None or self.curvature_size is not None,
            "curvature_patience grows B7's curvature batch: set curvature_size too",
        )
        need(
            isinstance(self.curvature_growth, (int, float)) and 1 < self.curvature_growth < math.inf,
            f"curvature_growth must be a number > 1, got {self.curvature_growth}",
        )
        require_choice("step_rule", self.step_rule, STEP_RULES)
        need(finite(self.step_max) and self.step_max >= 1, f"step_max must be >= 1, got {self.step_max}")
        need(
            finite(self.weight_cost) and self.weight_cost >= 0,
            f"weight_cost must be >= 0, got {self.weight_cost}",
        )
        need(
            self.n_max_fraction is None
            or (finite(self.n_max_fraction) and 0 < self.n_max_fraction <= 1),
            f"n_max_fraction must be in (0, 1] or none, got {self.n_max_fraction}",
        )
        require_choice("warm_start_guard", self.warm_start_guard, WARM_START_GUARDS)
        require_choice("weight_cost_rule", self.weight_cost_rule, WEIGHT_COST_RULES)
        need(
            finite(self.roundoff) and 0 <= self.roundoff < 1e-3,
            f"roundoff must be in [0, 1e-3) (a relative change of f), got {self.roundoff}",
        )
        require_choice("acceleration", self.acceleration, ACCELERATIONS)
        need(
            finite(self.acceleration_max) and self.acceleration_max > 0,
            f"acceleration_max must be > 0, got {self.acceleration_max}",
        )
        require_choice("preconditioner", self.preconditioner, [p.value for p in pc.Preconditioner])
        need(
            not (self.preconditioner == "kfac" and self.solver in ("cg", "direct")),
            f"the kfac preconditioner (B19) is LSMR's; with solver {self.solver!r} use a diagonal one",
        )


@dataclass
class SHFState:
    """What Alg. 1 carries from one HF iteration to the next."""

    lam: float
    gamma: float
    maxiter: int
    damping: DampingRule  # the damping part (§4.2, B1, B2), with its own state
    step_length: StepLength  # the step-length part (Armijo, B8), chosen once
    guard: WarmStartGuard  # what the warm start does when it does not decrease the model (B14)
    solver: InnerSolver  # the inner solve (LSMR, B7's stacked LSMR, CG) and its tolerances
    sampler: CurvatureRows  # the curvature rows (the whole batch; B7's first rows; B11's growing)
    objective: Objective  # the data loss, plus B10's weight cost
    merit: ValidationMerit  # Alg. 6's merit (B5: on a subsample)
    forcing: Forcing  # B3's forcing test on the solver's residual (the paper's: none), its state
    scaling: pc.Scaling  # the preconditioner (Alg. 3; B18's column norms keep a state)
    acceleration: Acceleration  # the step's correction (B22's geodesic acceleration; none)
    d: list[Tensor] | None = None  # the decayed previous step gamma d (warm start)

    @classmethod
    def initial(cls, cfg: SHFConfig, n_weights: int = 0, train_size: int | None = None) -> SHFState:
        """``lambda <- lambda_1``, ``gamma <- gamma_1``, ``maxiter <- maxiter_1``, ``d <- 0``
        (and B11's curvature batch at ``curvature_size``). ``n_weights`` and ``train_size``: the
        model's weights and the training-set size, which B16's weight-cost rule reads."""
        return cls(
            lam=cfg.lambda1,
            gamma=cfg.gamma1,
            maxiter=cfg.maxiter1,
            damping=make_damping(cfg.damping_rule, cfg.drop, cfg.lambda_min),
            step_length=_step_length(cfg),
            guard=make_guard(cfg.warm_start_guard),
            solver=make_solver(cfg.solver, cfg.tolerances()),
            sampler=make_sampler(cfg.curvature_size, cfg.curvature_patience, cfg.curvature_growth),
            objective=make_objective(cfg.weight_cost_rule, cfg.weight_cost, n_weights, train_size),
            merit=ValidationMerit(cfg.use_merit, cfg.merit_size),
            forcing=make_forcing(cfg.forcing, cfg.forcing_eta0, cfg.forcing_power),
            scaling=pc.Scaling(cfg.preconditioner),
            acceleration=make_acceleration(cfg.acceleration, cfg.acceleration_max),
            d=None,
        )

    def state_dict(self, warm_start: bool = True) -> dict[str, Any]:
        """Tensors and scalars to resume exactly (``warm_start``: with ``d``; :class:`shf.SHF`
        keeps ``d`` per parameter in ``torch.optim``'s state instead)."""
        out: dict[str, Any] = {
            "lam": self.lam, "gamma": self.gamma, "maxiter": self.maxiter,
            "damping": self.damping.state_dict(),
            "g1_norm": self.forcing.state_dict()["g1_norm"],
            "curvature": self.sampler.state_dict(),
            "scaling": self.scaling.state_dict(),
        }  # fmt: skip
        if warm_start:
            out["d"] = self.d
        return out

    def load_state_dict(self, s: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (or from the keys of older ones)."""
        self.lam, self.gamma, self.maxiter, self.d = s["lam"], s["gamma"], s["maxiter"], s["d"]
        # saved before the damping was a part: Nielsen's nu at the top level
        self.damping.load_state_dict(s.get("damping", {"nu": s.get("nu", 2.0)}))
        self.forcing.load_state_dict({"g1_norm": s.get("g1_norm")})
        # shf.SHF saved B11's rows as "curvature_plateau", and only when they grow
        self.sampler.load_state_dict(s.get("curvature", s.get("curvature_plateau")))
        self.scaling.load_state_dict(s.get("scaling", {}))


def _step_length(cfg: SHFConfig) -> StepLength:
    """The step-length part: Armijo (B8's model step); with B23's trust region, Armijo's test at
    ``s = 1`` alone (the step is taken whole or refused, and the radius shrinks)."""
    if cfg.damping_rule == "trust-region":
        return StepLength(cfg.alpha, 0)
    return make_step_length(cfg.step_rule, cfg.alpha, cfg.max_backtracks, cfg.step_max)


@dataclass
class StepInfo:
    """What happened in one HF iteration (one line of the metrics file).

    The solver's fields are named the same for LSMR and CG (``solver`` says which).
    The batch-schedule fields (``val_loss`` onwards) are filled by :class:`shf.SHF`'s
    ``step``, which also runs Alg. 2 and the growth rule; :func:`shf_step` leaves them
    ``None``.
    """

    n: int
    loss: float
    loss_new: float
    lam: float
    lam_next: float
    gamma: float
    maxiter: int
    solver_iterations: int
    solver_stop: SolveStop
    merit_evaluations: int
    rho: float
    model_change: float
    step: float
    accepted: bool
    direction_norm: float
    solver: str = "lsmr"
    model_step: float = math.nan
    """``s* = -g^T d / ||A d||^2`` (computed with ``step_rule = "model"``, else NaN)."""
    solver_best: int | None = None
    """The solver iteration of the returned direction (the best merit's, or the last)."""
    val_loss_new: float | None = None
    """``f(w_new; X_val)`` (the model's loss) when the merit already evaluated it, else None."""
    val_loss: float | None = None
    """``f(w_new; X_val)``, the validation loss the growth rule reads (given a validation set)."""
    n_hat: int | None = None
    """Alg. 2's prediction at the new weights on the same batch (dynamic schedule)."""
    r_rel: float | None = None
    """The growth rule's relative validation progress over its window (None at first)."""
    n_next: int | None = None
    """The batch size for the next iteration."""
    maxiter_next: int | None = None
    """The solver's iteration cap for the next iteration."""
    curvature_rows: int | None = None
    """The batch rows the curvature products used (B7, B11; None: the whole batch)."""
    warm_start: bool | None = None
    """Whether the solver started from the warm start ``gamma d`` (None: there was none; False:
    B14's guard dropped it)."""
    per_example: str | None = None
    """How the per-example statistics (preconditioner, Alg. 2) were computed: ``"hand-written"``
    (the model's own products), ``"layers"`` (per-layer rules, shf.curvature.per_example) or
    ``"vmap"`` (torch.func's per-example gradients, the fallback); None: none yet."""
    acceleration: float = math.nan
    """B22's ``2 ||a|| / ||d||`` (NaN: no geodesic acceleration); the step was refused when it
    exceeded ``acceleration_max``."""
    radius: float = math.nan
    """B23's trust radius on ``||d / c||`` for this step (NaN: no trust region)."""
    regime: str | None = None
    """``"stochastic"`` or ``"full-batch"`` (B17, :mod:`shf.optim.regime`), set by :class:`shf.SHF`."""
    times: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of plain values (the stop reason as its string: records go into
        checkpoints, which ``torch.load(weights_only=True)`` reads as data, without shf's classes)."""
        out = asdict(self)
        out["solver_stop"] = str(self.solver_stop)
        return out


class Clock:
    """Seconds per part of an HF iteration (``StepInfo.times``): ``with clock("precond"): ...``
    adds the block's time to that part; ``total`` is set by :meth:`done`."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.times[part] = self.times.get(part, 0.0) + time.perf_counter() - t

    def done(self) -> dict[str, float]:
        self.times["total"] = time.perf_counter() - self.start
        return self.times


@dataclass
class Direction:
    """What the inner solve gave: ``d`` (its last solve's result), the iterations of every solve,
    whether it started warm, and the undamped model along ``d`` (NaN when ``d`` is not finite)."""

    solved: SolveResult
    iterations: int
    warm: bool | None
    finite: bool = False
    slope: float = math.nan
    curv: float = math.nan
    change: float = math.nan

    @property
    def d(self) -> list[Tensor]:
        return self.solved.d


def _agreement(model: CurvatureModel) -> Agree | None:
    """Data-parallel (shf.curvature.sharded): the ranks agree on every time-based decision."""
    comm = getattr(model, "collectives", None)
    return cast(Agree, comm.any) if comm is not None else None


def _direction(
    state: SHFState, system: System, stops: Stops, q: QuadraticModel, w: list[Tensor], clock: Clock
) -> Direction:
    """Solve from ``x0 = gamma d`` (§4.5; B14's guard may start from 0, or solve again from 0),
    then evaluate the undamped model along the direction."""
    agree, merit = stops.agree, stops.merit

    def merit_seconds() -> float:
        return merit.seconds if isinstance(merit, MeritAt) else 0.0

    def solve(x0: list[Tensor]) -> SolveResult:
        before = merit_seconds()
        with clock("solver"):
            # Solve (A^T A + lambda^2 I) d = A^T b with LSMR(d, A, b, lambda, c; maxiter, atol, ftol, phi)
            r = state.solver.solve(system, x0, stops)
        clock.times["merit"] = merit_seconds()
        clock.times["solver"] -= merit_seconds() - before  # the merit's time is its own part
        clock.times["products"] = system.timed.seconds  # part of "solver": the products alone
        # phi(d) is f(w + d; X_val) unless the merit read a subsample (B5)
        on_val = isinstance(merit, MeritAt) and merit.on_val
        return r if on_val else dataclasses.replace(r, merit_of_d=None)

    def negative(change: Callable[[], float]) -> Callable[[], bool]:
        """Whether the model's change ``q(d) < 0`` (agreed by the ranks), computed when asked."""
        return lambda: not any_rank(not change() < 0.0, agree)

    def direction(solved: SolveResult, iterations: int, warm: bool | None) -> Direction:
        out = Direction(solved, iterations, warm)
        with clock("rho"):
            if tl.all_finite(out.d):
                # q(d) = 1/2 d^T A^T A d - d^T A^T b, the undamped model (NOTES item 10)
                out.finite = True
                out.slope, out.curv, out.change = q.along(out.d)
        return out

    # x0 <- gamma d (§4.5), or 0 where B14's guard refuses it
    d0 = state.d
    x0, warm = (d0, True) if d0 is not None else (tl.zeros_like(w), None)
    if d0 is not None and not state.guard.keeps_start(negative(lambda: q.along(d0)[2])):
        x0, warm = tl.zeros_like(w), False
    solved = solve(cast(list[Tensor], x0))
    out = direction(solved, solved.iterations, warm)
    if out.finite and state.guard.solves_again(warm, negative(lambda: out.change)):
        # Beyond the paper (docs/deviations.md B14, retry): solve again from 0.
        solved = solve(cast(list[Tensor], tl.zeros_like(w)))
        out = direction(solved, out.iterations + solved.iterations, False)
    return out


def _step(
    state: SHFState, objective: ObjectiveAt, w: list[Tensor], p: Direction, f_new: float, lr: float,
    flat: bool = False,
) -> tuple[list[Tensor], bool, float, float, float, bool]:
    """``(w_new, accepted, s, f(w_new), s*, undone)``: the step length along ``d`` (Armijo from
    ``s = 1``, B8's model step; ``s = 1`` where B21 judged the step at ``f``'s round-off,
    ``flat``), ``lr`` (G9), and a step whose weights are not finite undone."""
    accepted, step, loss_new, model_step = False, 0.0, objective.f0, math.nan
    if flat:
        # Beyond the paper (B21): below f's round-off Armijo's test is noise; the whole step
        accepted, step, loss_new = True, 1.0, f_new
    elif p.finite:
        along = lambda s: objective(tl.axpy(s, p.d, w))  # noqa: E731  (f(w + s d) on the batch)
        ls, model_step = state.step_length.search(along, objective.f0, p.slope, p.curv, f_new)
        accepted, step, loss_new = ls.accepted, ls.step, ls.f_new
    if accepted and lr != 1.0:
        # Beyond the paper (docs/deviations.md G9): torch.optim's lr scales the step taken
        step = lr * step
        loss_new = objective(tl.axpy(step, p.d, w))
    # w <- w + s d
    w_new = cast(list[Tensor], tl.axpy(step, p.d, w) if accepted else tl.clone(w))
    undone = accepted and not tl.all_finite(w_new)
    if undone:  # never write NaN weights
        accepted, step, loss_new, w_new = False, 0.0, objective.f0, cast(list[Tensor], tl.clone(w))
    return w_new, accepted, step, loss_new, model_step, undone


def shf_step(
    model: CurvatureModel,
    w: list[Tensor],
    X: Inputs,
    state: SHFState,
    cfg: SHFConfig,
    X_val: Inputs | None = None,
    generator: torch.Generator | None = None,
    *,
    Y: Tensor | None = None,
    Y_val: Tensor | None = None,
    deadline: float | None = None,
    lr: float = 1.0,
) -> tuple[list[Tensor], StepInfo]:
    """One HF iteration of Alg. 1 on the mini-batch ``(X, Y)``; updates ``state`` in place.

    ``lr`` (beyond the paper, docs/deviations.md G9: ``torch.optim``'s learning rate, which
    LR schedulers set): the step taken is ``w + lr s d`` with ``s`` the line search's step
    length; ``rho``, the damping and the warm start still see ``d`` and ``s``. 1.0 (the
    default) is the paper's step, computed exactly as without it.

    ``deadline`` (a ``time.perf_counter()`` value): the solver stops at the first iteration
    that ends past it (stop reason ``max_time``, the best iterate so far), so a time limit is
    kept to within one Krylov iteration plus the step's fixed work.

    ``Y``/``Y_val`` are the targets of the batch and of the validation set (``None``:
    the inputs, as for the paper's autoencoders).

    Returns the new weights (a new list; ``w`` is not modified) and a :class:`StepInfo`.
    A direction or loss that is NaN/Inf is rejected: the weights stay as they were,
    ``lambda`` is raised as for ``rho < 1/4`` and the warm start is reset.
    """
    clock = Clock()
    lam, agree, n = state.lam, _agreement(model), bt.rows(X)
    with clock("forward"):
        # A <- grad R(w; X); b <- -R(w; X); f0 <- f(w; X) (eq. 6; with B10's weight cost)
        A = model.jacobian(w, X, Y)
        objective = state.objective.at(model, A, w, X, Y)
        # Beyond the paper (B7, B11): the curvature on the batch's first n_c rows only
        n_c = state.sampler.rows(n)
        rows = slice(0, n_c)
        A_c = A if n_c is None else model.jacobian(w, bt.take(X, rows), None if Y is None else Y[rows])
    # A batch whose loss or residual is not finite (on any rank): no step, the state is kept
    if any_rank(not (math.isfinite(objective.f0) and tl.all_finite(A.residual)), agree) or (
        A_c is not A and any_rank(not tl.all_finite(A_c.residual), agree)
    ):
        return _skipped(w, n, objective.f0, state, cfg, clock)
    with clock("precond"):
        # c <- Precon(w; X)  (Alg. 3, §4.4)
        c = state.scaling(A_c, lam, generator)
    if c is not None and not c.finite():
        return _skipped(w, n, objective.f0, state, cfg, clock)
    subset = A_c is not A  # then the gradient is the whole batch's (B7), not A_c's
    with clock("gradient"):
        # grad f(w; X) on the whole batch (a backward pass), where B3's forcing bound or B7's
        # subset reads it (computed once; the quadratic model reads it too)
        bound = state.forcing.bound(objective.gradient, c)  # B3's forcing bound (None: none)
        g_batch = objective.gradient() if subset else None
    # phi(d) := f(w + d; X_val) (eq. 20; B5: a subsample)
    stops = Stops(state.maxiter, state.merit.at(model, w, X_val, Y_val), bound, deadline, agree)
    system = System(A_c, TimedOperator(A_c), -A_c.residual, lam, c, w, g_batch, objective.wc, subset)
    radius = math.nan
    if state.damping.sized:
        with clock("damping"):
            # Beyond the paper (B23): lambda for the trust region's radius on ||d / c|| (Moré 1978)
            start = _scaled_norm(w, c)  # ||w / c||, the first radius's scale
            assert isinstance(state.solver, DirectSolver)  # SHFConfig refuses another solver
            lam = state.damping.choose(lam, functools.partial(state.solver.matrix, system), start)
            radius = state.damping.radius
        system = dataclasses.replace(system, lam=lam)
    # d <- the damped Gauss-Newton direction from gamma d (Alg. 6; B14's guard)
    q = QuadraticModel(objective, A_c)
    p = _direction(state, system, stops, q, w, clock)
    accel = Accelerated()
    if p.finite and cfg.acceleration != "none":  # the paper's step: no part timed, no work
        with clock("acceleration"):
            # Beyond the paper (B22): d <- d + a/2, a the geodesic acceleration (refused if 2|a|/|d| > alpha)
            accel = state.acceleration(state.solver, system, p.d, state.maxiter)
            if accel.a is not None and not accel.refused:
                p = _accelerated(p, accel.a, q)
            elif accel.refused:
                p = dataclasses.replace(p, finite=False)  # no step; lambda grows as for rho < 0
    with clock("rho"):
        # rho <- (f(w + d) - f(w)) / q(d)  (§4.2)
        f_new = objective(tl.add(w, p.d)) if p.finite else math.inf
        # Beyond the paper (B21): a change of f the model puts below f's round-off counts as rho = 1
        flat = p.finite and below_roundoff(f_new, objective.f0, p.change, cfg.roundoff)
        rho = 1.0 if flat else reduction_ratio(f_new, objective.f0, p.change)
    with clock("linesearch"):
        # s <- Armijo backtracking from 1 (B8: the model's step; B21: 1); w <- w + s d
        w_new, accepted, step, loss_new, model_step, undone = _step(state, objective, w, p, f_new, lr, flat)
    # d <- gamma d (not from a rejected direction, or one B14's reset drops); gamma <- min(1.002 gamma, 0.95)
    gamma = state.gamma
    seeds = accepted and not state.damping.sized and state.guard.seeds_next(p.warm, p.change < 0.0)
    state.d = cast(list[Tensor], tl.scale(gamma, p.d)) if seeds else None
    state.gamma = min(cfg.gamma_growth * gamma, cfg.gamma_max)
    # lambda <- lambda/drop if rho < 1/4; drop*lambda if rho > 3/4 (the chosen rule, B1, B2); a
    # step undone for non-finite weights raises it at least as the paper's rule would
    scaled = _scaled_norm(p.d, c) if state.damping.sized and p.finite else math.nan  # B23's ||d / c||
    trial = Trial(objective.f0, f_new, p.slope, accepted, scaled)
    state.lam = state.damping.update(lam, rho, failed=undone, trial=trial)
    # With s = 1 the new weights are exactly the w + d the merit evaluated: f(w_new; X_val) is known
    known = accepted and step == 1.0 and p.solved.merit_of_d is not None
    return w_new, StepInfo(
        n=n, loss=objective.f0, loss_new=loss_new, lam=lam, lam_next=state.lam, gamma=gamma,
        maxiter=state.maxiter, solver_iterations=p.iterations, solver_stop=p.solved.stop,
        merit_evaluations=p.solved.merit_evaluations, solver=cfg.solver, solver_best=p.solved.best,
        model_step=model_step, rho=rho if math.isfinite(rho) else math.nan, model_change=p.change, step=step,
        accepted=accepted, direction_norm=tl.norm(p.d) if p.finite else math.nan,
        val_loss_new=p.solved.merit_of_d if known else None, curvature_rows=n_c if subset else None,
        warm_start=p.warm, acceleration=accel.ratio, radius=radius, times=clock.done(),
    )  # fmt: skip


def _scaled_norm(x: list[Tensor], c: ColumnScaling | None) -> float:
    """``||x / c||``, the length of ``x`` in the solver's scaled variable (B23's radius is on it)."""
    return tl.norm(x if c is None else tl.div(x, c.c))


def _accelerated(p: Direction, a: list[Tensor], q: QuadraticModel) -> Direction:
    """B22: the direction ``d + a/2`` with the undamped model along it (``rho`` and the line
    search read it)."""
    d = cast(list[Tensor], tl.axpy(0.5, a, p.d))
    out = Direction(dataclasses.replace(p.solved, d=d), p.iterations, p.warm)
    if tl.all_finite(d):
        # q(d + a/2), the undamped model along the corrected step
        out.finite = True
        out.slope, out.curv, out.change = q.along(d)
    return out


def _skipped(
    w: list[Tensor], n: int, f0: float, state: SHFState, cfg: SHFConfig, clock: Clock
) -> tuple[list[Tensor], StepInfo]:
    """A batch whose loss, residual or preconditioner is not finite (bad data, or weights that
    overflow on it): no step, the state kept; the run goes on with the next batch."""
    return cast(list[Tensor], tl.clone(w)), StepInfo(
        n=n, loss=f0, loss_new=f0, lam=state.lam, lam_next=state.lam, gamma=state.gamma,
        maxiter=state.maxiter, solver_iterations=0, solver_stop=NOT_FINITE_BATCH, merit_evaluations=0,
        rho=math.nan, model_change=math.nan, step=0.0, accepted=False, direction_norm=math.nan,
        solver=cfg.solver, times=clock.done(),
    )  # fmt: skip
