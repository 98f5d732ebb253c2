"""Losses in least-squares form, so that LSMR applies to any of them.

SHF minimises ``f(w) = (1/n) sum_i l(z_i, y_i)`` with ``z_i = g(w; x_i)`` the model's
output for example ``i``. Its Gauss-Newton matrix is
``G = (1/n) sum_i J_i^T H_i J_i`` with ``J_i = dz_i/dw`` and ``H_i`` the Hessian of
``l`` in ``z_i``. Writing ``H_i = B_i B_i^T`` gives ``G = A^T A`` for

    A = (1/sqrt(n)) [B_1^T J_1; ...; B_n^T J_n],

the operator LSMR works with, and the residual ``R`` with ``A^T R = grad f`` is
``R_i = r_i / sqrt(n)`` with ``B_i r_i = dl/dz_i``. For the squared error
``l = 1/2 ||z - y||^2`` this is the paper's ``A = grad R``, ``R = (z - y)/sqrt(n)``
(§3, with ``B = I``).

Every loss here is a sum over an example's outputs and a mean over examples (the
paper's convention), so ``mse`` is ``(1/n) sum_i 1/2 ||z_i - y_i||^2``, not
``torch.nn.MSELoss``'s mean over all entries.

=============== ======================================= ======================================
name            ``l(z, y)``                             ``B`` (``H = B B^T``)
=============== ======================================= ======================================
``mse``         ``1/2 ||z - y||^2``                     ``I``
``bce``         ``sum_j softplus(z_j) - y_j z_j``       ``diag(sqrt(s (1 - s)))``, ``s = sigmoid(z)``
                (binary cross-entropy on logits)
``cross_entropy`` ``logsumexp(z) - z_y``, integer ``y``  ``diag(sqrt p) - p sqrt(p)^T``, ``p = softmax(z)``
:class:`Residual` ``1/2 ||rho(z, y)||^2`` for a user's    ``I`` on ``rho``'s output
                  function ``rho``
=============== ======================================= ======================================

The residuals ``r`` with ``B r = dl/dz`` need a division by ``sqrt(s (1 - s))`` (``bce``)
or ``sqrt(p_y)`` (``cross_entropy``); those square roots are clamped below at
:data:`ROOT_FLOOR` where the outputs saturate, so ``A^T R`` equals the gradient except
at saturated outputs. The gradient itself is always computed from ``dl/dz`` directly.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from shf import batch as bt
from shf import tensorlist as tl
from shf.batch import Inputs
from shf.errors import ConfigError, DataError

ROOT_FLOOR = 1e-6
"""Lower bound on ``sqrt(s(1-s))`` and ``sqrt(p_y)`` when they divide a residual: beyond
it the residual's size (up to 1e6 per entry) would only reflect a saturated output."""


class LossPoint(ABC):
    """A loss evaluated at the outputs ``z`` and targets ``y`` of one batch.

    Range-space vectors (``residual``, the argument of :meth:`b`, the result of
    :meth:`bt`) have :attr:`range_shape`; output-space ones have ``z``'s shape.
    """

    z: Tensor
    y: Tensor
    _r: Tensor
    _g: Tensor

    @property
    def residual(self) -> Tensor:
        """``r`` with ``B_i r_i = dl/dz_i`` for every example (no ``1/sqrt(n)``)."""
        return self._r

    @property
    def grad_z(self) -> Tensor:
        """``dl/dz_i`` for every example (output-space)."""
        return self._g

    @abstractmethod
    def bt(self, v: Tensor) -> Tensor:
        """``B_i^T v_i`` for every example: output space -> range space."""

    @abstractmethod
    def b(self, u: Tensor) -> Tensor:
        """``B_i u_i`` for every example: range space -> output space."""

    @property
    def range_shape(self) -> tuple[int, ...]:
        """Shape of a range-space vector for this batch."""
        return tuple(self.z.shape)

    def total(self) -> float:
        """``sum_i l(z_i, y_i)``, accumulated in float64."""
        return tl.sum64(self.per_example())

    @abstractmethod
    def per_example(self) -> Tensor:
        """``l(z_i, y_i)`` for every example, shape ``(n,)``."""


