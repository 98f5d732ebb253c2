"""The logistic MLP of §3 and its hand-written Jacobian products (§4.6, Alg. 4 and 5).

A network of layer sizes ``(m_1, ..., m_{k+1})`` has weights ``w = (W_1, ..., W_k)``,
``W_l`` of shape ``(m_l + 1) x m_{l+1}`` with the bias in its last row (eq. 1), and
layer ``l`` computes ``S_l = sigma_l(S~_{l-1} W_l)`` (eq. 3) with ``S~ = [S 1]``. The
loss is ``f = (1/n) sum_i 1/2 ||s_{k,i} - y_i||^2 = 1/2 ||R||_F^2`` with the residual
``R = (S_k - Y)/sqrt(n)`` (§3; the autoencoder's targets are its inputs, ``Y = X``), or
cross-entropy on logistic outputs (Martens 2010).

For a batch ``X`` (``n`` rows) the operator caches ``S_l`` (eq. 3) and
``S'_l = sigma'_l(S~_{l-1} W_l)`` (eq. 15) once, then every product is a chain of
matrix products:

* forward mode (Alg. 4): ``F_1 = S'_1 ∘ X~ D_1``,
  ``F_l = S'_l ∘ (F_{l-1} W_l^- + S~_{l-1} D_l)``, ``A d = F_k / sqrt(n)``;
* reverse mode (Alg. 5): ``F_k = U ∘ S'_k``, ``F_l = F_{l+1} (W_{l+1}^-)^T ∘ S'_l``,
  ``D_l = S~_{l-1}^T F_l / sqrt(n)``.

``S~ D`` is ``S D^- + 1 d_b^T`` and ``S~^T F = [S^T F; 1^T F]``, so the augmented
matrices are never built. This module knows nothing of autoencoders: the architecture
is any :class:`MLPSpec` (:class:`shf.models.Autoencoder` is one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor

from shf import tensorlist as tl
from shf.curvature.losses import chunked_mean
from shf.errors import ConfigError
from shf.tensorlist import Vec

LOGISTIC = "logistic"
LINEAR = "linear"
ACTIVATIONS = (LOGISTIC, LINEAR)
SQUARED = "squared"
CROSS_ENTROPY = "cross_entropy"
LOSSES = (SQUARED, CROSS_ENTROPY)


class MLPSpec(Protocol):
    """What the hand-written operator needs to know of a network."""

    @property
    def activations(self) -> tuple[str, ...]:
        """One activation (``logistic``/``linear``) per weight matrix."""
        ...

    @property
    def loss_name(self) -> str:
        """``squared`` or ``cross_entropy`` (on logistic outputs)."""
        ...

    def weight_shapes(self) -> list[tuple[int, int]]:
        """``(m_l + 1, m_{l+1})`` for ``l = 1..k``."""
        ...


def weight_count(spec: MLPSpec) -> int:
    """``n_var = sum_l (m_l + 1) m_{l+1}`` (§4)."""
    return sum(a * b for a, b in spec.weight_shapes())


def check_weights(spec: MLPSpec, w: Sequence[Tensor]) -> None:
    """Raise ``ValueError`` unless ``w`` has the network's shapes."""
    shapes = spec.weight_shapes()
    if len(w) != len(shapes):
        raise ValueError(f"expected {len(shapes)} weight matrices, got {len(w)}")
    for l, (W, s) in enumerate(zip(w, shapes), start=1):
        if tuple(W.shape) != s:
            raise ValueError(f"W_{l} must have shape {s}, got {tuple(W.shape)}")


def check_batch(spec: MLPSpec, X: Tensor, name: str = "X", *, output: bool = False) -> None:
    """Raise ``ValueError`` for a batch of inputs (or targets, ``output``) of the wrong width."""
    shapes = spec.weight_shapes()
    width = shapes[-1][1] if output else shapes[0][0] - 1
    if X.dim() != 2 or X.shape[1] != width:
        raise ValueError(f"{name} must have shape (n, {width}), got {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty")


