"""Levenberg-Marquardt damping (§4.2) and the reduction ratio ``rho``.

The rules are functions (:func:`levenberg_marquardt`, :func:`nielsen`) and, for the HF
iteration, parts (:class:`DampingRule`): one object chosen once by :func:`make_damping`, which
holds the rule's own state (Nielsen's ``nu``) and its ``state_dict``. The iteration itself
carries ``lambda`` (Alg. 1's variable).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from shf.errors import ConfigError, require_choice
from shf.optim.trust import lm_parameter


def reduction_ratio(f_new: float, f_old: float, model_change: float) -> float:
    """``rho = (f(w + d) - f(w)) / q(d)`` (§4.2), ``q(d) = 1/2 d^T A^T A d - d^T A^T b``.

    ``q`` is the undamped quadratic model (NOTES item 10). A non-finite ``f_new`` or a
    model that predicts no decrease gives ``rho = -inf``, so the damping goes up.
    """
    if not (math.isfinite(f_new) and math.isfinite(model_change)) or model_change >= 0.0:
        return -math.inf
    return (f_new - f_old) / model_change


def below_roundoff(f_new: float, f_old: float, model_change: float, roundoff: float) -> bool:
    """Beyond the paper (docs/deviations.md B21): whether a step is judged at ``f``'s round-off,
    where ``rho`` is noise: the undamped model predicts a decrease ``-q(d) <= roundoff |f(w)|``
    and ``f(w + d) <= f(w) + roundoff |f(w)|``. Then the step counts as ``rho = 1`` and is taken
    whole. ``roundoff = 0`` (the paper's) never holds.

    ``roundoff`` is a relative change of ``f``: where ``f`` is a sum of squared residuals that
    cancel the data to a few digits it carries far more than machine precision of relative
    noise (1e-10 is what the full-batch regime uses)."""
    if not (roundoff > 0.0 and math.isfinite(f_new) and math.isfinite(model_change)):
        return False
    floor = roundoff * abs(f_old)
    return model_change < 0.0 and -model_change <= floor and f_new <= f_old + floor


LAMBDA_MAX = 1e10
"""A ceiling on ``lambda`` under both rules (a safeguard, docs/deviations.md: not in the paper).
A run whose steps keep failing (``rho <= 0``) would otherwise raise ``lambda`` until
``lambda^2`` overflows float32 (about 1.8e19) and the solver's right-hand side is not finite.
At 1e10 the step is ``-grad f / 1e20``, already no step at all; healthy runs stay orders of
magnitude below it, and such a run then ends on its patience, not on an overflow."""

NU_MAX = 2.0**60
"""A ceiling on Nielsen's growth factor ``nu``: doubled at every failure it would reach ``inf``
after 1024 of them, and ``0 sqrt(inf)`` is NaN when ``lambda = 0``."""


def levenberg_marquardt(lam: float, rho: float, drop: float) -> float:
    """The LM rule of §4.2 on SHF's ``lambda`` (LSMR's ``damp``, so ``lambda^2`` moves by ``drop^2``).

    ``lambda / drop`` if ``rho < 1/4`` (at most :data:`LAMBDA_MAX`), ``drop * lambda`` if
    ``rho > 3/4``, unchanged otherwise. A NaN ``rho`` counts as ``rho < 1/4``.
    """
    if not 0.0 < drop < 1.0:
        raise ConfigError(f"drop must be in (0, 1), got {drop}")
    if lam < 0.0 or not math.isfinite(lam):
        raise ConfigError(f"lambda must be finite and >= 0, got {lam}")
    if not rho >= 0.25:  # rho < 1/4, or NaN
        return min(lam / drop, LAMBDA_MAX)
    if rho > 0.75:
        return drop * lam
    return lam


DAMPING_RULES = ("paper", "nielsen", "trust-region")


def nielsen(lam: float, rho: float, nu: float) -> tuple[float, float]:
    """Nielsen's (1999) continuous damping update, on SHF's ``lambda^2`` (beyond the paper).

    With ``mu = lambda^2``: if ``rho > 0``, ``mu <- mu max(1/3, 1 - (2 rho - 1)^3)`` and
    ``nu <- 2``; else ``mu <- nu mu`` and ``nu <- 2 nu`` (at most :data:`LAMBDA_MAX` and
    :data:`NU_MAX`). A nearly exact quadratic model
    (``rho`` near 1) divides ``mu`` by 3 per iteration, where the paper's rule multiplies
    ``lambda`` by ``drop`` (0.99: ``mu`` by 0.98). Returns ``(lambda, nu)``.
    """
    if lam < 0.0 or not math.isfinite(lam):
        raise ConfigError(f"lambda must be finite and >= 0, got {lam}")
    if math.isfinite(rho) and rho > 0.0:
        factor = max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
        return lam * math.sqrt(factor), 2.0
    return min(lam * math.sqrt(nu), LAMBDA_MAX), min(2.0 * nu, NU_MAX)


@dataclass(frozen=True)
class Trial:
    """What a damping rule may read of one HF iteration's trial step ``w + d``: ``f(w)``,
    ``f(w + d)`` (``inf`` when not finite or not evaluated), the slope ``g^T d``, whether a step
    was taken, and the scaled length ``||d / c||`` (NaN: not measured)."""

    f0: float
    f_new: float
    slope: float
    accepted: bool = False
    scaled_norm: float = math.nan


class DampingRule(ABC):
    """The damping part of an HF iteration: ``lambda`` for the next iteration from ``rho``.

    ``drop``: the paper's factor (also the least growth after a step undone for non-finite
    weights, under every rule); ``lambda_min``: B2's floor under ``lambda`` (0: none, the paper's).
    A rule that chooses ``lambda`` for the iteration's own system (B23's trust region) is
    ``sized``: the HF iteration then calls :meth:`choose` with the system's dense least-squares
    problem before the solve, and solves from 0 (no warm start: the region is centred at ``w``).
    """

    name: ClassVar[str]
    sized: ClassVar[bool] = False
    radius: float = math.nan  # a sized rule's trust radius (NaN: none)

    def __init__(self, drop: float, lambda_min: float = 0.0) -> None:
        self.drop, self.lambda_min = drop, lambda_min

    @abstractmethod
    def _rule(self, lam: float, rho: float, failed: bool) -> float:
        """The rule's ``lambda`` (and its own state's update)."""

    def choose(self, lam: float, problem: Callable[[], tuple[Tensor, Tensor]], start: float) -> float:
        """``lambda`` for this iteration's system (a ``sized`` rule; the others keep ``lam``).
        ``problem()`` gives the dense ``(M, r)`` of ``min ||M y - r||^2 + lambda^2 ||y||^2`` in the
        scaled variable ``y = d / c``; ``start`` is ``||w / c||``."""
        del problem, start
        return lam

    def update(self, lam: float, rho: float, *, failed: bool = False, trial: Trial | None = None) -> float:
        """``lambda_next`` from ``lambda`` and ``rho``, updating the rule's state. ``failed``: the
        step was taken and undone (its weights were not finite): ``lambda`` grows at least as the
        paper's rule grows it on ``rho < 1/4``. ``trial``: the trial step's values (read by B23's
        trust region only). B2's floor applies last."""
        del trial
        lam_next = self._rule(lam, rho, failed)
        if failed:
            lam_next = max(lam_next, levenberg_marquardt(lam, -math.inf, self.drop))
        # Beyond the paper (docs/deviations.md B2): an optional floor under lambda
        return max(lam_next, self.lambda_min)

    def state_dict(self) -> dict[str, Any]:
        """The rule's own state (none for the paper's rule)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the paper's rule has none: an older checkpoint's ``nu``
        is ignored)."""
        del state


