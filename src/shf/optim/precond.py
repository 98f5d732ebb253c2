"""Diagonal preconditioners for the Gauss-Newton system (§4.4).

Each function returns the *inverse* preconditioner ``c`` as a list of tensors shaped
like the weights (§4.4 stores ``(C_l)_pq = 1/(C_ll)_pq,pq``). LSMR applies it as a
column scaling, ``d -> A (c ∘ d)`` and ``U -> c ∘ A^T U`` (Alg. 6).
"""

from __future__ import annotations

import enum

import torch
from torch import Tensor

from shf.curvature.base import JacobianOperator
from shf.errors import ConfigError


class Preconditioner(str, enum.Enum):
    """Which diagonal preconditioner the HF step uses."""

    CHAPELLE_ERHAN = "chapelle-erhan"
    MARTENS = "martens"
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


def compute(
    kind: Preconditioner | str,
    A: JacobianOperator,
    lam: float,
    generator: torch.Generator | None = None,
) -> list[Tensor] | None:
    """The inverse preconditioner ``c`` named by ``kind`` (``None`` for no preconditioning)."""
    try:
        kind = Preconditioner(kind)
    except ValueError:
        choices = ", ".join(p.value for p in Preconditioner)
        raise ConfigError(f"unknown preconditioner {kind!r}; choose from {choices}") from None
    if kind is Preconditioner.NONE:
        return None
    if not hasattr(A, "per_example_sumsq"):
        raise ConfigError(
            f"the {kind.value} preconditioner needs per-example products, which "
            f"{type(A).__name__} does not provide; use preconditioner 'none'"
        )
    if kind is Preconditioner.CHAPELLE_ERHAN:
        return chapelle_erhan(A, generator)
    return martens_fisher(A, lam)