def activation(name: str, Z: Tensor) -> tuple[Tensor, Tensor]:
    """``(sigma(Z), sigma'(Z))`` for a named elementwise activation (eq. 3 and 15)."""
    if name == LOGISTIC:
        S = torch.sigmoid(Z)
        return S, S * (1.0 - S)  # logistic: sigma' = sigma (1 - sigma)
    if name == LINEAR:
        return Z, torch.ones_like(Z)
    raise ConfigError(f"unknown activation {name!r}; choose from {ACTIVATIONS}")


def affine(S: Tensor, W: Tensor) -> Tensor:
    """``S~ W = S W^- + 1 w_b^T`` with ``W^-`` the first ``m_l`` rows, ``w_b`` the bias row."""
    return torch.addmm(W[-1], S, W[:-1])


def pre_activations(spec: MLPSpec, w: Sequence[Tensor], X: Tensor) -> tuple[Tensor, Tensor]:
    """``(S_k, Z_k)``: the output and the output layer's pre-activation (eq. 3), not in place
    (autograd may run through it)."""
    S = X
    Z = X
    for act, W in zip(spec.activations, w):
        Z = affine(S, W)
        S = torch.sigmoid(Z) if act == LOGISTIC else Z
    return S, Z


def forward(spec: MLPSpec, w: Sequence[Tensor], X: Tensor) -> Tensor:
    """Output ``S_k`` for the rows of ``X`` (eq. 3), without caching (in place: no autograd)."""
    S = X
    for act, W in zip(spec.activations, w):
        Z = affine(S, W)
        S = Z.sigmoid_() if act == LOGISTIC else Z  # in place: Z is a new tensor
    return S


def objective_tensor(spec: MLPSpec, w: Sequence[Tensor], X: Tensor, Y: Tensor | None = None) -> Tensor:
    """The training objective on a batch as a differentiable tensor (mean over rows)."""
    Y = X if Y is None else Y
    S, Z = pre_activations(spec, w, X)
    if spec.loss_name == CROSS_ENTROPY:
        return (torch.nn.functional.softplus(Z) - Y * Z).sum() / X.shape[0]
    return 0.5 * ((S - Y) ** 2).sum() / X.shape[0]


Outputs = Callable[[Tensor], Tensor]
"""``rows -> Z_k``: the output layer's pre-activations for a chunk of rows at fixed weights (a
source other than a forward pass, e.g. :class:`shf.models.autoencoder.OutputMemo`; never modified)."""


def loss(
    spec: MLPSpec, w: Sequence[Tensor], X: Tensor, Y: Tensor | None = None, chunk: int = 8192,
    outputs: Outputs | None = None,
) -> float:  # fmt: skip
    """``f(w; X) = (1/n) sum_i 1/2 ||s_{k,i} - y_i||^2`` (§3; ``Y = X`` by default), in chunks of rows.

    Accumulated in float64; returns ``inf`` rather than NaN if the network overflows. ``outputs``:
    where the output pre-activations come from (default: a forward pass, in place).
    """

    def term(Xc: Tensor, Yc: Tensor) -> float:
        if outputs is None:
            S = forward(spec, w, Xc)
        else:  # not in place: the source's Z_k stays intact
            Z = outputs(Xc)
            S = torch.sigmoid(Z) if spec.activations[-1] == LOGISTIC else Z.clone()
        # float64 accumulation without a float64 copy of the residual
        return 0.5 * tl.sumsq(S.sub_(Yc))

    return chunked_mean(term, X, X if Y is None else Y, chunk)


