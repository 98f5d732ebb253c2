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


def levenberg_marquardt(lam: float, rho: float, drop: float) -> float:
    """The LM rule of §4.2 on SHF's ``lambda`` (LSMR's ``damp``, so ``lambda^2`` moves by ``drop^2``).

    ``lambda / drop`` if ``rho < 1/4``, ``drop * lambda`` if ``rho > 3/4``, unchanged otherwise.
    A NaN ``rho`` counts as ``rho < 1/4``.
    """
    if not 0.0 < drop < 1.0:
        raise ConfigError(f"drop must be in (0, 1), got {drop}")
    if lam < 0.0 or not math.isfinite(lam):
        raise ConfigError(f"lambda must be finite and >= 0, got {lam}")
    if not rho >= 0.25:  # rho < 1/4, or NaN
        return lam / drop
    if rho > 0.75:
        return drop * lam
    return lam
