"""The warm start of the inner solve (§4.5) and B14's guards on it, as a part of the HF iteration.

Alg. 1 starts each solve from the previous direction decayed, ``gamma d``, and after the step sets
``d <- gamma d``, ``gamma <- min(growth gamma, gamma_max)``; ``d`` and ``gamma`` are Alg. 1's
variables (carried by :class:`shf.optim.step.SHFState`). A :class:`WarmStartGuard`, chosen once by
:func:`make_guard`, decides what the iteration does with a warm start that does not decrease the
undamped quadratic model ``q(d) = 1/2 d^T G d + g^T d`` on the new batch:

* ``none`` (the paper's): nothing;
* ``model`` (B14): start from 0 instead when ``q(gamma d) >= 0`` (LSMR's damping pulls towards
  the start, eq. 19, so a bad start would be returned nearly as it is);
* ``retry`` (B14): solve again from 0 when the direction found from ``gamma d`` has ``q(d) >= 0``;
* ``reset`` (B14, in the defaults): take or refuse that direction as usual, but do not
  warm-start the next solve from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from shf.errors import require_choice

WARM_START_GUARDS = ("none", "model", "retry", "reset")


class WarmStartGuard:
    """The paper's warm start (``none``): every solve from ``gamma d``, every step seeds the next."""

    name: ClassVar[str] = "none"

    def keeps_start(self, decreases: Callable[[], bool]) -> bool:
        """Whether the solve starts from ``gamma d`` (else from 0); ``decreases()``: whether
        ``q(gamma d) < 0`` (computed only by the rules that read it)."""
        return True

    def solves_again(self, warm: bool | None, decreased: Callable[[], bool]) -> bool:
        """Whether the solve is repeated from 0, given whether it started warm and (``decreased()``,
        computed only by the rules that read it) whether its direction decreased the model."""
        return False

    def seeds_next(self, warm: bool | None, model_decreased: bool) -> bool:
        """Whether the direction taken (or refused) may seed the next solve's warm start."""
        return True


class ModelGuard(WarmStartGuard):
    """B14 ``model``: start from 0 when the warm start does not decrease the model."""

    name = "model"

    def keeps_start(self, decreases: Callable[[], bool]) -> bool:
        return decreases()


class RetryGuard(WarmStartGuard):
    """B14 ``retry``: solve again from 0 when the warm-started direction does not decrease the model."""

    name = "retry"

    def solves_again(self, warm: bool | None, decreased: Callable[[], bool]) -> bool:
        return warm is True and not decreased()


class ResetGuard(WarmStartGuard):
    """B14 ``reset``: a warm-started direction that does not decrease the model seeds no warm start."""

    name = "reset"

    def seeds_next(self, warm: bool | None, model_decreased: bool) -> bool:
        return not (warm is True and not model_decreased)


def make_guard(name: str) -> WarmStartGuard:
    """The guard named ``name`` (one of :data:`WARM_START_GUARDS`)."""
    guards: dict[str, type[WarmStartGuard]] = {
        g.name: g for g in (WarmStartGuard, ModelGuard, RetryGuard, ResetGuard)
    }
    require_choice("warm_start_guard", name, WARM_START_GUARDS)
    return guards[name]()
