"""SHF's hyper-parameters in small typed groups (what :class:`shf.SHF` and :func:`shf.fit` take).

Each group is one concern of Alg. 1; together they are exactly the fields of the flat
:class:`shf.optim.step.SHFConfig` (the ``[optimizer]`` section of a configuration file,
the paper's Table 1 row), to which :func:`to_config` maps them and :func:`from_config`
maps back. The groups' defaults are the paper's CURVES settings (§6) with the measured-best
settings beyond the paper, :data:`TUNED`, on top (``to_config()`` equals
``SHFConfig(**TUNED)``); :class:`SHFConfig`'s own defaults stay the paper's, so the paper's
presets and ``shf.SHFConfig()`` reproduce it exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from shf.errors import ConfigError
from shf.optim.step import SHFConfig


@dataclass(frozen=True)
class Damping:
    """Levenberg-Marquardt damping (§4.2): start at ``lambda1`` (LSMR's ``damp``, the system
    is ``A^T A + lambda^2 I``); ``rule = "paper"``: ``lambda <- lambda/drop`` if ``rho < 1/4``,
    ``drop lambda`` if ``rho > 3/4``; ``rule = "nielsen"`` (beyond the paper): Nielsen's
    continuous update of ``lambda^2`` (:func:`shf.optim.damping.nielsen`); ``lambda_min``: a floor
    under ``lambda`` (beyond the paper; 0: none); ``weight_cost``: an L2 weight cost ``c``, the
    objective ``L + c/2 ||w||^2`` and ``c I`` added to the curvature (beyond the paper, B10;
    0, the paper's, is none; Martens' is 2e-5; ``torch.optim``'s coupled ``weight_decay = c``,
    applied inside the Newton system). TUNED's is 1e-4: with B14 ``"reset"`` and B15 it lowered
    the test error on USPS, MNIST-t10k and CURVES (``docs/results/goal``, "B10 in the
    defaults"); with the validation merit inside LSMR it had cost on CURVES and MNIST-t10k."""

    lambda1: float = 5.0
    drop: float = 0.99
    rule: str = "nielsen"
    lambda_min: float = 0.05
    weight_cost: float = 1e-4


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
    quadratic model's minimiser along the direction when it is beyond 1 (at most ``step_max``)."""

    alpha: float = 1e-4
    max_backtracks: int = 30
    step_rule: str = "unit"
    step_max: float = 4.0


@dataclass(frozen=True)
class Init:
    """The sparse initialisation of eq. (9): ``m0`` nonzero incoming weights per unit, each
    ``N(0, sigma)``. Used where shf initialises a network (the paper's experiments)."""

    m0: int = 20
    sigma: float = 1.5


TUNED: dict[str, Any] = {
    "damping_rule": "nielsen",
    "lambda_min": 0.05,
    "recover": 20,
    "maxiter1": 40,
    "maxiter_max": 100,
    "forcing": "gradient",
    "merit_size": 200,
    "curvature_size": 250,
    "n_max_fraction": 0.3,
    "use_merit": False,
    "warm_start_guard": "reset",
    "weight_cost": 1e-4,
}
"""The measured-best settings beyond the paper (issue 11; ``docs/results/ablations2`` and, for
B10 and B13-B15, ``docs/results/goal``): the keys
of :class:`SHFConfig` whose values differ from the paper's. They are the defaults of
:class:`shf.SHF`, :func:`shf.fit` and ``shf train``'s default preset, and ``shf compare``'s
``shf-tuned`` overlays them on any preset; the paper's presets keep the paper's values."""

# (group field -> SHFConfig field) where the names differ.
_RENAMED: dict[type, dict[str, str]] = {
    Damping: {"rule": "damping_rule"},
    WarmStart: {"growth": "gamma_growth", "guard": "warm_start_guard"},
    Solver: {"kind": "solver"},
    Batch: {"growth": "batch_growth", "schedule": "batch_schedule", "test": "batch_test"},
}
GROUPS: tuple[type, ...] = (Damping, WarmStart, Solver, Batch, LineSearch, Init)


def to_config(
    *,
    damping: Damping | None = None,
    warm_start: WarmStart | None = None,
    solver: Solver | None = None,
    batch: Batch | None = None,
    line_search: LineSearch | None = None,
    init: Init | None = None,
    preconditioner: str = "chapelle-erhan",
) -> SHFConfig:
    """The flat, validated :class:`SHFConfig` of these groups (``None``: the group's defaults)."""
    values: dict[str, Any] = {"preconditioner": preconditioner}
    for cls, part in zip(GROUPS, (damping, warm_start, solver, batch, line_search, init)):
        part = cls() if part is None else part
        if not (isinstance(part, cls) and dataclasses.is_dataclass(part)):
            raise ConfigError(f"expected a shf.{cls.__name__}, got {type(part).__name__}")
        names = _RENAMED.get(cls, {})
        for f in dataclasses.fields(part):
            values[names.get(f.name, f.name)] = getattr(part, f.name)
    return SHFConfig(**values)


def from_config(cfg: SHFConfig) -> dict[str, Any]:
    """The groups of ``cfg`` as keyword arguments of :func:`to_config` (its inverse)."""
    out: dict[str, Any] = {"preconditioner": cfg.preconditioner}
    keys = ("damping", "warm_start", "solver", "batch", "line_search", "init")
    for key, cls in zip(keys, GROUPS):
        names = _RENAMED.get(cls, {})
        out[key] = cls(**{f.name: getattr(cfg, names.get(f.name, f.name)) for f in dataclasses.fields(cls)})
    return out
