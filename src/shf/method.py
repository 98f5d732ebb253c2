"""The interface the fit loop (:func:`shf.fit.run_loop`) drives: one optimiser, one iteration
at a time. SHF (:class:`shf.fit.SHFMethod`), Martens HF, the first-order baselines and the
iterate average (:class:`shf.averaging.Averaged`) implement it."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Method(Protocol):
    """An optimiser the loop can drive: initial weights, then one iteration at a time.

    ``step`` returns the new weights and a metrics dictionary that holds at least
    ``examples`` (training rows used by the iteration) and may hold ``val_error`` (the
    validation error at the new weights, when the method computed it anyway).
    ``state_dict``/``load_state_dict`` hold everything a resumed run needs to continue
    bit for bit (after ``init_weights``, which builds the method's structures).
    """

    def init_weights(self) -> list[Tensor]: ...

    def step(self, w: list[Tensor], deadline: float | None = None) -> tuple[list[Tensor], dict[str, Any]]: ...

    def summary(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
