"""LSMR's right preconditioner as one interface: ``d = P z``.

Alg. 6 runs LSMR on ``A P`` with ``P = diag(c)`` (Alg. 3's inverse preconditioner ``c``,
:class:`DiagonalScaling`); B19 takes a Kronecker-factored ``P`` per layer instead
(:class:`shf.optim.kron.KroneckerScaling`). Both keep the damping of Alg. 6's problem,
``lambda^2 ||(d - x0) / c||^2`` (eq. 19 in ``d``), so both carry ``c``. The HF iteration reads a
scaling only through :class:`ColumnScaling`: ``P z``, ``P^T v``, ``P^{-1} x``, whether it is
finite, and whether it is diagonal (then LSMR takes Alg. 6's own column scaling, which applies
``c`` inside the bidiagonalisation at no extra product).
"""

from __future__ import annotations

from typing import Protocol, cast

from torch import Tensor

from shf import tensorlist as tl


class ColumnScaling(Protocol):
    """A right preconditioner ``P`` of LSMR's problem (``d = P z``) with the damping scale ``c``.

    ``c``: Alg. 3's inverse preconditioner, which scales the damping (``lambda / c`` per weight);
    ``diagonal``: ``P = diag(c)`` (Alg. 6's column scaling)."""

    @property
    def c(self) -> list[Tensor]:
        """Alg. 3's ``c``: the damping is ``lambda^2 ||(d - x0) / c||^2``."""
        ...

    @property
    def diagonal(self) -> bool:
        """Whether ``P = diag(c)``."""
        ...

    def apply(self, z: object) -> list[Tensor]:
        """``P z``."""
        ...

    def apply_t(self, v: object) -> list[Tensor]:
        """``P^T v``."""
        ...

    def inverse(self, x: object) -> list[Tensor]:
        """``P^{-1} x``."""
        ...

    def finite(self) -> bool:
        """Whether every number of ``P`` (and ``c``) is finite."""
        ...


class DiagonalScaling:
    """Alg. 3's scaling ``P = diag(c)``: ``P z = c ∘ z``, ``P^T v = c ∘ v``, ``P^{-1} x = x / c``."""

    diagonal = True

    def __init__(self, c: list[Tensor]) -> None:
        self._c = c

    @property
    def c(self) -> list[Tensor]:
        return self._c

    def apply(self, z: object) -> list[Tensor]:
        assert isinstance(z, list)
        return cast(list[Tensor], tl.mul(self._c, z))

    def apply_t(self, v: object) -> list[Tensor]:
        assert isinstance(v, list)
        return cast(list[Tensor], tl.mul(self._c, v))

    def inverse(self, x: object) -> list[Tensor]:
        assert isinstance(x, list)
        return cast(list[Tensor], tl.div(x, self._c))

    def finite(self) -> bool:
        return tl.all_finite(self._c)


def diagonal(c: list[Tensor] | None) -> DiagonalScaling | None:
    """``c`` as a :class:`DiagonalScaling` (None: no preconditioner)."""
    return None if c is None else DiagonalScaling(c)
