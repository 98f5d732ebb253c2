"""Iterate averaging for the fit loop (beyond the paper, ``docs/deviations.md`` B12).

The loop evaluates, keeps and reports an exponential moving average of the method's
iterates instead of the iterates themselves, while the method itself continues from its own
iterate (as ``torch.optim.swa_utils.AveragedModel`` with an EMA, or Polyak averaging).
With decay ``beta`` and iterates ``w_1, w_2, ...`` the averaged weights after ``t`` steps are
the bias-corrected EMA (Adam's correction, so the initial weights get no weight)

    m_t = beta m_{t-1} + (1 - beta) w_t,   m_0 = 0,      wbar_t = m_t / (1 - beta^t),

that is ``wbar_t = sum_s beta^(t-s) w_s / sum_s beta^(t-s)``: a window of about
``1 / (1 - beta)`` iterations. Averaging removes part of the noise that stochastic batches
put into the iterates, which the validation error (and hence the best weights) then sees.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from shf.errors import require
from shf.method import Method


class Averaged:
    """A :class:`shf.method.Method` whose weights are the bias-corrected EMA of ``inner``'s iterates.

    ``step`` ignores the weights the loop passes (the average it returned last time) and steps
    ``inner`` from its own iterate; the validation error ``inner`` computed at that iterate is
    dropped, so the loop measures the average's. ``state_dict`` holds ``inner``'s state, the
    iterate, the EMA and the step count, so a resumed run continues bit for bit.
    """

    def __init__(self, inner: Method, decay: float) -> None:
        require(0.0 < decay < 1.0, f"the weight average's decay must be in (0, 1), got {decay}")
        self.inner, self.decay = inner, float(decay)
        self.w: list[Tensor] = []  # the method's own iterate w_t
        self.m: list[Tensor] = []  # the uncorrected EMA m_t
        self.count = 0  # t

    @property
    def collectives(self) -> Any:
        """The inner method's data-parallel collectives (None: one process)."""
        return getattr(self.inner, "collectives", None)

    def init_weights(self) -> list[Tensor]:
        w = self.inner.init_weights()
        self.w = [t.clone() for t in w]
        self.m = [t.new_zeros(t.shape) for t in w]
        self.count = 0
        return w

    def average(self) -> list[Tensor]:
        """``wbar_t = m_t / (1 - beta^t)`` (the iterate itself before the first step)."""
        if self.count == 0:
            return [t.clone() for t in self.w]
        c = 1.0 - self.decay**self.count
        return [t / c for t in self.m]

    def step(self, w: list[Tensor], deadline: float | None = None) -> tuple[list[Tensor], dict[str, Any]]:
        # The method continues from its own iterate, not from the average the loop holds.
        self.w, info = self.inner.step(self.w, deadline)
        info.pop("val_error", None)  # the iterate's: the loop evaluates the average's
        # m_t = beta m_{t-1} + (1 - beta) w_t
        for m, x in zip(self.m, self.w):
            m.mul_(self.decay).add_(x, alpha=1.0 - self.decay)
        self.count += 1
        return self.average(), info

    def summary(self) -> dict[str, Any]:
        return {**self.inner.summary(), "weight_average": self.decay}

    def state_dict(self) -> dict[str, Any]:
        return {
            "inner": self.inner.state_dict(),
            "w": [t.clone() for t in self.w],
            "m": [t.clone() for t in self.m],
            "count": self.count,
            "decay": self.decay,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        require(
            "inner" in state and float(state.get("decay", -1.0)) == self.decay,
            "the checkpoint was not written with this weight average (run.weight_average)",
        )
        self.inner.load_state_dict(state["inner"])
        self.w = [t.clone() for t in state["w"]]
        self.m = [t.clone() for t in state["m"]]
        self.count = int(state["count"])
