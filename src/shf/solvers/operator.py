"""The linear-operator protocol the Krylov solvers work with.

A solver only needs ``x -> A x`` (:meth:`LinearOperator.matvec`, the paper's forward
mode, Alg. 4) and ``u -> A^T u`` (:meth:`LinearOperator.rmatvec`, reverse mode,
Alg. 5). ``x`` lives in the domain (for a network: the weight space ``W``, a list of
matrices) and ``u`` in the range (for a network: ``X = R^{n x m_1}``, one matrix).

Range-space norms go through :meth:`range_norm` when the operator defines it, so a
data-parallel operator whose range is sharded over processes can all-reduce there
without the solver knowing (the domain is replicated, so domain norms stay local).
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from torch import Tensor

from shf import tensorlist as tl
from shf.tensorlist import Vec


@runtime_checkable
class LinearOperator(Protocol):
    """Anything with ``matvec`` (``A x``) and ``rmatvec`` (``A^T u``).

    Both must return a *new* vector that the caller owns: the solvers update it in
    place (LSMR forms ``A v - alpha u`` in the result of ``A v``) rather than copy it.
    """

    def matvec(self, x: Vec) -> Vec:
        """Return ``A x``."""
        ...

    def rmatvec(self, u: Vec) -> Vec:
        """Return ``A^T u``."""
        ...


class DenseOperator:
    """A dense matrix ``A`` (2-D tensor) seen as an operator on 1-D tensors."""

    def __init__(self, A: Tensor) -> None:
        if not isinstance(A, Tensor) or A.dim() != 2:
            raise ValueError(f"a dense operator needs a 2-D tensor, got {getattr(A, 'shape', A)!r}")
        self.A = A
        self.shape = tuple(A.shape)

    def matvec(self, x: Vec) -> Vec:
        assert isinstance(x, Tensor)
        return self.A @ x

    def rmatvec(self, u: Vec) -> Vec:
        assert isinstance(u, Tensor)
        return self.A.T @ u


def as_operator(A: object) -> LinearOperator:
    """Wrap a dense 2-D tensor; pass through anything with ``matvec``/``rmatvec``."""
    if isinstance(A, Tensor):
        return DenseOperator(A)
    if hasattr(A, "matvec") and hasattr(A, "rmatvec"):
        return A  # type: ignore[return-value]
    raise TypeError(
        "A must be a 2-D torch.Tensor or an object with matvec(x) and rmatvec(u) methods, "
        f"got {type(A).__name__}"
    )


def range_norm(A: LinearOperator, u: Vec) -> float:
    """``||u||_2`` for ``u`` in the range of ``A`` (all-reduced if ``A`` says how)."""
    f = getattr(A, "range_norm", None)
    if f is not None:
        return float(f(u))
    return tl.norm(u)


class ColumnScaled:
    """``A diag(c)``: the column scaling a diagonal preconditioner applies (§4.4).

    ``matvec(y) = A (c ∘ y)`` and ``rmatvec(u) = c ∘ A^T u``, the two products of
    Alg. 6 with the inverse preconditioner ``c`` stored as a vector like ``x``.
    """

    def __init__(self, A: LinearOperator, c: Vec) -> None:
        self.A = A
        self.c = c

    def matvec(self, x: Vec) -> Vec:
        return self.A.matvec(tl.mul(self.c, x))

    def rmatvec(self, u: Vec) -> Vec:
        # c ∘ (A^T u), scaling A^T u's new result in place (see LinearOperator).
        return tl.mul_(self.A.rmatvec(u), self.c)

    def range_norm(self, u: Vec) -> float:
        return range_norm(self.A, u)


class TimedOperator:
    """Pass-through wrapper that adds up the wall time spent in ``matvec``/``rmatvec``.

    Used by the HF step to split the solver's time into the Jacobian products and the
    solver's own vector work (``seconds``, both directions together). On a GPU the time
    is that of launching the products unless the caller synchronises.
    """

    def __init__(self, A: LinearOperator) -> None:
        self.A = A
        self.seconds = 0.0

    def matvec(self, x: Vec) -> Vec:
        t = time.perf_counter()
        out = self.A.matvec(x)
        self.seconds += time.perf_counter() - t
        return out

    def rmatvec(self, u: Vec) -> Vec:
        t = time.perf_counter()
        out = self.A.rmatvec(u)
        self.seconds += time.perf_counter() - t
        return out

    def range_norm(self, u: Vec) -> float:
        return range_norm(self.A, u)


class DampedStack:
    """``Abar = [A diag(c); D]`` as one operator, for a damping block with its own right-hand side.

    LSMR's ``damp`` argument solves ``min ||A x - b||^2 + damp^2 ||x - x0||^2``: the damping
    block's right-hand side is tied to the start ``x0``. A problem whose normal equations have
    another right-hand side, ``(C A^T A C + D^2) y = h`` with ``h`` not of the form
    ``C A^T b + damp^2 y0``, is the least-squares problem ``min ||Abar y - [b; e]||`` with
    ``D e = h - C A^T b`` (since ``Abar^T [b; e] = C A^T b + D e``): that needs the stacked
    operator, solved with ``damp = 0``.

    ``damp``: ``D = damp I`` for a number, ``D = diag(damp)`` for a vector of ``x``'s structure
    (a positive entry per coordinate: one block standing for several diagonal blocks, since
    ``[D_1; D_2]`` has the normal matrix ``D_1^2 + D_2^2`` of ``sqrt(D_1^2 + D_2^2)``).

    Range vectors are lists ``[U, *v]``: ``U`` in ``A``'s range (one tensor), ``v`` in the domain
    (``x``'s structure).
    """

    def __init__(self, A: LinearOperator, damp: float | Vec, c: Vec | None) -> None:
        if isinstance(damp, (int, float)):
            if not damp > 0.0:
                raise ValueError(f"a damped stack needs damp > 0, got {damp}")
            self.damp: float | Vec = float(damp)
        else:
            self.damp = damp
        self.A, self.c = A, c

    def split(self, u: Vec) -> tuple[Vec, list[Tensor]]:
        """``(U, v)`` of a range vector ``[U, *v]``."""
        assert isinstance(u, list)
        return u[0], u[1:]

    def join(self, U: Vec, v: Vec) -> list[Tensor]:
        """The range vector ``[U, *v]``."""
        assert isinstance(U, Tensor)
        return [U] + (list(v) if isinstance(v, (list, tuple)) else [v])

    def _damped(self, x: Vec) -> Vec:
        """``D x`` as a new vector."""
        return tl.scale(self.damp, x) if isinstance(self.damp, float) else tl.mul(self.damp, x)

    def matvec(self, x: Vec) -> Vec:
        # [A (c ∘ y); D y]
        Ax = self.A.matvec(x if self.c is None else tl.mul(self.c, x))
        return self.join(Ax, self._damped(x))

    def _plus_damped(self, out: Vec, v: Vec) -> Vec:
        """``out + D v``, in ``out``'s storage."""
        return tl.axpy_(self.damp, v, out) if isinstance(self.damp, float) else tl.addcmul_(out, self.damp, v)

    def rmatvec(self, u: Vec) -> Vec:
        # c ∘ A^T U + D v
        U, v = self.split(u)
        out = self.A.rmatvec(U)
        if self.c is not None:
            out = tl.mul_(out, self.c)
        return self._plus_damped(out, v)

    def range_norm(self, u: Vec) -> float:
        U, v = self.split(u)
        return float((range_norm(self.A, U) ** 2 + tl.norm(v) ** 2) ** 0.5)


class RightPreconditioned(Protocol):
    """A right preconditioner ``P`` that is not diagonal: ``apply(z) = P z``, ``apply_t(v) = P^T v``."""

    def apply(self, z: Vec) -> Vec:
        """``P z``."""
        ...

    def apply_t(self, v: Vec) -> Vec:
        """``P^T v``."""
        ...


class PreconditionedStack(DampedStack):
    """``Abar = [A P; D P]`` as one operator: :class:`DampedStack` with a right preconditioner ``P``
    that is not diagonal (``D`` a diagonal damping block in ``x = P z``, a number or a vector)."""

    def __init__(self, A: LinearOperator, P: RightPreconditioned, damp: float | Vec) -> None:
        super().__init__(A, damp, None)
        self.P = P

    def matvec(self, x: Vec) -> Vec:
        # [A P z; D P z]
        d = self.P.apply(x)
        return self.join(self.A.matvec(d), self._damped(d))

    def rmatvec(self, u: Vec) -> Vec:
        # P^T (A^T U + D v)
        U, v = self.split(u)
        return self.P.apply_t(self._plus_damped(self.A.rmatvec(U), v))