def cross_entropy(
    spec: MLPSpec, w: Sequence[Tensor], X: Tensor, Y: Tensor | None = None, chunk: int = 8192,
    outputs: Outputs | None = None,
) -> float:  # fmt: skip
    """``(1/n) sum_i sum_j -[y_ij log s_ij + (1 - y_ij) log(1 - s_ij)]`` on logistic outputs.

    Computed from the output pre-activations ``z`` as ``softplus(z) - y z`` (no log of 0);
    ``outputs``: where they come from (default: a forward pass).
    """

    def term(Xc: Tensor, Yc: Tensor) -> float:
        Z = pre_activations(spec, w, Xc)[1] if outputs is None else outputs(Xc)
        return tl.sum64(torch.nn.functional.softplus(Z).sub_(Yc * Z))

    return chunked_mean(term, X, X if Y is None else Y, chunk)


def objective(
    spec: MLPSpec, w: Sequence[Tensor], X: Tensor, Y: Tensor | None = None, outputs: Outputs | None = None
) -> float:
    """The training objective at ``(w, X, Y)``: :func:`loss` or :func:`cross_entropy`."""
    if spec.loss_name == CROSS_ENTROPY:
        return cross_entropy(spec, w, X, Y, outputs=outputs)
    return loss(spec, w, X, Y, outputs=outputs)


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


class MLPJacobian:
    """``A = grad R(w; X)`` of the network's residual, with ``S_l, S'_l`` cached.

    Args:
        net: the architecture.
        w: weights ``(W_1, ..., W_k)``; not copied, must not change while in use.
        X: the batch, ``n x m_1``.
        Y: the targets, ``n x m_{k+1}`` (``None``: ``X``, the autoencoder's).
    """

    def __init__(self, net: MLPSpec, w: Sequence[Tensor], X: Tensor, Y: Tensor | None = None) -> None:
        check_weights(net, w)
        check_batch(net, X)
        if Y is not None:
            check_batch(net, Y, "Y", output=True)
        self.net = net
        self.w = list(w)
        self.X = X
        self.Y = X if Y is None else Y
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
            # R(w; X) = (S_k - Y)/sqrt(n)  (§3, Y = S_0 for an autoencoder); the output
            # factor of Alg. 4/5 is S'_k.
            self.out_factor = Sp[-1]
            self._R = (S[-1] - self.Y).mul_(self.scale)
            self._loss = 0.5 * tl.sumsq(self._R)
        else:
            # Cross-entropy on logistic outputs (Martens 2010), written as least squares: its
            # Gauss-Newton matrix is J_z^T diag(s(1-s)) J_z / n with J_z the Jacobian of the
            # output pre-activations, so A = diag(sqrt(s(1-s))) J_z / sqrt(n), and the residual
            # with A^T R = grad f = J_z^T (S_k - X)/n is R = (S_k - X)/(sqrt(n) sqrt(s(1-s))).
            # sqrt(s(1-s)) is clamped at 1e-6 where the outputs saturate.
            root = torch.sqrt(Sp[-1]).clamp_(min=1e-6)
            self.out_factor = root
            self._R = (S[-1] - self.Y) / root * self.scale
            self._loss = cross_entropy(net, self.w, X, self.Y)
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
        return (int(self._R.numel()), weight_count(self.net))

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
        E = self.S[-1] - self.Y
        return self.backprop(E, top=E) if self.cross_entropy else self.backprop(E)

    def range_norm(self, U: Vec) -> float:
        """``||U||_F`` (a single process holds the whole batch)."""
        return tl.norm(U)

    def per_example_sumsq(self, U: Tensor) -> list[Tensor]:
        """``sum_i (a_i^T u_i)^2`` for range-space rows ``u_i`` (``a_i`` the unscaled per-example
        block of ``A``): ``(S~_{l-1} ∘ S~_{l-1})^T (F_l ∘ F_l)`` with ``F_l`` Alg. 5's backward
        pass of ``U`` (NOTES item 1)."""
        return [_aug_t_mm(S * S, F * F) for S, F in zip(self.S, self.backprop(U))]

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


AutoencoderJacobian = MLPJacobian
"""The name used where the network is the paper's autoencoder."""
