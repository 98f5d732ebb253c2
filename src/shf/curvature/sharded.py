"""Data-parallel curvature: any :class:`~shf.curvature.base.CurvatureModel` over P processes.

Every rank holds the same weights and receives the same batch ``X`` (the batches are drawn
from one seeded generator, so they agree); rank ``p`` computes on its contiguous rows
``X_p`` (:func:`shf.collectives.row_range`, ``n_p`` of ``n`` rows). With ``A_p``, ``R_p``,
``f_p`` the wrapped model's operator, residual and loss on ``X_p`` alone (scaled by
``1/sqrt(n_p)``), the whole batch's are

    A = [s_p A_p]_p,   R = [s_p R_p]_p,   s_p = sqrt(n_p / n),
    f = sum_p (n_p / n) f_p,   grad f = sum_p (n_p / n) grad f_p,

so ``A d`` is local (rank ``p`` holds its rows of the range), ``A^T U = sum_p s_p A_p^T U_p``
is one all-reduce of one flat weight-sized buffer, ``||U||^2 = sum_p ||U_p||^2`` one
all-reduce of a scalar, and the per-example sums of Alg. 2, Alg. 3 and Martens'
preconditioner are sums over ranks. Every rank then holds the same domain vectors and
scalars (an all-reduce gives each rank the same result), so every branch (LSMR's stop, the
line search, the damping, the batch size) is taken alike on all ranks.

One LSMR iteration costs two collectives: the ``A^T u`` all-reduce (the weights' size) and
the ``||u||`` all-reduce (8 bytes); a merit check adds one scalar all-reduce, and a
deadline one (:meth:`shf.collectives.Collectives.any`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from shf import batch as bt
from shf import tensorlist as tl
from shf.batch import Inputs
from shf.collectives import Collectives
from shf.curvature.base import CurvatureModel, JacobianOperator
from shf.errors import ConfigError
from shf.tensorlist import Vec


class ShardedJacobian:
    """The whole batch's operator ``A = [s_p A_p]_p`` from this rank's ``A_p`` (see the module)."""

    def __init__(self, local: JacobianOperator, comm: Collectives, n: int, rows: slice) -> None:
        self.local, self.comm, self.n, self.rows = local, comm, int(n), rows
        n_p = rows.stop - rows.start
        self.weight = n_p / self.n  # n_p / n
        self.s = math.sqrt(self.weight)  # s_p = sqrt(n_p / n)
        self._R = local.residual * self.s  # R_p's rows of R
        # f = sum_p (n_p / n) f_p
        self._loss = comm.sum_floats([self.weight * local.loss])[0]

    @property
    def residual(self) -> Tensor:
        """This rank's rows of ``R``."""
        return self._R

    @property
    def loss(self) -> float:
        """``f`` on the whole batch."""
        return self._loss

    @property
    def batch_range_shape(self) -> tuple[int, ...]:
        """The shape of the whole batch's range (this rank holds the rows :attr:`rows` of it)."""
        return (self.n, *self._R.shape[1:])

    def matvec(self, d: Vec) -> Vec:
        """This rank's rows of ``A d``: ``s_p A_p d`` (no communication)."""
        out = self.local.matvec(d)
        assert isinstance(out, Tensor)
        return out.mul_(self.s) if self.s != 1.0 else out

    def rmatvec(self, U: Vec) -> Vec:
        """``A^T U = sum_p s_p A_p^T U_p``: one all-reduce."""
        part = self.local.rmatvec(U)
        assert isinstance(part, list)
        return self.comm.sum_tensors(part, self.s)

    def gradient(self) -> list[Tensor]:
        """``grad f = sum_p (n_p / n) grad f_p``: one all-reduce."""
        return self.comm.sum_tensors(self.local.gradient(), self.weight)

    def range_norm(self, U: Vec) -> float:
        """``||U||_F = (sum_p ||U_p||^2)^(1/2)``: one all-reduce of a scalar."""
        return math.sqrt(max(self.comm.sum_floats([tl.norm(U) ** 2])[0], 0.0))

    def per_example_sumsq(self, U: Tensor) -> list[Tensor]:
        """``sum_i (a_i^T u_i)^2`` over the whole batch (``U``: this rank's rows)."""
        return self.comm.sum_tensors(self.local.per_example_sumsq(U))

    def per_example_gradient_stats(self) -> tuple[list[Tensor], list[Tensor]]:
        """``(grad f_S, sum_i (grad l_i)^2)`` over the whole batch, in one all-reduce."""
        grad, sumsq = self.local.per_example_gradient_stats()
        k = len(grad)
        both = self.comm.sum_tensors([*(g * self.weight for g in grad), *sumsq])
        return both[:k], both[k:]


class ShardedProblem:
    """``model`` computed over the ranks of ``comm``: each rank takes its rows of every batch.

    A :class:`~shf.curvature.base.CurvatureModel` itself; :class:`shf.SHF` uses one when
    ``torch.distributed`` runs more than one process. The batches given to it must be the
    same on every rank (the whole batch, not a shard).
    """

    def __init__(self, model: CurvatureModel, comm: Collectives) -> None:
        self.model, self.collectives = model, comm

    def jacobian(self, w: list[Tensor], X: Inputs, Y: Tensor | None = None) -> ShardedJacobian:
        """The whole batch's operator, this rank computing on its rows."""
        n, comm = bt.rows(X), self.collectives
        if n < comm.world_size:
            raise ConfigError(
                f"a batch of {n} rows cannot be split over {comm.world_size} processes (each needs at "
                "least one row); use a larger batch or fewer processes"
            )
        rows = comm.rows(n)
        local = self.model.jacobian(w, bt.take(X, rows), None if Y is None else Y[rows])
        return ShardedJacobian(local, comm, n, rows)

    def loss(self, w: Sequence[Tensor], X: Inputs, Y: Tensor | None = None) -> float:
        """``f(w; X, Y) = sum_p (n_p / n) f(w; X_p, Y_p)``: one scalar all-reduce."""
        n = bt.rows(X)
        rows = self.collectives.rows(n)
        n_p = rows.stop - rows.start
        part = 0.0
        if n_p > 0:
            part = (n_p / n) * float(self.model.loss(w, bt.take(X, rows), None if Y is None else Y[rows]))
        return self.collectives.sum_floats([part])[0]

    def check_batch(self, w: Sequence[Tensor], X: Inputs, Y: Tensor | None) -> None:
        """The wrapped model's check, on the whole batch."""
        self.model.check_batch(w, X, Y)

    def __getattr__(self, name: str) -> object:
        # What else the wrapped model offers (its architecture, names) reads through.
        if name in ("model", "collectives"):
            raise AttributeError(name)
        return getattr(self.model, name)

