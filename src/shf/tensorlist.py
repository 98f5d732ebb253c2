"""Algebra on the paper's weight space ``W`` (§3.1, eq. 1) and its output space ``X``.

The paper keeps the weights as a *vector of matrices* ``w = (W_1, ..., W_k)`` and
never flattens them. Every solver in :mod:`shf` works on a ``Vec``: either a single
tensor (a point of the output space ``X = R^{n x m_1}``, or a dense vector) or a list
of tensors (a point of ``W``). The operations below are the ones §3.1 defines:

* ``<a, b> = sum_l A_l • B_l`` (Frobenius inner product summed over layers),
* ``||w||_2 = sqrt(<w, w>)``, ``||w||_1 = sum_l sum_ij |(W_l)_ij|``,
* ``v + w``, ``alpha v`` and the Hadamard product ``v ∘ w`` layer by layer.

Inner products and norms return Python floats accumulated in float64 so that the
scalar recurrences of LSMR/CG run in double precision whatever the tensor dtype.
List operations use ``torch._foreach_*`` kernels (one launch for all layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import torch
from torch import Tensor

Vec: TypeAlias = Tensor | list[Tensor]
"""A point of ``W`` (list of matrices) or of the output space (one tensor)."""


def _is_list(x: Vec) -> bool:
    return isinstance(x, (list, tuple))


def _rows(t: Tensor) -> Tensor:
    """``t`` as a matrix of about ``sqrt(numel)`` columns (a view when ``t`` is contiguous).

    Reductions over the rows run in ``t``'s dtype over few elements each, and the row
    results are then added in float64: accurate to about float32's epsilon whatever
    the size, without the full-size float64 copy a cast would make (NOTES: LSMR's
    ``alpha`` and ``beta`` are norms of vectors of up to millions of entries).
    """
    if t.dim() == 2 and 16 <= t.shape[1] <= 8192:
        return t  # already rows of a suitable width (a batch, a weight matrix)
    flat = t.reshape(-1)
    width = max(1, math.isqrt(flat.numel()))
    if flat.numel() % width:
        return flat.reshape(1, -1) if flat.numel() <= 4096 else _rows_padded(flat, width)
    return flat.view(-1, width)


def _rows_padded(flat: Tensor, width: int) -> Tensor:
    pad = (-flat.numel()) % width
    return torch.cat([flat, flat.new_zeros(pad)]).view(-1, width)


def sum64(t: Tensor) -> float:
    """``sum(t)`` accumulated in float64 (row sums in ``t``'s dtype, then float64)."""
    if t.dtype == torch.float64:
        return float(torch.sum(t))
    return float(torch.sum(_rows(t).sum(dim=1, dtype=t.dtype).double()))


def sumsq(t: Tensor) -> float:
    """``||t||_F^2`` accumulated in float64 (row norms in ``t``'s dtype, then float64)."""
    if t.dtype == torch.float64:
        return float(torch.linalg.vector_norm(t)) ** 2
    r = torch.linalg.vector_norm(_rows(t), dim=1).double()
    return float(torch.dot(r, r))


def dot(a: Vec, b: Vec) -> float:
    """Inner product ``<a, b> = sum_l A_l • B_l`` (§3.1), accumulated in float64."""
    if _is_list(a):
        assert isinstance(a, list) and isinstance(b, list)
        return math.fsum(sum64(x * y) for x, y in zip(a, b))
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    return sum64(a * b)


def norm(a: Vec) -> float:
    """Euclidean norm ``||a||_2 = sqrt(<a, a>)`` (Frobenius over all layers), float64 accumulation."""
    if _is_list(a):
        assert isinstance(a, list)
        return math.sqrt(math.fsum(sumsq(x) for x in a))
    assert isinstance(a, Tensor)
    return math.sqrt(sumsq(a))


def norm1(a: Vec) -> float:
    """``||a||_1 = sum_l sum_ij |(A_l)_ij|`` (§3.1)."""
    if _is_list(a):
        assert isinstance(a, list)
        return float(sum(torch.sum(x.abs(), dtype=torch.float64) for x in a))
    assert isinstance(a, Tensor)
    return float(torch.sum(a.abs(), dtype=torch.float64))


def scale(alpha: float, a: Vec) -> Vec:
    """``alpha a`` as a new vector."""
    if _is_list(a):
        assert isinstance(a, list)
        return list(torch._foreach_mul(a, alpha))
    assert isinstance(a, Tensor)
    return a * alpha


def scale_(a: Vec, alpha: float) -> Vec:
    """In place ``a <- alpha a``; returns ``a``."""
    if _is_list(a):
        assert isinstance(a, list)
        torch._foreach_mul_(a, alpha)
        return a
    assert isinstance(a, Tensor)
    return a.mul_(alpha)


def axpy(alpha: float, x: Vec, y: Vec) -> Vec:
    """``y + alpha x`` as a new vector."""
    if _is_list(x):
        assert isinstance(x, list) and isinstance(y, list)
        return list(torch._foreach_add(y, x, alpha=alpha))
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    return torch.add(y, x, alpha=alpha)


def axpy_(alpha: float, x: Vec, y: Vec) -> Vec:
    """In place ``y <- y + alpha x``; returns ``y``."""
    if _is_list(x):
        assert isinstance(x, list) and isinstance(y, list)
        torch._foreach_add_(y, x, alpha=alpha)
        return y
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    return y.add_(x, alpha=alpha)


def mul_(a: Vec, b: Vec) -> Vec:
    """In place ``a <- a ∘ b``; returns ``a``."""
    if _is_list(a):
        assert isinstance(a, list) and isinstance(b, list)
        torch._foreach_mul_(a, b)
        return a
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    return a.mul_(b)


def addcmul_(y: Vec, a: Vec, b: Vec) -> Vec:
    """In place ``y <- y + a ∘ b``; returns ``y`` (one pass, no temporary)."""
    if _is_list(y):
        assert isinstance(y, list) and isinstance(a, list) and isinstance(b, list)
        torch._foreach_addcmul_(y, a, b)
        return y
    assert isinstance(y, Tensor) and isinstance(a, Tensor) and isinstance(b, Tensor)
    return y.addcmul_(a, b)


def xpay_(x: Vec, alpha: float, y: Vec) -> Vec:
    """In place ``y <- x + alpha y``; returns ``y`` (one pass, no temporary)."""
    if _is_list(x):
        assert isinstance(x, list) and isinstance(y, list)
        for xi, yi in zip(x, y):
            torch.add(xi, yi, alpha=alpha, out=yi)
        return y
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    return torch.add(x, y, alpha=alpha, out=y)


def add(a: Vec, b: Vec) -> Vec:
    """``a + b``."""
    return axpy(1.0, b, a)


def sub(a: Vec, b: Vec) -> Vec:
    """``a - b``."""
    return axpy(-1.0, b, a)


def mul(a: Vec, b: Vec) -> Vec:
    """Hadamard product ``a ∘ b`` (§3.1), layer by layer."""
    if _is_list(a):
        assert isinstance(a, list) and isinstance(b, list)
        return list(torch._foreach_mul(a, b))
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    return a * b


def div(a: Vec, b: Vec) -> Vec:
    """Componentwise ``a / b``."""
    if _is_list(a):
        assert isinstance(a, list) and isinstance(b, list)
        return list(torch._foreach_div(a, b))
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    return a / b


def zeros_like(a: Vec) -> Vec:
    """The zero vector of ``a``'s space."""
    if _is_list(a):
        assert isinstance(a, list)
        return [torch.zeros_like(x) for x in a]
    assert isinstance(a, Tensor)
    return torch.zeros_like(a)


def clone(a: Vec) -> Vec:
    """A deep copy of ``a``."""
    if _is_list(a):
        assert isinstance(a, list)
        return [x.clone() for x in a]
    assert isinstance(a, Tensor)
    return a.clone()


def copy_(dst: Vec, src: Vec) -> Vec:
    """In place ``dst <- src``; returns ``dst``."""
    if _is_list(dst):
        assert isinstance(dst, list) and isinstance(src, list)
        for d, s in zip(dst, src):
            d.copy_(s)
        return dst
    assert isinstance(dst, Tensor) and isinstance(src, Tensor)
    return dst.copy_(src)


def all_finite(a: Vec) -> bool:
    """True when no entry of ``a`` is NaN or infinite."""
    if _is_list(a):
        assert isinstance(a, list)
        return all(bool(torch.isfinite(x).all()) for x in a)
    assert isinstance(a, Tensor)
    return bool(torch.isfinite(a).all())


def flatten(a: Vec) -> Tensor:
    """Concatenate into one 1-D tensor (row-major per layer).

    Only for tests, dense references and the dense Jacobian of a model with a handful of
    weights (G16, :mod:`shf.curvature.module`): the algorithms never flatten.
    """
    if _is_list(a):
        assert isinstance(a, list)
        return torch.cat([x.reshape(-1) for x in a])
    assert isinstance(a, Tensor)
    return a.reshape(-1)


def unflatten(v: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Inverse of :func:`flatten` for the shapes of ``like``."""
    total = sum(x.numel() for x in like)
    if v.numel() != total:
        raise ValueError(f"vector of length {v.numel()} does not match {total} weights")
    out: list[Tensor] = []
    i = 0
    for x in like:
        out.append(v[i : i + x.numel()].reshape(x.shape).to(x.dtype))
        i += x.numel()
    return out