class PaperDamping(DampingRule):
    """§4.2: ``lambda <- lambda / drop`` if ``rho < 1/4``, ``drop lambda`` if ``rho > 3/4``."""

    name = "paper"

    def _rule(self, lam: float, rho: float, failed: bool) -> float:
        # lambda <- lambda/drop if rho < 1/4; drop*lambda if rho > 3/4
        return levenberg_marquardt(lam, rho, self.drop)


class NielsenDamping(DampingRule):
    """Beyond the paper (docs/deviations.md B1): Nielsen's continuous rule on ``lambda^2``
    (:func:`nielsen`); its growth factor ``nu`` is its state (doubled on a failed step too)."""

    name = "nielsen"

    def __init__(self, drop: float, lambda_min: float = 0.0) -> None:
        super().__init__(drop, lambda_min)
        self.nu = 2.0

    def _rule(self, lam: float, rho: float, failed: bool) -> float:
        lam_next, nu_next = nielsen(lam, rho, self.nu)
        self.nu = min(2.0 * self.nu, NU_MAX) if failed else nu_next
        return lam_next

    def state_dict(self) -> dict[str, Any]:
        return {"nu": self.nu}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.nu = float(state.get("nu", 2.0))


RADIUS_FACTOR = 1.0
"""B23's first radius is ``||w / c||`` (1 where ``w = 0``), scipy's ``trf``'s; MINPACK's default
``factor`` is 100 (``100 ||D w||``). Measured on the NIST problems (docs/results/least-squares,
"B23"): with 100 the first, nearly Gauss-Newton step of BoxBOD from start 1 lands where
``exp(-b2 x)`` underflows and ``b2``'s column vanishes (MINPACK fails there too), and the first
steps of MGH10 and MGH17 from start 1 without a scaling go astray; with 1 all three converge."""


