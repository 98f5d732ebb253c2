"""B19 (beyond the paper): a Kronecker-factored right preconditioner for LSMR.

The paper's preconditioner (Alg. 3) is diagonal: LSMR runs on ``A diag(c)``. Per layer, the
Gauss-Newton block ``(A^T A)_ll = (1/n) sum_i (s~_i s~_i^T) ⊗ E[f_i f_i^T]`` (``s~_i`` the layer's
augmented input of example ``i``, ``f_i`` its output gradient for a Gaussian output vector) is
close to the Kronecker product ``Abar ⊗ Gbar`` of its factors' means (Martens & Grosse 2015,
K-FAC):

    Abar = S~^T S~ / n,    Gbar = F^T F / n,   F = the backward pass of U ~ N(0, I) (Alg. 5's F_l).

With ``Abar + delta_a I = L_a L_a^T`` and ``Gbar + delta_g I = L_g L_g^T`` (Cholesky), the right
preconditioner ``P V = L_a^{-T} V L_g^{-1}`` (``V`` a layer's weights, in+1 by out) has
``P P^T = (Abar + delta_a I)^{-1} ⊗ (Gbar + delta_g I)^{-1}``: LSMR runs on ``A P``, ``d = P z``.

The factors are those of the diagonally scaled problem (the default, ``scaled``): Chapelle-Erhan's
``c`` is fitted per layer by a Kronecker product ``C_k = diag(r) ⊗ diag(s)`` (``c_ij ~ r_i s_j``, the
two-way additive fit of ``log c``), the factors are K-FAC's of ``A C_k`` (``S~ diag(r)`` and
``F diag(s)``), whose damping is about ``lambda^2 I``, and ``P = C_k (L_a^{-T} ⊗ L_g^{-1})``. As
``lambda`` grows ``P`` tends to ``C_k / lambda``, the defaults' diagonal preconditioner; the first
version (``scaled = False``: the factors of ``A``, damped by the layer's root mean square of
``lambda / c``) tended to a multiple of the identity, no preconditioning at all, and lost the
late phase of ``shf train``'s task on three seeds of five (``docs/results/kfac/``).

B19 changes the preconditioner, not the problem: the damped problem is the one the diagonal
preconditioner solves (``min 1/2 ||A d||^2 + g^T d + wc/2 ||d||^2 + lambda^2/2 ||(d - x0) / c||^2``
with Chapelle-Erhan's ``c``, eq. 19 in ``d``), so its minimiser is the same and only LSMR's
path to it changes (``shf.optim.solve.LsmrSolver.kronecker``). The factors' damping is K-FAC's
factored Tikhonov damping (Martens & Grosse 2015, §6.3): ``delta_a = pi sqrt(gamma)``,
``delta_g = sqrt(gamma) / pi``, with ``sqrt(gamma)`` the root mean square over the layer's weights of
the problem's damping scale ``lambda / c`` and ``pi = sqrt((tr Abar / dim) / (tr Gbar / dim))``.

Measured before it was built (``benchmarks/kfac_start.py``, ``docs/results/kfac/``): on
``shf train``'s task after 30 s, LSMR on ``A P`` lowers the damped model in 5 iterations as much
as the diagonal preconditioner does in about 37, at about 3x the cost per iteration; at the end
of a 300 s run, 5 iterations against 13.

Costs per HF iteration: one backward pass of a Gaussian probe, ``S~^T S~`` and ``F^T F`` per
layer, two Cholesky factorisations and two triangular inverses per layer; per LSMR iteration,
four matrix products per layer (``P`` and ``P^T``), about ``2 (in + out)`` flops per weight each.
Only the hand-written autoencoder's operator (:class:`shf.curvature.mlp.MLPJacobian`) exposes
the layer inputs and output gradients this needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from shf import tensorlist as tl
from shf.curvature.base import JacobianOperator
from shf.errors import ConfigError

MAX_SIDE = 256
"""A factor of a side wider than this is kept diagonal (``sqrt(diag(M) + delta)``): a full one
costs ``2 side^2`` flops per weight row or column at every LSMR iteration. On ``shf train``'s
task (784-400-200-100-50-25-6 and back, 250 curvature rows) full factors up to 4096 make an LSMR
iteration 3x the diagonal preconditioner's, up to 512 1.8x, up to 256 1.1x
(``benchmarks/kfac_start.py --max-side``, ``docs/results/kfac/``)."""


def _left(L: Tensor, Z: Tensor, transpose: bool) -> Tensor:
    """``L Z`` (``L^T Z``), ``L`` a matrix or the diagonal of one."""
    if L.dim() == 1:
        return Z * L.unsqueeze(1)
    return (L.T if transpose else L) @ Z


def _right(Z: Tensor, L: Tensor, transpose: bool) -> Tensor:
    """``Z L`` (``Z L^T``), ``L`` a matrix or the diagonal of one."""
    if L.dim() == 1:
        return Z * L.unsqueeze(0)
    return Z @ (L.T if transpose else L)


class KroneckerScaling:
    """``P = L_a^{-T} ⊗ L_g^{-1}`` per layer (see the module), with the diagonal ``c`` that
    scales the damping. ``apply``: ``P z``; ``apply_t``: ``P^T v``; ``inverse``: ``P^{-1} x``. A factor
    is a lower-triangular matrix, or a vector: the diagonal of one (a side wider than ``max_side``).
    A :class:`shf.optim.scaling.ColumnScaling` that is not diagonal."""

    diagonal = False

    def __init__(
        self, c: list[Tensor], La: Sequence[Tensor], Lg: Sequence[Tensor], Ia: Sequence[Tensor],
        Ig: Sequence[Tensor], r: Sequence[Tensor] | None = None, s: Sequence[Tensor] | None = None,
    ) -> None:  # fmt: skip
        self.c = c
        self.La, self.Lg, self.Ia, self.Ig = list(La), list(Lg), list(Ia), list(Ig)
        # the diagonal scaling C_k = diag(r) ⊗ diag(s) applied after the factors (None: none)
        self.r = None if r is None else list(r)
        self.s = None if s is None else list(s)

    def _scale(self, l: int, Z: Tensor, inverse: bool = False) -> Tensor:
        """``r_i s_j Z_ij`` (``Z_ij / (r_i s_j)``) for layer ``l``."""
        if self.r is None or self.s is None:
            return Z
        rs = self.r[l].unsqueeze(1) * self.s[l].unsqueeze(0)
        return Z / rs if inverse else Z * rs

    def apply(self, z: object) -> list[Tensor]:
        """``P z``: per layer ``C_k (L_a^{-T} Z L_g^{-1})``."""
        assert isinstance(z, list)
        return [self._scale(l, _right(_left(ia, Z, True), ig, False))
                for l, (ia, Z, ig) in enumerate(zip(self.Ia, z, self.Ig))]  # fmt: skip

    def apply_t(self, v: object) -> list[Tensor]:
        """``P^T v``: per layer ``L_a^{-1} (C_k V) L_g^{-T}``."""
        assert isinstance(v, list)
        return [_right(_left(ia, self._scale(l, V), False), ig, True)
                for l, (ia, V, ig) in enumerate(zip(self.Ia, v, self.Ig))]  # fmt: skip

    def inverse(self, x: object) -> list[Tensor]:
        """``P^{-1} x``: per layer ``L_a^T (C_k^{-1} X) L_g``."""
        assert isinstance(x, list)
        return [_right(_left(la, self._scale(l, X, inverse=True), True), lg, False)
                for l, (la, X, lg) in enumerate(zip(self.La, x, self.Lg))]  # fmt: skip

    def finite(self) -> bool:
        """Whether every factor and ``c`` is finite."""
        parts = [self.c, self.Ia, self.Ig, self.La, self.Lg] + [t for t in (self.r, self.s) if t is not None]
        return all(tl.all_finite(t) for t in parts)

    @classmethod
    def of(
        cls, A: JacobianOperator, c: list[Tensor], lam: float, generator: torch.Generator | None = None,
        max_side: int = MAX_SIDE, scaled: bool = True,
    ) -> KroneckerScaling:  # fmt: skip
        """The factors of the curvature rows' operator ``A`` (hand-written autoencoder only) for
        damping ``lambda`` and Chapelle-Erhan's ``c``; the Gaussian probe drawn from ``generator``;
        a side wider than ``max_side`` diagonal. ``scaled`` (the default): the factors of the
        diagonally scaled problem ``d = C_k y'`` (see the module); ``False``: of ``A`` itself,
        damped by the layer's root mean square of ``lambda / c`` (the first version)."""
        S, w, backprop = getattr(A, "S", None), getattr(A, "w", None), getattr(A, "backprop", None)
        if S is None or w is None or backprop is None:
            raise ConfigError(
                f"the kfac preconditioner (B19) needs the layers' inputs and output gradients, which "
                f"{type(A).__name__} does not expose (only the hand-written autoencoder's operator "
                f"does); use preconditioner 'chapelle-erhan'"
            )
        R = A.residual
        n = R.shape[0]
        # U ~ N(0, I) in the output space (drawn on the CPU generator, then moved)
        U = torch.randn(tuple(R.shape), generator=generator, dtype=R.dtype).to(R.device)
        # F_l: the output gradients of every layer for U (Alg. 5's backward pass, no 1/sqrt(n))
        Fs = backprop(U)
        La: list[Tensor] = []
        Lg: list[Tensor] = []
        Ia: list[Tensor] = []
        Ig: list[Tensor] = []
        rows: list[Tensor] = []
        cols: list[Tensor] = []
        for l, (W, F) in enumerate(zip(w, Fs)):
            St = torch.cat([S[l], torch.ones(n, 1, dtype=S[l].dtype, device=S[l].device)], dim=1).double()
            F64 = F.double()
            if scaled:
                # c_ij ~ r_i s_j: the two-way additive fit of log c (row and column means)
                logc = torch.log(c[l].double())
                m = float(logc.mean())
                r = torch.exp(logc.mean(dim=1) - m / 2)
                s = torch.exp(logc.mean(dim=0) - m / 2)
                rows.append(r.to(W.dtype))
                cols.append(s.to(W.dtype))
                # the factors of A C_k: S~ diag(r) and F diag(s); the damping there is about
                # lambda^2 (lambda^2 (r s / c)^2 per weight), so sqrt(gamma) = lambda
                St, F64 = St * r, F64 * s
                root_gamma = lam
            else:
                # sqrt(gamma_l) = rms over the layer of lambda / c (the damping's scale in d)
                root_gamma = lam * math.sqrt(float(torch.mean(1.0 / c[l].double() ** 2)))
            # Abar = S~^T S~ / n,  Gbar = F^T F / n  (K-FAC's factors of (A^T A)_ll): their
            # diagonals diag(M) and mean eigenvalues tr(M) / dim
            diag_a, diag_g = (St * St).sum(dim=0) / n, (F64 * F64).sum(dim=0) / n
            mean_a, mean_g = float(diag_a.mean()), float(diag_g.mean())
            # factored damping (Martens & Grosse 2015, §6.3): (Abar + pi sqrt(gamma)) ⊗
            # (Gbar + sqrt(gamma) / pi), pi = sqrt(mean_a / mean_g): each side's damping in
            # proportion to its scale
            pi = math.sqrt(mean_a / mean_g) if mean_a > 0.0 and mean_g > 0.0 else 1.0
            sides = ((St, diag_a, La, Ia, pi * root_gamma), (F64, diag_g, Lg, Ig, root_gamma / pi))
            for X, diag, Ls, Is, delta in sides:
                if X.shape[1] > max_side:
                    # a wide side: diag(M) + delta = L^2 with L diagonal
                    L = torch.sqrt(diag + delta)
                    Ls.append(L.to(W.dtype))
                    Is.append((1.0 / L).to(W.dtype))
                    continue
                M = X.T @ X / n
                M.diagonal().add_(delta)
                # M + delta I = L L^T;  L^{-1}
                L = torch.linalg.cholesky(M)
                eye = torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
                Ls.append(L.to(W.dtype))
                Is.append(torch.linalg.solve_triangular(L, eye, upper=False).to(W.dtype))
        return cls(c, La, Lg, Ia, Ig, rows if scaled else None, cols if scaled else None)
