"""SHF's settings: the typed groups that are its API, and the paper's settings as a named preset.

Each group is one concern of Alg. 1 (:class:`Damping`, :class:`WarmStart`, :class:`Solver`,
:class:`Batch`, :class:`LineSearch`, :class:`Init`); their defaults are shf's one set of defaults:
the paper's CURVES settings (§6) with the measured-best settings beyond the paper on top
(``docs/deviations.md``; ``shf.optim.hyper.TUNED`` lists where they differ from the paper). The flat
:class:`shf.optim.step.SHFConfig` (the ``[optimizer]`` section of a configuration file) takes its
defaults from these groups; :data:`PAPER_VALUES` are the paper's own values of the settings whose
defaults go beyond it, so that ``SHFConfig.paper()`` (``shf.PAPER``) is the paper's CURVES run
exactly. The groups sit below the HF iteration, which reads only the flat configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PRECONDITIONER = "chapelle-erhan"
"""The default preconditioner (Alg. 3), the paper's."""


@dataclass(frozen=True)
class Damping:
    """Levenberg-Marquardt damping (§4.2): start at ``lambda1`` (LSMR's ``damp``, the system
    is ``A^T A + lambda^2 I``); ``rule = "auto"`` (the default): Nielsen's rule, and in the
    full-batch regime with the exact solve B23's trust region (a rule given by name is kept, so
    ``rule = "nielsen"`` keeps Nielsen's there too); ``rule = "paper"``: ``lambda <- lambda/drop``
    if ``rho < 1/4``, ``drop lambda`` if ``rho > 3/4``; ``rule = "nielsen"`` (beyond the paper): Nielsen's
    continuous update of ``lambda^2`` (:func:`shf.optim.damping.nielsen`); ``rule = "trust-region"``
    (beyond the paper, B23): ``lambda`` chosen per HF iteration so that the scaled step ``||d / c||``
    meets a radius that moves with ``rho`` (MINPACK's rule, :class:`shf.optim.damping.TrustRegion`;
    the exact solve only, no warm start, no backtracking); ``lambda_min``: a floor
    under ``lambda`` (beyond the paper; 0: none); ``weight_cost``: an L2 weight cost ``c``, the
    objective ``L + c/2 ||w||^2`` and ``c I`` added to the curvature (beyond the paper, B10;
    0, the paper's, is none; Martens' is 2e-5; ``torch.optim``'s coupled ``weight_decay = c``,
    applied inside the Newton system). TUNED's is 1e-4: with B14 ``"reset"`` and B15 it lowered
    the test error on USPS, MNIST-t10k and CURVES (``docs/results/goal``, "B10 in the
    defaults"); with the validation merit inside LSMR it had cost on CURVES and MNIST-t10k.
    ``weight_cost_rule``: ``"constant"`` (``c = weight_cost``) or, beyond the paper (B16),
    ``"per-example"``: ``c = weight_cost (P / N) / 100`` with ``P`` the weights and ``N`` the
    training examples (:class:`shf.optim.objective.WeightsPerExample`), or ``"per-example-floor"``
    (B24, the default): the larger of that and ``weight_cost``, at most ``B24_MAX_FACTOR`` times
    ``weight_cost`` (the constant where ``N`` is not known; among the presets only the MNIST-t10k
    autoencoder, 355 weights per example, is above 100).
    ``roundoff``: beyond the paper (B21), a step whose undamped model predicts a change of ``f``
    below ``roundoff |f|`` is judged by ``f`` alone (the full-batch regime's is 1e-10; 0, the
    default, is never)."""

    lambda1: float = 5.0
    drop: float = 0.99
    rule: str = "auto"
    lambda_min: float = 0.05
    weight_cost: float = 1e-4
    weight_cost_rule: str = "per-example-floor"
    roundoff: float = 0.0


@dataclass(frozen=True)
class WarmStart:
    """LSMR starts from ``gamma d_prev``; ``gamma <- min(growth gamma, gamma_max)`` (§4.5).

    ``guard``: beyond the paper (B14), ``"model"`` starts from 0 instead when ``gamma d_prev``
    does not decrease the undamped quadratic model on the new batch, ``"retry"`` solves again
    from 0 when the direction found from it does not, ``"reset"`` (TUNED's) takes or refuses
    that direction as usual but does not warm-start the next solve from it; ``"none"``: the
    paper's."""

    gamma1: float = 0.7
    growth: float = 1.002
    gamma_max: float = 0.95
    guard: str = "reset"


@dataclass(frozen=True)
class Solver:
    """The inner solver and Alg. 6's stopping rules.

    ``kind``: ``lsmr`` (Alg. 6) or ``cg`` (the same damped, preconditioned system by CG;
    an ablation). ``maxiter1``: the iteration cap at the first HF iteration (it grows with
    the batch). ``atol``: LSMR's ``||Abar^T rbar|| <= atol ||Abar|| ||rbar||`` test (CG:
    ``||r|| <= atol ||rhs||``). ``ftol``, ``miniter``, ``recover``, ``first_check``,
    ``check_growth``: the validation-merit rules (Alg. 6). ``use_merit``: evaluate the
    merit at all. Beyond the paper (``docs/deviations.md``): ``forcing`` (``"gradient"``: also
    stop at an inexact-Newton forcing term ``forcing_eta0 min(1, (||g_i||/||g_1||)^forcing_power)``,
    B3), ``maxiter_rule`` (``"merit"``: the next cap is 1.5 times the iteration of the best
    merit, B4) and ``maxiter_max`` (a bound on the cap), ``merit_size`` (the merit on that
    many validation rows, B5).
    """

    kind: str = "lsmr"
    maxiter1: int = 40
    atol: float = 1e-8
    ftol: float = 1e-7
    miniter: int = 50
    recover: int = 20
    first_check: int = 5
    check_growth: float = 1.25
    use_merit: bool = False
    forcing: str = "gradient"
    forcing_eta0: float = 0.5
    forcing_power: float = 0.5
    maxiter_rule: str = "paper"
    maxiter_max: int | None = 100
    merit_size: int | None = 200