class TrustRegion(DampingRule):
    """Beyond the paper (docs/deviations.md B23): a trust region on the scaled step ``||d / c||``
    (MINPACK's ``lmder``, Moré 1978), instead of a rule on ``lambda`` itself.

    Each HF iteration ``lambda`` is chosen so that the step's length ``||y||`` (``y = d / c``) is
    within 10% of the radius ``Delta``, or 0 where the Gauss-Newton step is shorter
    (:func:`shf.optim.trust.lm_parameter`); ``Delta`` then moves with ``rho`` and the length of the
    step solved (MINPACK's ``pnorm``):

    * ``rho <= 1/4``: ``Delta <- t min(Delta, 10 ||y||)``, ``t = 1/2``, or where ``f`` went up,
      ``t = (1/2) s / (s + (1/2) a)`` (the minimiser of the parabola through ``f(w)``, the slope
      ``s`` and ``f(w + d)``: ``a`` the relative reduction, ``s = g^T d / (2 f)``), kept in
      ``[1/10, 1/2]``, and ``t = 1/10`` where ``f`` grew a hundredfold (or is not finite);
      ``lambda^2 <- lambda^2 / t``;
    * otherwise, where ``rho >= 3/4`` or the step was Gauss-Newton's (``lambda = 0``):
      ``Delta <- 2 ||y||``, ``lambda^2 <- lambda^2 / 2``;
    * the first radius is ``||w / c||`` (:data:`RADIUS_FACTOR`), and until a step is taken it is at
      most the step's length.

    The ``lambda`` a step leaves is the next solve's first guess. A rule on ``lambda`` needs many
    iterations to follow a Jacobian whose scale changes by orders of magnitude; the radius does
    not depend on it. Needs the exact solve (B20), whose matrix the choice reads.
    """

    name = "trust-region"
    sized = True

    def __init__(self, drop: float, lambda_min: float = 0.0) -> None:
        super().__init__(drop, lambda_min)
        self.radius = math.nan  # Delta: set at the first choice
        self.norm = math.nan  # ||y|| of the last chosen step
        self.first = True  # no step taken yet (MINPACK's iter = 1)
        self.undamped = False  # the last choice was mu = 0 (before B2's floor)

    def choose(self, lam: float, problem: Callable[[], tuple[Tensor, Tensor]], start: float) -> float:
        M, r = problem()
        if not math.isfinite(self.radius):
            # Delta_1 = factor ||w / c|| (factor where w = 0)
            self.radius = RADIUS_FACTOR * start if start > 0.0 else RADIUS_FACTOR
        self.radius = max(self.radius, RADIUS_MIN)
        # lambda^2 with ||y(lambda)|| within 10% of Delta, or 0 (Moré 1978, Alg. 5.5)
        mu, self.norm = lm_parameter(M, r, self.radius, lam * lam)
        self.undamped = mu == 0.0
        if mu < self.lambda_min**2:  # B2's floor, and the length of the step it gives
            mu, self.norm = lm_parameter(M, r, math.inf, self.lambda_min**2, self.lambda_min**2)
        if self.first and math.isfinite(self.norm):
            # MINPACK: until a step is taken the radius is at most the step's length
            self.radius = min(self.radius, self.norm)
        return math.sqrt(mu)

    def update(self, lam: float, rho: float, *, failed: bool = False, trial: Trial | None = None) -> float:
        mu = lam * lam
        # ||y||: the step solved (MINPACK's pnorm), else the length the choice predicted
        norm = trial.scaled_norm if trial is not None and math.isfinite(trial.scaled_norm) else self.norm
        if failed or not rho > 0.25 or not math.isfinite(norm):
            # shrink: Delta <- t min(Delta, 10 ||y||), lambda^2 <- lambda^2 / t
            t = _shrink(trial) if not failed else 0.1
            measured = math.isfinite(norm) and norm > 0.0
            self.radius = t * (min(self.radius, norm / 0.1) if measured else self.radius)
            mu /= t
        elif self.undamped or rho >= 0.75:
            # grow: Delta <- 2 ||y||, lambda^2 <- lambda^2 / 2 (a zero step leaves Delta)
            self.radius, mu = (2.0 * norm if norm > 0.0 else self.radius), 0.5 * mu
        if trial is not None and trial.accepted and not failed:
            self.first = False
        return max(min(math.sqrt(mu), LAMBDA_MAX), self.lambda_min)

    def _rule(self, lam: float, rho: float, failed: bool) -> float:  # update is the rule
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"radius": self.radius, "norm": self.norm, "first": self.first, "undamped": self.undamped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.radius = float(state.get("radius", math.nan))
        self.norm = float(state.get("norm", math.nan))
        self.first = bool(state.get("first", True))
        self.undamped = bool(state.get("undamped", False))


