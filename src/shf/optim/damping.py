"""Levenberg-Marquardt damping (§4.2) and the reduction ratio ``rho``.

The rules are functions (:func:`levenberg_marquardt`, :func:`nielsen`) and, for the HF
iteration, parts (:class:`DampingRule`): one object chosen once by :func:`make_damping`, which
holds the rule's own state (Nielsen's ``nu``) and its ``state_dict``. The iteration itself
carries ``lambda`` (Alg. 1's variable).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from shf.errors import ConfigError, require_choice


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


DAMPING_RULES = ("paper", "nielsen")


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


class DampingRule(ABC):
    """The damping part of an HF iteration: ``lambda`` for the next iteration from ``rho``.

    ``drop``: the paper's factor (also the least growth after a step undone for non-finite
    weights, under every rule); ``lambda_min``: B2's floor under ``lambda`` (0: none, the paper's).
    """

    name: ClassVar[str]

    def __init__(self, drop: float, lambda_min: float = 0.0) -> None:
        self.drop, self.lambda_min = drop, lambda_min

    @abstractmethod
    def _rule(self, lam: float, rho: float, failed: bool) -> float:
        """The rule's ``lambda`` (and its own state's update)."""

    def update(self, lam: float, rho: float, *, failed: bool = False) -> float:
        """``lambda_next`` from ``lambda`` and ``rho``, updating the rule's state. ``failed``: the
        step was taken and undone (its weights were not finite): ``lambda`` grows at least as the
        paper's rule grows it on ``rho < 1/4``. B2's floor applies last."""
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


def make_damping(rule: str, drop: float, lambda_min: float = 0.0) -> DampingRule:
    """The damping part named ``rule`` (one of :data:`DAMPING_RULES`)."""
    parts: dict[str, type[DampingRule]] = {"paper": PaperDamping, "nielsen": NielsenDamping}
    require_choice("damping_rule", rule, DAMPING_RULES)
    return parts[rule](drop, lambda_min)
