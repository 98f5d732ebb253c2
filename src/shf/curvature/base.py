"""What a curvature operator provides to the optimizers.

A :class:`JacobianOperator` is built once per HF iteration for fixed weights ``w`` and
a fixed batch ``X``. It is the Jacobian ``A = grad R(w; X)`` of the (scaled) residual
as a linear operator from the weight space ``W`` (list of tensors) to the output
space (a tensor), plus what Alg. 1 needs at the same point: the residual ``R``, the
loss ``f = 1/2 ||R||_F^2`` and the gradient ``grad f = A^T R`` (eq. 6).

The hand-written MLP operator (:mod:`shf.curvature.mlp`, Alg. 4-5) is the first
implementation; an autodiff one for any ``nn.Module`` and a data-parallel wrapper
implement the same protocol, so the solvers and the HF step need no change.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from shf.tensorlist import Vec


@runtime_checkable
class JacobianOperator(Protocol):
    """``A = grad R(w; X)`` with the quantities of one HF iteration."""

    @property
    def residual(self) -> Tensor:
        """``R(w; X) = (S_k - X)/sqrt(n)`` (§3)."""
        ...

    @property
    def loss(self) -> float:
        """``f(w; X) = 1/2 ||R||_F^2``."""
        ...

    def matvec(self, d: Vec) -> Vec:
        """Forward mode ``d -> grad R(w; X) d`` (Alg. 4)."""
        ...

    def rmatvec(self, U: Vec) -> Vec:
        """Reverse mode ``U -> grad R(w; X)^T U`` (Alg. 5)."""
        ...

    def gradient(self) -> list[Tensor]:
        """``grad f(w; X) = grad R^T R`` (eq. 6)."""
        ...

    def range_norm(self, U: Vec) -> float:
        """``||U||_F`` of an output-space matrix (all-reduced when sharded)."""
        ...


@runtime_checkable
class ResidualModel(Protocol):
    """A least-squares model ``f(w; X) = 1/2 ||R(w; X)||_F^2`` that SHF can train.

    :class:`shf.models.autoencoder.Autoencoder` is one; an autodiff model wrapping any
    ``nn.Module`` is another.
    """

    def jacobian(self, w: list[Tensor], X: Tensor) -> JacobianOperator:
        """The operator ``grad R(w; X)`` with ``R``, ``f`` and ``grad f`` at ``(w, X)``."""
        ...

    def loss(self, w: list[Tensor], X: Tensor) -> float:
        """``f(w; X)`` (float64 accumulation; ``inf`` on overflow)."""
        ...
