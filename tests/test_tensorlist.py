"""Weight-list algebra (§3.1) against flattened float64 references."""

from __future__ import annotations

import math

import pytest
import torch

from shf import tensorlist as tl


def _pair():
    g = torch.Generator().manual_seed(0)
    a = [
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 2, generator=g, dtype=torch.float64),
    ]
    b = [
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 2, generator=g, dtype=torch.float64),
    ]
    return a, b


def test_inner_products_and_norms_match_flat():
    a, b = _pair()
    fa, fb = tl.flatten(a), tl.flatten(b)
    assert tl.dot(a, b) == pytest.approx(float(fa @ fb), rel=1e-14)
    assert tl.norm(a) == pytest.approx(float(fa.norm()), rel=1e-14)
    assert tl.norm1(a) == pytest.approx(float(fa.abs().sum()), rel=1e-14)
    assert tl.dot(fa, fb) == pytest.approx(float(fa @ fb), rel=1e-14)
    assert tl.norm([]) == 0.0


def test_vector_space_operations():
    a, b = _pair()
    fa, fb = tl.flatten(a), tl.flatten(b)
    torch.testing.assert_close(tl.flatten(tl.axpy(2.5, a, b)), fb + 2.5 * fa)
    torch.testing.assert_close(tl.flatten(tl.mul(a, b)), fa * fb)
    torch.testing.assert_close(tl.flatten(tl.div(a, b)), fa / fb)
    torch.testing.assert_close(tl.flatten(tl.scale(-3.0, a)), -3 * fa)
    torch.testing.assert_close(tl.flatten(tl.sub(a, b)), fa - fb)
    c = tl.clone(a)
    tl.axpy_(1.0, b, c)
    tl.scale_(c, 0.5)
    torch.testing.assert_close(tl.flatten(c), 0.5 * (fa + fb))
    torch.testing.assert_close(tl.flatten(a), fa)  # inputs untouched by the out-of-place ops
    z = tl.zeros_like(a)
    assert tl.norm(z) == 0.0 and [t.shape for t in z] == [t.shape for t in a]
    tl.copy_(z, a)
    torch.testing.assert_close(tl.flatten(z), fa)


def test_unflatten_round_trip_and_error():
    a, _ = _pair()
    back = tl.unflatten(tl.flatten(a), a)
    assert all(torch.equal(x, y) for x, y in zip(a, back))
    with pytest.raises(ValueError, match="does not match 22 weights"):
        tl.unflatten(torch.zeros(21, dtype=torch.float64), a)


def test_all_finite():
    a, _ = _pair()
    assert tl.all_finite(a)
    a[1][0, 0] = math.inf
    assert not tl.all_finite(a)
    assert not tl.all_finite(torch.tensor([0.0, math.nan]))


def test_float32_accumulates_in_double():
    x = [torch.full((1000, 1000), 1e-3, dtype=torch.float32)]
    assert tl.dot(x, x) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("shape", [(4_704_000,), (6000, 784), (1, 3_000_001), (785, 1000)])
def test_float32_norm_and_dot_accumulate_in_float64(shape):
    """Norms and inner products of large float32 vectors are accurate to float32's epsilon.

    Each row reduction is rounded once to float32 (relative error <= 2^-24 ~ 6e-8) and the
    rows are added in float64, so the total is within 1e-7 of the float64 value whatever
    the size; a plain float32 reduction over 4.7M entries is off by about 1e-5.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g) + 0.5
    y = torch.rand(shape, generator=g) - 0.25
    ref_norm = float(torch.linalg.vector_norm(x.double()))
    ref_dot = float(torch.sum(x.double() * y.double()))
    assert tl.norm(x) == pytest.approx(ref_norm, rel=1e-7)
    assert tl.norm([x, y]) == pytest.approx(
        math.hypot(ref_norm, float(torch.linalg.vector_norm(y.double()))), rel=1e-7
    )
    assert tl.dot(x, y) == pytest.approx(ref_dot, rel=1e-6)  # y has both signs: the sum cancels


def test_xpay_in_place():
    x = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    y = [torch.tensor([10.0, 20.0]), torch.tensor([[30.0]])]
    ids = [id(t) for t in y]
    out = tl.xpay_(x, 0.5, y)
    assert out is y and [id(t) for t in y] == ids
    assert y[0].tolist() == [6.0, 12.0] and y[1].tolist() == [[18.0]]
    z = torch.tensor([1.0, 1.0])
    assert tl.xpay_(torch.tensor([1.0, 2.0]), -2.0, z).tolist() == [-1.0, 0.0]


def test_addcmul_in_place():
    a, b = _pair()
    y = [torch.ones_like(t) for t in a]
    ids = [id(t) for t in y]
    out = tl.addcmul_(y, a, b)
    assert out is y and [id(t) for t in y] == ids
    torch.testing.assert_close(tl.flatten(y), 1.0 + tl.flatten(a) * tl.flatten(b), rtol=1e-15, atol=0.0)
    z = torch.tensor([1.0, 2.0])
    assert tl.addcmul_(z, torch.tensor([2.0, 3.0]), torch.tensor([-1.0, 1.0])).tolist() == [-1.0, 5.0]
