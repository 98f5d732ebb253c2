"""What a curvature operator provides to the optimizers.

A :class:`JacobianOperator` is built once per HF iteration for fixed weights ``w`` and
a fixed batch ``(X, Y)``. It is the operator ``A`` with ``A^T A`` the Gauss-Newton
matrix of the loss (for the paper's squared error, the Jacobian ``A = grad R(w; X)`` of
the scaled residual) from the weight space ``W`` (list of tensors) to the range (a
tensor), plus what Alg. 1 needs at the same point: the residual ``R`` with
``A^T R = grad f``, the loss ``f`` and the gradient ``grad f`` (eq. 6), and the
per-example sums the preconditioners and Alg. 2 need.

Two implementations: the hand-written MLP operator (:mod:`shf.curvature.mlp`, Alg. 4-5,
the fast path) and the ``torch.func`` one for any ``nn.Module``
(:mod:`shf.curvature.module`). A :class:`CurvatureModel` builds them and evaluates the
loss; the HF step, the solvers and the preconditioners see only these protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor

from shf.batch import Inputs
from shf.tensorlist import Vec


@runtime_checkable
class JacobianOperator(Protocol):
    """``A`` with ``A^T A`` the Gauss-Newton matrix, and the quantities of one HF iteration."""

    n: int
    """Examples in the batch."""

    @property
    def residual(self) -> Tensor:
        """``R`` with ``A^T R = grad f`` (``(S_k - X)/sqrt(n)`` for the paper's loss, §3)."""
        ...

    @property
    def loss(self) -> float:
        """``f(w; X, Y)`` (``1/2 ||R||_F^2`` for the squared error)."""
        ...

    def matvec(self, d: Vec) -> Vec:
        """Forward mode ``d -> A d`` (Alg. 4)."""
        ...

    def rmatvec(self, U: Vec) -> Vec:
        """Reverse mode ``U -> A^T U`` (Alg. 5)."""
        ...

    def gradient(self) -> list[Tensor]:
        """``grad f = A^T R`` (eq. 6)."""
        ...

    def range_norm(self, U: Vec) -> float:
        """``||U||_F`` of a range-space tensor (all-reduced when sharded)."""
        ...

    def per_example_sumsq(self, U: Tensor) -> list[Tensor]:
        """``sum_i (a_i^T u_i)^2`` with ``a_i`` example ``i``'s block of ``sqrt(n) A`` and ``u_i``
        row ``i`` of the range-space ``U`` (Chapelle-Erhan's estimate, Alg. 3)."""
        ...

    def per_example_gradient_stats(self) -> tuple[list[Tensor], list[Tensor]]:
        """``(grad f_S, sum_i (grad l_i)^2)``: the mean and the componentwise sum of squares of
        the per-example gradients (Alg. 2, Martens' preconditioner)."""
        ...


@runtime_checkable
class CurvatureModel(Protocol):
    """A model, a loss and the trained weights, as SHF sees them: operators and losses at ``w``.

    :class:`shf.models.Autoencoder` is one (the hand-written fast path);
    :class:`shf.curvature.module.ModuleProblem` wraps any ``nn.Module``.
    """

    def jacobian(self, w: list[Tensor], X: Inputs, Y: Tensor | None = None) -> JacobianOperator:
        """The operator at ``(w, X, Y)`` (``Y = None``: the targets are the inputs). ``X``: a tensor,
        or a dict of tensors where the model takes one (:mod:`shf.batch`)."""
        ...

    def loss(self, w: Sequence[Tensor], X: Inputs, Y: Tensor | None = None) -> float:
        """``f(w; X, Y)`` (float64 accumulation; ``inf`` on overflow)."""
        ...

    def check_batch(self, w: Sequence[Tensor], X: Inputs, Y: Tensor | None) -> None:
        """Raise a clear error unless ``(X, Y)`` fits the model and its loss."""
        ...


ResidualModel = CurvatureModel
"""The earlier name of :class:`CurvatureModel`."""
