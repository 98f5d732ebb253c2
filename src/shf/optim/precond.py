"""Diagonal preconditioners for the Gauss-Newton system (§4.4).

Each function returns the *inverse* preconditioner ``c`` as a list of tensors shaped
like the weights (§4.4 stores ``(C_l)_pq = 1/(C_ll)_pq,pq``). LSMR applies it as a
column scaling, ``d -> A (c ∘ d)`` and ``U -> c ∘ A^T U`` (Alg. 6). :class:`Scaling` is the
HF iteration's part that computes ``c`` each iteration and keeps the state of the one rule
that has some (MINPACK's column norms, beyond the paper).
"""

from __future__ import annotations

import enum
from typing import Any

import torch
from torch import Tensor

from shf import tensorlist as tl
from shf.curvature.base import JacobianOperator
from shf.errors import ConfigError
from shf.optim.kron import KroneckerScaling
from shf.optim.scaling import ColumnScaling, diagonal


class Preconditioner(str, enum.Enum):
    """Which diagonal preconditioner the HF step uses."""

    CHAPELLE_ERHAN = "chapelle-erhan"
    MARTENS = "martens"
    COLUMN_NORMS = "column-norms"
    KFAC = "kfac"  # B19: Kronecker-factored, not diagonal (shf.optim.kron)
    NONE = "none"


def chapelle_erhan_estimate(A: JacobianOperator, generator: torch.Generator | None = None) -> list[Tensor]:
    """Chapelle & Erhan's (2011) unbiased estimate of ``diag(G)``, ``G = A^T A`` (§4.4, Alg. 3).

    For Rademacher rows ``u_i`` (entries ``±1``, one per range entry of example ``i``),
    ``E[(a_i^T u_i)^2] = diag(a_i^T a_i)`` with ``a_i`` example ``i``'s block of
    ``sqrt(n) A``, so ``C = sum_i (a_i^T u_i)^2`` estimates ``n diag(G)``. The operator
    computes the sum without a per-example loop (for the MLP one matrix product per
    layer, NOTES item 1: ``(S~_{l-1} ∘ S~_{l-1})^T (F_l ∘ F_l)``). Returns ``C / n``.
    """
    R = A.residual
    # u_i ~ Unif{±1}, all n rows at once (drawn on the CPU generator); a sharded operator
    # (shf.curvature.sharded) holds some rows of the range: the whole batch's probe is drawn
    # on every rank and cut to them, so the estimate is the single-process one.
    U = torch.randint(0, 2, tuple(getattr(A, "batch_range_shape", R.shape)), generator=generator)
    rows = getattr(A, "rows", None)
    if rows is not None:
        U = U[rows]
    U = U.to(dtype=R.dtype, device=R.device) * 2.0 - 1.0
    # C_l = sum_i (a_i^T u_i)^2  (Alg. 3's inner loop, batched), then / n
    return [C.div_(A.n) for C in A.per_example_sumsq(U)]


def chapelle_erhan(A: JacobianOperator, generator: torch.Generator | None = None) -> list[Tensor]:
    """The inverse preconditioner of Alg. 3: ``c_l = 1 / (1 + sqrt(C_l / n))``.

    The square root turns the estimate of ``diag(G)`` into an estimate of the column
    norms of ``A``, which is what LSMR's column scaling must use (NOTES item 1: Alg.
    3's ``1/(1 + sqrt(C_l/n))`` rather than §4.4's ``1/(1 + C)``).
    """
    # C_l <- 1 / [1 + sqrt(C_l / n)]
    return [1.0 / (1.0 + torch.sqrt(D)) for D in chapelle_erhan_estimate(A, generator)]


def martens_fisher(A: JacobianOperator, lam: float, exponent: float = 0.75) -> list[Tensor]:
    """Martens' (2010) empirical-Fisher diagonal, as a column scaling for LSMR.

    Martens preconditions CG with ``M = (diag(sum_i (grad f_i)^2)/n + lambda)^xi``,
    ``xi = 3/4``. LSMR on ``A diag(c)`` is CG on ``diag(c) G diag(c)``, i.e. CG
    preconditioned with ``M = diag(c)^{-2}``; so ``c = M^{-1/2}``. Damping here is
    SHF's ``lambda^2`` (NOTES item 9), hence ``M = (F_diag + lambda^2)^xi``.
    """
    _, sumsq = A.per_example_gradient_stats()
    damp2 = lam * lam
    return [torch.pow(s / A.n + damp2 + 1e-12, -exponent / 2.0) for s in sumsq]


