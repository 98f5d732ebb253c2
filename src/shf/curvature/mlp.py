"""Hand-written Jacobian products of the autoencoder's residual (§4.6, Alg. 4 and 5).

For weights ``w = (W_1, ..., W_k)`` and a batch ``X`` (``n`` rows) the operator caches
``S_l = sigma_l(S~_{l-1} W_l)`` (eq. 3) and ``S'_l = sigma'_l(S~_{l-1} W_l)`` (eq. 15)
once, then every product is a chain of matrix products:

* forward mode (Alg. 4): ``F_1 = S'_1 ∘ X~ D_1``,
  ``F_l = S'_l ∘ (F_{l-1} W_l^- + S~_{l-1} D_l)``, ``A d = F_k / sqrt(n)``;
* reverse mode (Alg. 5): ``F_k = U ∘ S'_k``, ``F_l = F_{l+1} (W_{l+1}^-)^T ∘ S'_l``,
  ``D_l = S~_{l-1}^T F_l / sqrt(n)``.

``S~ D`` is ``S D^- + 1 d_b^T`` and ``S~^T F = [S^T F; 1^T F]``, so the augmented
matrices are never built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from shf import tensorlist as tl
from shf.models.autoencoder import CROSS_ENTROPY, Autoencoder, activation, affine, cross_entropy
from shf.tensorlist import Vec


def _aug_t_mm(S: Tensor, F: Tensor) -> Tensor:
    """``S~^T F = [S^T F ; 1^T F]`` (bias row last, as in eq. 1).

    Both blocks are written straight into the result (the first ``m`` rows of a
    row-major ``(m + 1) x p`` matrix are contiguous), so no concatenation copy is made.
    """
    m = S.shape[1]
    out = F.new_empty((m + 1, F.shape[1]))
    torch.mm(S.T, F, out=out[:m])
    torch.sum(F, dim=0, out=out[m])
    return out


class AutoencoderJacobian:
    """``A = grad R(w; X)`` of the autoencoder residual, with ``S_l, S'_l`` cached.

    Args:
        net: the architecture.
        w: weights ``(W_1, ..., W_k)``; not copied, must not change while in use.
        X: the batch, ``n x m_1``.
    """

    def __init__(self, net: Autoencoder, w: Sequence[Tensor], X: Tensor) -> None:
        net.check_weights(w)
        net.check_data(X)
        self.net = net
        self.w = list(w)
        self.X = X
        self.n = X.shape[0]
        self.scale = 1.0 / math.sqrt(self.n)
        # Forward pass once per HF iteration: S_0 = X, S_l and S'_l for l = 1..k (eq. 3, 15).
        S: list[Tensor] = [X]
        Sp: list[Tensor] = []
        for act, W in zip(net.activations, self.w):
            Sl, Spl = activation(act, affine(S[-1], W))
            S.append(Sl)
            Sp.append(Spl)
        self.S = S
        self.Sp = Sp
        self.cross_entropy = net.loss_name == CROSS_ENTROPY
        if not self.cross_entropy:
            # R(w; X) = (S_k - S_0)/sqrt(n)  (§3); the output factor of Alg. 4/5 is S'_k.
            self.out_factor = Sp[-1]
            self._R = (S[-1] - X).mul_(self.scale)
            self._loss = 0.5 * tl.sumsq(self._R)
        else:
            # Cross-entropy on logistic outputs (Martens 2010), written as least squares: its
            # Gauss-Newton matrix is J_z^T diag(s(1-s)) J_z / n with J_z the Jacobian of the
            # output pre-activations, so A = diag(sqrt(s(1-s))) J_z / sqrt(n), and the residual
            # with A^T R = grad f = J_z^T (S_k - X)/n is R = (S_k - X)/(sqrt(n) sqrt(s(1-s))).
            # sqrt(s(1-s)) is clamped at 1e-6 where the outputs saturate.
            root = torch.sqrt(Sp[-1]).clamp_(min=1e-6)
            self.out_factor = root
            self._R = (S[-1] - X) / root * self.scale
            self._loss = cross_entropy(net, self.w, X)
        # The output factor times 1/sqrt(n): applying it once at the output of forward mode
        # and at the input of reverse mode scales the whole product by 1/sqrt(n) (both are
        # linear), which saves a pass over the result (Alg. 4's last line, Alg. 5's D_l).
        self._out_scaled = self.out_factor * self.scale
        self._work: list[Tensor] | None = None

    def _workspace(self) -> list[Tensor]:
        """One ``n x m_{l+1}`` buffer per hidden layer for the intermediate ``F_l`` of the
        products, allocated on first use and reused by every later product.

        Fresh intermediates of tens of MB each are mapped and zeroed by the OS on every
        product (thousands of page faults per LSMR iteration at n = 6000); reusing them
        is worth 5-8% of a product there (``shf bench kernels``, docs/results/bench).
        """
        if self._work is None:
            self._work = [torch.empty_like(Sl) for Sl in self.S[1:-1]]
        return self._work

    @property
    def residual(self) -> Tensor:
        """``R(w; X) = (S_k - X)/sqrt(n)``."""
        return self._R

    @property
    def loss(self) -> float:
        """``f(w; X) = 1/2 ||R||_F^2`` (float64 accumulation)."""
        return self._loss

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """``(n m_1, n_var)``: the Jacobian's size as a matrix."""
        return (self.n * self.net.input_dim, self.net.n_params())

    def matvec(self, d: Vec) -> Vec:
        """Forward mode ``d -> grad R(w; X) d`` (Alg. 4); returns a new tensor."""
        assert isinstance(d, list)
        S, Sp, w = self.S, self.Sp, self.w
        k = len(w)  # >= 2 for an autoencoder
        work = self._workspace()
        # F_1 = S'_1 ∘ X~ D_1
        F = torch.addmm(d[0][-1], S[0], d[0][:-1], out=work[0]).mul_(Sp[0])
        for l in range(1, k):
            # F_l = S'_l ∘ (F_{l-1} W_l^- + S~_{l-1} D_l), the sum accumulated in place;
            # at l = k the factor is S'_k / sqrt(n), which also applies Alg. 4's F_k / sqrt(n).
            # (the hidden layers' F_l in the workspace; F_k, the result, in a new tensor)
            Z = torch.addmm(d[l][-1], S[l], d[l][:-1], out=work[l] if l < k - 1 else None)
            Z.addmm_(F, w[l][:-1])
            F = Z.mul_(Sp[l] if l < k - 1 else self._out_scaled)
        return F

    def backprop(
        self, U: Tensor, *, top: Tensor | None = None, out: list[Tensor] | None = None
    ) -> list[Tensor]:
        """The ``F_l`` of Alg. 5 for an output-space matrix ``U`` (no ``1/sqrt(n)``).

        ``top``, if given, is ``F_k`` itself (``U`` is then ignored). ``out``, if given,
        holds one buffer per hidden layer for ``F_1, ..., F_{k-1}``.
        """
        Sp, w = self.Sp, self.w
        k = len(w)
        # F_k = U ∘ S'_k  (the output factor)
        F = U * self.out_factor if top is None else top
        Fs: list[Tensor] = [F] * k
        for l in range(k - 2, -1, -1):
            # F_l = F_{l+1} (W_{l+1}^-)^T ∘ S'_l
            buf = out[l] if out is not None else None
            F = torch.mm(F, w[l + 1][:-1].T, out=buf).mul_(Sp[l])
            Fs[l] = F
        return Fs

    def rmatvec(self, U: Vec) -> Vec:
        """Reverse mode ``U -> grad R(w; X)^T U`` (Alg. 5); returns new tensors."""
        assert isinstance(U, Tensor)
        # F_k = U ∘ S'_k / sqrt(n): the 1/sqrt(n) of D_l applied once, at the top.
        Fs = self.backprop(U, top=U * self._out_scaled, out=self._workspace())
        # D_l = S~_{l-1}^T F_l / sqrt(n)
        return [_aug_t_mm(S, F) for S, F in zip(self.S, Fs)]

    def gradient(self) -> list[Tensor]:
        """``grad f(w; X) = grad R(w; X)^T R(w; X)`` (eq. 6)."""
        if self.cross_entropy:
            # grad f = J_z^T (S_k - X)/n directly, without the clamped division in R.
            return [_aug_t_mm(S, F).div_(self.n) for S, F in zip(self.S, self._backprop_residual())]
        g = self.rmatvec(self._R)
        assert isinstance(g, list)
        return g

    def _backprop_residual(self) -> list[Tensor]:
        """Alg. 5's ``F_l`` for the per-example gradients of the unscaled loss.

        Squared error: ``F_k = (S_k - X) ∘ S'_k``; cross-entropy on logistic outputs:
        ``F_k = S_k - X`` (the derivative with respect to the output pre-activation).
        """
        E = self.S[-1] - self.X
        return self.backprop(E, top=E) if self.cross_entropy else self.backprop(E)

    def range_norm(self, U: Vec) -> float:
        """``||U||_F`` (a single process holds the whole batch)."""
        return tl.norm(U)

    def per_example_gradient_stats(self) -> tuple[list[Tensor], list[Tensor]]:
        """``(grad f_S, sum_i (grad f_i)^2)`` without a per-example loop (NOTES item 6).

        With ``f_i = 1/2 ||r_i||^2`` and ``F_l`` backpropagated from the unscaled residual
        ``S_k - X``, ``grad_{W_l} f_i = s~_{l-1,i} f_{l,i}^T``, so
        ``sum_i (grad_{W_l} f_i)^2 = (S~_{l-1} ∘ S~_{l-1})^T (F_l ∘ F_l)`` and
        ``grad f_S = (1/n) S~_{l-1}^T F_l``.
        """
        Fs = self._backprop_residual()
        grad = [_aug_t_mm(S, F).div_(self.n) for S, F in zip(self.S, Fs)]
        sumsq = [_aug_t_mm(S * S, F * F) for S, F in zip(self.S, Fs)]
        return grad, sumsq
