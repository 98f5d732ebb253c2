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