def column_norms(A: JacobianOperator, generator: torch.Generator | None = None) -> list[Tensor]:
    """The column norms of ``A``, ``sqrt(diag(A^T A))``: of its matrix where the operator forms it
    (G16, ``dense()``: exact, MINPACK's), else from Alg. 3's estimate of ``diag(G)``: exact where
    every example has one residual (``(a_i^T u_i)^2 = a_i^2`` for ``u_i = ±1``, the parametric
    fits), unbiased for ``diag(G)`` otherwise."""
    dense = getattr(A, "dense", None)
    M = dense() if dense is not None else None
    w = getattr(A, "w", None)
    if M is not None and w is not None:
        # ||A_:j|| of the matrix itself, one column per weight
        return list(tl.unflatten(torch.linalg.vector_norm(M, dim=0), w))
    return [torch.sqrt(D) for D in chapelle_erhan_estimate(A, generator)]


class Scaling:
    """``c <- Precon(w; X)`` (Alg. 3, §4.4) as a part of the HF iteration, chosen once by name.

    ``column-norms`` (beyond the paper, docs/deviations.md B18) is MINPACK's scaling of
    Levenberg-Marquardt (Moré 1978, ``mode = 1`` of ``lmder``): ``D_j = max(D_j, ||A_:j||)``
    over the iterations so far (a column that has been zero so far counts as 1), and
    ``c = 1 / D``. LSMR on ``A diag(c)`` with damping ``lambda`` solves
    ``min ||A d - b||^2 + lambda^2 ||D d||^2`` for ``d = c ∘ y``, so the damping is measured in
    each parameter's own units and the method does not depend on how the parameters are scaled.
    ``D`` is the part's state (:meth:`state_dict`); the other rules keep none.
    """

    def __init__(self, kind: Preconditioner | str) -> None:
        self.kind = _kind(kind)
        self.D: list[Tensor] | None = None

    def __call__(
        self, A: JacobianOperator, lam: float, generator: torch.Generator | None = None
    ) -> ColumnScaling | None:
        """LSMR's right preconditioner for this iteration's operator: ``diag(c)`` with the inverse
        preconditioner ``c`` (None: none), B19's :class:`~shf.optim.kron.KroneckerScaling` for
        ``kfac``."""
        if self.kind is Preconditioner.KFAC:
            # B19: P = L_a^{-T} ⊗ L_g^{-1} per layer, the damping still scaled by Alg. 3's c
            _needs_per_example(self.kind, A)
            return KroneckerScaling.of(A, chapelle_erhan(A, generator), lam, generator)
        if self.kind is not Preconditioner.COLUMN_NORMS:
            return diagonal(compute(self.kind, A, lam, generator))
        _needs_per_example(self.kind, A)
        norms = column_norms(A, generator)
        if self.D is None:
            # D <- ||A_:j||, 1 for a zero column (lmder's first iteration)
            self.D = [torch.where(t > 0, t, torch.ones_like(t)) for t in norms]
        else:
            # D_j <- max(D_j, ||A_:j||)  (lmder, mode 1)
            self.D = [torch.maximum(D.to(t), t) for D, t in zip(self.D, norms)]
        # c <- 1 / D
        return diagonal([1.0 / D for D in self.D])

    def state_dict(self) -> dict[str, Any]:
        """``column_norms``: ``D`` (None: not yet, or a rule without state)."""
        return {"column_norms": None if self.D is None else [t.clone() for t in self.D]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (tensors are moved to the operator's device when used)."""
        D = state.get("column_norms")
        self.D = None if D is None else [t.clone() for t in D]


def _kind(kind: Preconditioner | str) -> Preconditioner:
    """``kind`` as a :class:`Preconditioner`, or a one-line error naming the choices."""
    try:
        return Preconditioner(kind)
    except ValueError:
        choices = ", ".join(p.value for p in Preconditioner)
        raise ConfigError(f"unknown preconditioner {kind!r}; choose from {choices}") from None


def _needs_per_example(kind: Preconditioner, A: JacobianOperator) -> None:
    if not hasattr(A, "per_example_sumsq"):
        raise ConfigError(
            f"the {kind.value} preconditioner needs per-example products, which "
            f"{type(A).__name__} does not provide; use preconditioner 'none'"
        )


def compute(
    kind: Preconditioner | str,
    A: JacobianOperator,
    lam: float,
    generator: torch.Generator | None = None,
) -> list[Tensor] | None:
    """The inverse preconditioner ``c`` named by ``kind`` (``None`` for no preconditioning)."""
    kind = _kind(kind)
    if kind is Preconditioner.NONE:
        return None
    _needs_per_example(kind, A)
    if kind is Preconditioner.CHAPELLE_ERHAN:
        return chapelle_erhan(A, generator)
    if kind is Preconditioner.COLUMN_NORMS:
        c = Scaling(kind)(A, lam, generator)  # the first iteration's (no state kept)
        assert c is not None and c.diagonal
        return c.c
    if kind is Preconditioner.KFAC:
        raise ConfigError("the kfac preconditioner is not diagonal: use shf.optim.precond.Scaling")
    return martens_fisher(A, lam)