class Loss(ABC):
    """A loss with its least-squares form (see the module docstring)."""

    name: str = ""

    @abstractmethod
    def at(self, z: Tensor, y: Tensor) -> LossPoint:
        """The loss and its factor ``B`` at outputs ``z`` and targets ``y``."""

    def check(self, out_shape: tuple[int, ...], y: Tensor) -> None:
        """Raise :class:`DataError` unless ``y`` (all targets) fits outputs whose rows have
        shape ``out_shape`` (the output's shape without its first, example dimension)."""
        if tuple(y.shape[1:]) != tuple(out_shape):
            raise DataError(
                f"{self.name}: each target must have the model output's shape {tuple(out_shape)}, "
                f"got {tuple(y.shape[1:])}"
            )
        if not y.is_floating_point():
            raise DataError(f"{self.name}: targets must be floating point, got {y.dtype}")

    def transform(self, z: Tensor, y: Tensor) -> Tensor:
        """What the loss sees of the model output (the identity except for :class:`Residual`)."""
        return z

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _per_example_sum(t: Tensor) -> Tensor:
    """Sum over every dimension but the first (examples)."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


class _SquaredPoint(LossPoint):
    def __init__(self, z: Tensor, y: Tensor) -> None:
        self.z, self.y = z, y
        self._r = z - y  # r = z - y, B = I
        self._g = self._r  # dl/dz = z - y

    def bt(self, v: Tensor) -> Tensor:
        return v

    def b(self, u: Tensor) -> Tensor:
        return u

    def per_example(self) -> Tensor:
        return 0.5 * _per_example_sum(self._r * self._r)

    def total(self) -> float:
        return 0.5 * tl.sumsq(self._r)


class MSE(Loss):
    """``l(z, y) = 1/2 ||z - y||^2`` (the paper's loss, §3): ``B = I``, ``r = z - y``."""

    name = "mse"

    def at(self, z: Tensor, y: Tensor) -> LossPoint:
        return _SquaredPoint(z, y)


class _BCEPoint(LossPoint):
    def __init__(self, z: Tensor, y: Tensor) -> None:
        self.z, self.y = z, y
        s = torch.sigmoid(z)
        self._g = s - y  # dl/dz = s - y
        # H = diag(s (1 - s)) = B B^T with B = diag(sqrt(s (1 - s)))
        self._root = torch.sqrt(s * (1.0 - s))
        self._r = self._g / self._root.clamp(min=ROOT_FLOOR)  # B r = s - y

    def bt(self, v: Tensor) -> Tensor:
        return v * self._root

    def b(self, u: Tensor) -> Tensor:
        return u * self._root

    def per_example(self) -> Tensor:
        # softplus(z) - y z = -[y log s + (1 - y) log(1 - s)], without a log of 0
        return _per_example_sum(torch.nn.functional.softplus(self.z) - self.y * self.z)


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits, summed over outputs: ``B = diag(sqrt(s(1-s)))``."""

    name = "bce"

    def at(self, z: Tensor, y: Tensor) -> LossPoint:
        return _BCEPoint(z, y)

    def check(self, out_shape: tuple[int, ...], y: Tensor) -> None:
        super().check(out_shape, y)
        if bool(((y < 0) | (y > 1)).any()):
            raise DataError("bce: targets must lie in [0, 1]")


class _SoftmaxPoint(LossPoint):
    def __init__(self, z: Tensor, y: Tensor) -> None:
        self.z, self.y = z, y
        label = y.long()[:, None]  # any integer dtype of labels
        logp = torch.log_softmax(z, dim=1)
        self._nll = -logp.gather(1, label)[:, 0]  # l = logsumexp(z) - z_y
        p = logp.exp()
        self._p = p
        self._sqrtp = torch.sqrt(p)
        onehot = torch.zeros_like(p).scatter_(1, label, 1.0)
        self._g = p - onehot  # dl/dz = p - e_y
        # r = (p - e_y) / sqrt(p) solves B r = p - e_y and is orthogonal to null(B) = span(sqrt p);
        # sqrt(p_y) is clamped where the model is confidently wrong.
        self._r = self._g / self._sqrtp.clamp(min=ROOT_FLOOR)

    def bt(self, v: Tensor) -> Tensor:
        # B^T v = sqrt(p) ∘ v - sqrt(p) (p^T v)
        return self._sqrtp * (v - (self._p * v).sum(dim=1, keepdim=True))

    def b(self, u: Tensor) -> Tensor:
        # B u = sqrt(p) ∘ u - p (sqrt(p)^T u)
        return self._sqrtp * u - self._p * (self._sqrtp * u).sum(dim=1, keepdim=True)

    def per_example(self) -> Tensor:
        return self._nll


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits ``z`` (``n x C``) with integer labels ``y`` in ``[0, C)``.

    ``H = diag(p) - p p^T = B B^T`` with ``B = diag(sqrt p) - p sqrt(p)^T``.
    """

    name = "cross_entropy"

    def at(self, z: Tensor, y: Tensor) -> LossPoint:
        return _SoftmaxPoint(z, y)

    def check(self, out_shape: tuple[int, ...], y: Tensor) -> None:
        if len(out_shape) != 1:
            raise DataError(
                "cross_entropy: the model must output (n, classes) logits, "
                f"got rows of shape {tuple(out_shape)}"
            )
        if y.dim() != 1:
            raise DataError(
                f"cross_entropy: targets must be a 1-D tensor of labels, got shape {tuple(y.shape)}"
            )
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise DataError(f"cross_entropy: targets must be integer class labels, got {y.dtype}")
        classes = out_shape[0]
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise DataError(
                f"cross_entropy: labels must lie in [0, {classes - 1}] for {classes} outputs, "
                f"got labels from {int(y.min())} to {int(y.max())}"
            )


class Residual(Loss):
    """A user's residual ``rho(z, y)``: ``l = 1/2 ||rho(z, y)||^2`` (nonlinear least squares).

    ``rho`` must be differentiable with torch operations and work example by example
    (row ``i`` of its result depends only on row ``i`` of ``z`` and ``y``), e.g.
    ``lambda z, y: (z - y) / sigma`` for weighted least squares.
    """

    name = "residual"

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        if not callable(fn):
            raise ConfigError(f"Residual needs a function (outputs, targets) -> residual, got {fn!r}")
        self.fn = fn

    def transform(self, z: Any, y: Tensor) -> Tensor:
        """``rho(z, y)``; ``z`` is whatever the model returns (a tensor, or a tuple or dict of
        them that ``rho`` picks from or combines), ``y`` the targets, one row per example."""
        r = self.fn(z, y)
        n = y.shape[0]
        if not isinstance(r, Tensor) or r.dim() == 0 or r.shape[0] != n:
            raise DataError(
                "the residual function must return a tensor with one row per example "
                f"({n}), got {getattr(r, 'shape', type(r).__name__)}"
            )
        return r

    def at(self, z: Tensor, y: Tensor) -> LossPoint:
        # z here is already rho(model output, y): the squared error against 0.
        return _SquaredPoint(z, torch.zeros_like(z))

    def check(self, out_shape: tuple[int, ...], y: Tensor) -> None:
        pass  # any targets the user's function accepts (checked by calling it on two rows)

    def __repr__(self) -> str:
        return f"Residual({getattr(self.fn, '__name__', self.fn)!r})"


LOSSES: dict[str, type[Loss]] = {"mse": MSE, "bce": BCEWithLogits, "cross_entropy": CrossEntropy}


def get_loss(loss: str | Loss | Callable[[Tensor, Tensor], Tensor]) -> Loss:
    """A :class:`Loss` from a name (``mse``, ``bce``, ``cross_entropy``), an instance, or a
    residual function (wrapped in :class:`Residual`)."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        key = loss.lower().replace("-", "_")
        key = {"squared": "mse", "bce_with_logits": "bce", "ce": "cross_entropy"}.get(key, key)
        if key not in LOSSES:
            raise ConfigError(
                f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}, a shf.losses.Loss, "
                "or a residual function (outputs, targets) -> residual"
            )
        return LOSSES[key]()
    if callable(loss):
        return Residual(loss)
    raise ConfigError(f"loss must be a name, a shf.losses.Loss or a function, got {type(loss).__name__}")


def finite_or_inf(value: float) -> float:
    """``value``, or ``+inf`` when it is NaN (an overflowed loss compares as worst)."""
    return value if value == value else math.inf


def chunked_mean(term: Callable[[Any, Tensor], float], X: Inputs, Y: Tensor, chunk: int = 8192) -> float:
    """``(1/n) sum over chunks of term(X_c, Y_c)`` without autograd, chunks of ``chunk`` rows (a
    loss over a large set without its whole forward pass in memory); ``inf`` for NaN. ``X``: a
    tensor or a dict of tensors (:mod:`shf.batch`)."""
    n = bt.rows(X)
    total = 0.0
    with torch.no_grad():
        for start in range(0, n, chunk):
            total += term(bt.take(X, slice(start, start + chunk)), Y[start : start + chunk])
    return finite_or_inf(total / n)