RADIUS_MIN = 1e-300
"""The least radius B23 works with: a run of refusals halves it each time (and ``||y|| = 0`` would
give 0), and :func:`shf.optim.trust.lm_parameter` divides by it."""


def _shrink(trial: Trial | None) -> float:
    """MINPACK's factor ``t`` in ``[1/10, 1/2]`` for a step that reduced ``f`` by less than a
    quarter of the model's prediction (:class:`TrustRegion`)."""
    if trial is None or not (math.isfinite(trial.f_new) and math.isfinite(trial.f0)) or trial.f0 <= 0.0:
        return 0.1
    if trial.f_new >= 100.0 * trial.f0:  # ||r|| grew tenfold
        return 0.1
    actual = 1.0 - trial.f_new / trial.f0  # MINPACK's actred
    slope = trial.slope / (2.0 * trial.f0)  # MINPACK's dirder (f = 1/2 ||r||^2)
    if actual >= 0.0 or not slope < 0.0:  # f fell (or no descent slope to fit a parabola to)
        return 0.5
    # the parabola through f(w), its slope and f(w + d): its minimiser, in [1/10, 1/2]
    return min(max(0.5 * slope / (slope + 0.5 * actual), 0.1), 0.5)


def make_damping(rule: str, drop: float, lambda_min: float = 0.0) -> DampingRule:
    """The damping part named ``rule`` (one of :data:`DAMPING_RULES`)."""
    parts: dict[str, type[DampingRule]] = {
        "paper": PaperDamping, "nielsen": NielsenDamping, "trust-region": TrustRegion,
    }  # fmt: skip
    require_choice("damping_rule", rule, DAMPING_RULES)
    return parts[rule](drop, lambda_min)
