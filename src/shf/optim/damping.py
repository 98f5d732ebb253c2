"""Levenberg-Marquardt damping (§4.2) and the reduction ratio ``rho``."""

from __future__ import annotations

import math

from shf.errors import ConfigError


def reduction_ratio(f_new: float, f_old: float, model_change: float) -> float:
    """``rho = (f(w + d) - f(w)) / q(d)`` (§4.2), ``q(d) = 1/2 d^T A^T A d - d^T A^T b``.

    ``q`` is the undamped quadratic model (NOTES item 10). A non-finite ``f_new`` or a
    model that predicts no decrease gives ``rho = -inf``, so the damping goes up.
    """
    if not (math.isfinite(f_new) and math.isfinite(model_change)) or model_change >= 0.0:
        return -math.inf
    return (f_new - f_old) / model_change


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
