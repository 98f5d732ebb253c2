"""Float64 references shared by the tests: autograd Jacobians of the autoencoder residual."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from shf import tensorlist as tl
from shf.models.autoencoder import Autoencoder, forward, sparse_init


def residual_fn(net: Autoencoder, X: Tensor):  # type: ignore[no-untyped-def]
    """``w -> R(w; X) = (S_k - X)/sqrt(n)`` as a function of a tuple of weights."""
    n = X.shape[0]

    def R(*w: Tensor) -> Tensor:
        return (forward(net, list(w), X) - X) / math.sqrt(n)

    return R


def dense_jacobian(net: Autoencoder, w: list[Tensor], X: Tensor) -> Tensor:
    """``grad R(w; X)`` as an ``(n m_1) x n_var`` matrix (columns: flattened weights)."""
    jac = torch.autograd.functional.jacobian(residual_fn(net, X), tuple(w))
    n_out = X.numel()
    return torch.cat([J.reshape(n_out, -1) for J in jac], dim=1)


def tiny_problem(
    encoder: tuple[int, ...], n: int, *, linear_code: bool = False, seed: int = 0
) -> tuple[Autoencoder, list[Tensor], Tensor]:
    """A small float64 autoencoder with dense random weights and data in (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    net = Autoencoder(encoder, linear_code=linear_code)
    w = sparse_init(net, m0=max(encoder), sigma=1.0, generator=g, dtype=torch.float64)
    # Non-zero biases so the bias rows are exercised too.
    w = [W + 0.1 * torch.randn(W.shape, generator=g, dtype=torch.float64) for W in w]
    X = torch.rand(n, encoder[0], generator=g, dtype=torch.float64)
    return net, w, X


def random_like(w: list[Tensor], seed: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(W.shape, generator=g, dtype=W.dtype) for W in w]


__all__ = ["dense_jacobian", "random_like", "residual_fn", "tiny_problem", "tl"]


class LinearJacobian:
    """The constant Jacobian ``M`` of ``R(w) = M vec(W) - y`` (a linear least-squares problem)."""

    def __init__(self, model: LinearLSQ, w: list[Tensor]) -> None:
        self.model = model
        self.wshape = w[0].shape
        self._R = model.M @ w[0].reshape(-1) - model.y
        self._loss = 0.5 * float(self._R @ self._R)

    @property
    def residual(self) -> Tensor:
        return self._R

    @property
    def loss(self) -> float:
        return self._loss

    def matvec(self, d):  # type: ignore[no-untyped-def]
        return self.model.M @ d[0].reshape(-1)

    def rmatvec(self, u):  # type: ignore[no-untyped-def]
        return [(self.model.M.T @ u).reshape(self.wshape)]

    def gradient(self) -> list[Tensor]:
        return self.rmatvec(self._R)

    def range_norm(self, u: Tensor) -> float:
        return float(u.norm())


class LinearLSQ:
    """``f(w) = 1/2 ||M vec(W) - y||^2`` as a :class:`shf.curvature.base.ResidualModel` (X unused)."""

    def __init__(self, M: Tensor, y: Tensor, shape: tuple[int, int]) -> None:
        self.M, self.y, self.shape = M, y, shape

    def jacobian(self, w: list[Tensor], X: Tensor, Y: Tensor | None = None) -> LinearJacobian:
        return LinearJacobian(self, w)

    def loss(self, w: list[Tensor], X: Tensor, Y: Tensor | None = None) -> float:
        r = self.M @ w[0].reshape(-1) - self.y
        return 0.5 * float(r @ r)

    def check_batch(self, w: list[Tensor], X: Tensor, Y: Tensor | None) -> None:
        pass


def cross_entropy_fn(net: Autoencoder, X: Tensor):  # type: ignore[no-untyped-def]
    """``w -> (1/n) sum -[x log s + (1-x) log(1-s)]`` and ``w -> Z_k`` (output pre-activations)."""
    n = X.shape[0]

    def logits(*w: Tensor) -> Tensor:
        S = X
        Z = X
        for act, W in zip(net.activations, w):
            Z = W[-1] + S @ W[:-1]
            S = torch.sigmoid(Z) if act == "logistic" else Z
        return Z

    def f(*w: Tensor) -> Tensor:
        Z = logits(*w)
        return (torch.nn.functional.softplus(Z) - X * Z).sum() / n

    return f, logits