@dataclass(frozen=True)
class Batch:
    """The mini-batch schedule: ``n1`` examples at first, at most ``n_max``; ``schedule``
    ``dynamic`` (Alg. 2 with tolerance ``theta`` and the growth rule: by ``growth`` when the
    validation loss improved by less than ``rrel_tol`` over ``window`` iterations) or
    ``fixed`` (``n1`` throughout); ``test``: Alg. 2's variance test with the squared gradient
    norm (``"squared"``, NOTES item 6) or eq. (13)'s literal unsquared one (``"paper"``, B6);
    ``curvature_size``: the curvature products on that many of the batch's rows only, the
    gradient on all of them (B7; ``None``: all); ``curvature_patience``: grow that curvature
    batch by ``curvature_growth`` (up to ``n_max``) after so many HF iterations without progress
    in the validation loss (B11, :class:`shf.optim.plateau.PlateauGrowth`; ``None``: fixed);
    ``n_max_fraction``: the batch is also at most that fraction of the training set, when its
    size is known (B13; ``None``: ``n_max`` alone)."""

    n1: int = 250
    n_max: int = 2500
    theta: float = 0.5
    growth: float = 1.005
    rrel_tol: float = 0.005
    window: int = 5
    schedule: str = "dynamic"
    test: str = "squared"
    curvature_size: int | None = 250
    curvature_patience: int | None = None
    curvature_growth: float = 2.0
    n_max_fraction: float | None = 0.3


@dataclass(frozen=True)
class LineSearch:
    """Armijo backtracking (§4): sufficient-decrease constant ``alpha``, at most
    ``max_backtracks`` halvings; ``step_rule = "model"`` (beyond the paper, B8) first tries the
    quadratic model's minimiser along the direction when it is beyond 1 (at most ``step_max``).
    ``acceleration = "geodesic"`` (beyond the paper, B22; off in every regime): the step is
    ``d + a/2`` with Transtrum & Sethna's geodesic acceleration ``a``
    (:mod:`shf.optim.accel`), refused when ``2 ||a|| / ||d|| > acceleration_max``."""

    alpha: float = 1e-4
    max_backtracks: int = 30
    step_rule: str = "unit"
    step_max: float = 4.0
    acceleration: str = "none"
    acceleration_max: float = 0.75


@dataclass(frozen=True)
class Init:
    """The sparse initialisation of eq. (9): ``m0`` nonzero incoming weights per unit, each
    ``N(0, sigma)``. Used where shf initialises a network (the paper's experiments)."""

    m0: int = 20
    sigma: float = 1.5


PAPER_VALUES: dict[str, Any] = {
    "maxiter1": 200,  # §6: 200 at the first HF iteration on CURVES
    "recover": 100,  # NOTES: Alg. 6's patience for the merit to recover
    "use_merit": True,  # Alg. 6: the validation merit inside LSMR
    "damping_rule": "paper",  # §4.2: lambda/drop or drop lambda
    "lambda_min": 0.0,  # no floor
    "forcing": "none",  # atol alone
    "maxiter_max": None,  # §4.5: the cap scales with the batch, unbounded
    "merit_size": None,  # the merit on the whole validation set
    "curvature_size": None,  # the curvature on the whole batch
    "weight_cost": 0.0,  # no weight cost
    "n_max_fraction": None,  # n_max alone
    "warm_start_guard": "none",  # LSMR always starts from gamma d (§4.5)
}
"""The paper's values (Alg. 1, 2, 6, §4-6) of the :class:`shf.optim.step.SHFConfig` keys whose
defaults go beyond the paper: ``SHFConfig.paper()`` is ``SHFConfig(**PAPER_VALUES)``, the paper's
CURVES run; the paper's presets (``curves``, ``usps``, ``mnist``) set them too."""

ADDED_LATER: dict[str, Any] = {
    "weight_cost_rule": "constant",  # before B16's rules existed: c = weight_cost
}
"""What a stored run or checkpoint that lacks one of these keys did, where that is neither the
paper's value nor today's default: such a run was made before the key existed. Other missing keys
read :data:`PAPER_VALUES` (each option kept shf's behaviour when it was added). The paper has no
weight cost, so ``weight_cost_rule`` is moot there and ``SHFConfig.paper()`` keeps the default."""

STORED_DEFAULTS: dict[str, Any] = {**PAPER_VALUES, **ADDED_LATER}
"""The value of an ``[optimizer]`` key that a stored run's configuration or a checkpoint lacks
(the run was made before the key existed): :data:`PAPER_VALUES` with :data:`ADDED_LATER` on top;
a key in neither has the default it was added with."""
