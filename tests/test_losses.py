"""Losses in least-squares form: B B^T is the loss Hessian in the outputs, B r = dl/dz, values
match torch's functional losses. float64 throughout: tolerances 1e-12 are round-off of a few
dozen operations on numbers of order one."""

from __future__ import annotations

import pytest
import torch

from shf.curvature.losses import MSE, ROOT_FLOOR, BCEWithLogits, CrossEntropy, Residual, get_loss
from shf.errors import ConfigError, DataError

F64 = torch.float64


def _case(name: str, n: int = 5, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=F64)
    if name == "cross_entropy":
        return z, torch.randint(0, c, (n,), generator=g)
    if name == "bce":
        return z, torch.rand(n, c, generator=g, dtype=F64)
    return z, torch.randn(n, c, generator=g, dtype=F64)


def _per_example_loss(name: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """An independent formula for l(z_i, y_i), one per example."""
    if name == "mse":
        return 0.5 * ((z - y) ** 2).sum(dim=1)
    if name == "bce":
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none").sum(dim=1)
    return torch.nn.functional.cross_entropy(z, y, reduction="none")


@pytest.mark.parametrize("name", ["mse", "bce", "cross_entropy"])
def test_factor_times_its_transpose_is_the_loss_hessian(name: str) -> None:
    z, y = _case(name)
    point = get_loss(name).at(z, y)
    c = z.shape[1]
    for i in range(z.shape[0]):
        yi = y[i : i + 1]
        H = torch.func.hessian(lambda zi, yi=yi: _per_example_loss(name, zi[None], yi).sum())(z[i])
        # B_i as a matrix: column j is B_i e_j
        cols = []
        for j in range(c):
            e = torch.zeros(z.shape, dtype=F64)
            e[:, j] = 1.0
            cols.append(point.b(e)[i])
        B = torch.stack(cols, dim=1)
        torch.testing.assert_close(B @ B.T, H, rtol=1e-12, atol=1e-12)
        # bt is b's transpose: <b(u), v> = <u, bt(v)>
        u, v = torch.randn(z.shape, dtype=F64), torch.randn(z.shape, dtype=F64)
        assert float((point.b(u) * v).sum()) == pytest.approx(float((u * point.bt(v)).sum()), rel=1e-12)


@pytest.mark.parametrize("name", ["mse", "bce", "cross_entropy"])
def test_residual_maps_to_the_loss_gradient_and_values_match_torch(name: str) -> None:
    z, y = _case(name, seed=1)
    point = get_loss(name).at(z, y)
    grad = torch.func.grad(lambda zz: _per_example_loss(name, zz, y).sum())(z)
    torch.testing.assert_close(point.grad_z, grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(point.b(point.residual), grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(point.per_example(), _per_example_loss(name, z, y), rtol=1e-12, atol=1e-12)
    assert point.total() == pytest.approx(float(_per_example_loss(name, z, y).sum()), rel=1e-12)


def test_mse_is_half_the_squared_error_per_example_not_torch_mean() -> None:
    z, y = _case("mse")
    assert MSE().at(z, y).total() / z.shape[0] == pytest.approx(
        0.5 * z.shape[1] * float(torch.nn.functional.mse_loss(z, y)), rel=1e-12
    )


def test_saturated_outputs_keep_the_residual_finite() -> None:
    z = torch.tensor([[60.0, -60.0]], dtype=F64)
    p = CrossEntropy().at(z, torch.tensor([1]))
    assert torch.isfinite(p.residual).all() and float(p.residual.abs().max()) <= 1.0 / ROOT_FLOOR + 1
    q = BCEWithLogits().at(z, torch.tensor([[0.0, 1.0]], dtype=F64))
    assert torch.isfinite(q.residual).all()


def test_residual_loss_wraps_a_user_function() -> None:
    loss = get_loss(lambda out, y: (out - y) / 2.0)
    assert isinstance(loss, Residual)
    z, y = _case("mse")
    r = loss.transform(z, y)
    torch.testing.assert_close(loss.at(r, y).total(), 0.5 * float(((z - y) / 2).pow(2).sum()))
    with pytest.raises(DataError, match="one row per example"):
        Residual(lambda out, y: out.sum()).transform(z, y)


@pytest.mark.parametrize(
    ("loss", "shape", "y", "match"),
    [
        ("cross_entropy", (3,), torch.tensor([0, 3]), r"labels must lie in \[0, 2\]"),
        ("cross_entropy", (3,), torch.tensor([-1, 0]), "labels must lie"),
        ("cross_entropy", (3,), torch.tensor([[0.0, 1.0, 0.0]]), "1-D tensor of labels"),
        ("cross_entropy", (3,), torch.tensor([0.0, 1.0]), "integer class labels"),
        ("cross_entropy", (3, 2), torch.tensor([0, 1]), r"\(n, classes\) logits"),
        ("mse", (3,), torch.zeros(2, 4), "model output's shape"),
        ("mse", (3,), torch.zeros(2, 3, dtype=torch.long), "floating point"),
        ("bce", (2,), torch.tensor([[0.5, 1.5]]), r"in \[0, 1\]"),
    ],
)
def test_bad_targets_are_clear_errors(loss: str, shape: tuple[int, ...], y: torch.Tensor, match: str) -> None:
    with pytest.raises(DataError, match=match):
        get_loss(loss).check(shape, y)


def test_unknown_loss_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose from mse, bce, cross_entropy"):
        get_loss("hinge")
    with pytest.raises(ConfigError):
        get_loss(3)  # type: ignore[arg-type]
    assert isinstance(get_loss("squared"), MSE) and isinstance(get_loss("CE"), CrossEntropy)
