"""Forward-mode products by per-layer rules (:mod:`shf.curvature.chain`), in float64, against the
dense Jacobian from ``torch.func.jacrev`` and against ``torch.func.jvp``; which models get a plan."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from shf import tensorlist as tl
from shf.curvature import chain
from shf.curvature.losses import Residual
from shf.curvature.module import FORWARD_MODES, ModuleProblem
from shf.errors import ConfigError

F64 = torch.float64
# Both sides are exact float64 products of the same numbers in another order: a few ulps of
# entries of order 1, so 1e-10 cannot be met by a wrong rule (whose errors are of order 1).
TOL = {"rtol": 1e-10, "atol": 1e-10}


def _models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    return {
        "mlp": (
            nn.Sequential(nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 4), nn.Tanh(),
                          nn.Sequential(nn.Linear(4, 3), nn.ReLU()), nn.Linear(3, 2)),
            torch.randn(7, 6),
        ),
        "activations": (
            nn.Sequential(nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 5), nn.ELU(), nn.Linear(5, 4), nn.SiLU(),
                          nn.Linear(4, 4), nn.Softplus(), nn.LeakyReLU(0.1, inplace=True),
                          nn.Dropout(0.3).eval(), nn.Linear(4, 2)),
            torch.randn(7, 6),
        ),
        "cnn": (
            nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(inplace=True),
                          nn.MaxPool2d(2), nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
                          nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)),
            torch.randn(5, 64),
        ),
        "conv1d": (
            nn.Sequential(nn.Unflatten(1, (2, 10)), nn.Conv1d(2, 3, 3, stride=2), nn.Sigmoid(),
                          nn.MaxPool1d(2), nn.Flatten(), nn.Linear(6, 2)),
            torch.randn(5, 20),
        ),
        "shared activation": (  # one parameter-free module at several places
            nn.Sequential(nn.Linear(6, 5), act := nn.Tanh(), nn.Linear(5, 4), act, nn.Linear(4, 2), act),
            torch.randn(7, 6),
        ),
        "sequence": (
            nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Flatten(), nn.Linear(15, 2)),
            torch.randn(5, 3, 4),
        ),
    }  # fmt: skip


MODELS = list(_models())
SUBSETS = ("all", "frozen first weight", "biases and last layers")


def _params(model: nn.Module, subset: str) -> list[nn.Parameter]:
    ps = list(model.parameters())
    if subset == "all":
        return ps
    if subset == "frozen first weight":
        return ps[1:]
    return [ps[1], *ps[3:]]  # a trained bias after a frozen weight


@pytest.mark.parametrize("subset", SUBSETS)
@pytest.mark.parametrize("kind", MODELS)
def test_layer_rules_are_the_jacobian_and_reverse_mode_its_adjoint(kind: str, subset: str) -> None:
    model, X = _models()[kind]
    model, X = model.to(F64), X.to(F64)
    params = _params(model, subset)
    problem = ModuleProblem(model, "mse", params)
    assert problem.chain_plan is not None
    w0 = [p.detach().clone() for p in params]
    names = [n for n, p in model.named_parameters() if any(p is q for q in params)]
    rest = {n: p.detach() for n, p in model.named_parameters() if n not in names}

    def out(flat: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, {**rest, **dict(zip(names, tl.unflatten(flat, w0)))}, (X,))

    z = out(tl.flatten(w0))
    J = torch.func.jacrev(out)(tl.flatten(w0)).reshape(z.shape[0], -1, len(tl.flatten(w0)))
    Y = torch.randn_like(z)
    A = problem.jacobian(w0, X, Y)
    assert A.forward_path == "layers"
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # the same recorded point serves every product
        d = [torch.randn(t.shape, generator=g, dtype=F64) for t in w0]
        Jd = (J @ tl.flatten(d)).reshape(z.shape)
        Ad = A.matvec(d)
        torch.testing.assert_close(Ad, Jd / math.sqrt(X.shape[0]), **TOL)
        u = torch.randn(z.shape, generator=g, dtype=F64)
        assert not Ad.requires_grad and not any(t.requires_grad for t in A.rmatvec(u))  # no graph kept
        assert tl.dot(A.matvec(d), u) == pytest.approx(tl.dot(d, A.rmatvec(u)), rel=1e-12)
    # and the same as torch.func.jvp's products
    B = ModuleProblem(model, "mse", params, forward_mode="jvp").jacobian(w0, X, Y)
    torch.testing.assert_close(A.matvec(d), B.matvec(d), **TOL)
    assert B.forward_path == "jvp"
    torch.testing.assert_close(tl.flatten(A.gradient()), tl.flatten(B.gradient()), **TOL)
    assert A.loss == pytest.approx(B.loss, rel=1e-14)


def test_every_forward_mode_gives_the_same_products() -> None:
    model, X = _models()["cnn"]
    model, X = model.to(F64), X.to(F64)
    w0 = [p.detach() for p in model.parameters()]
    Y = torch.randint(0, 3, (X.shape[0],))
    d = [torch.randn_like(t) for t in w0]
    got = {}
    for mode in FORWARD_MODES:
        A = ModuleProblem(model, "cross_entropy", forward_mode=mode).jacobian(w0, X, Y)
        got[mode] = A.matvec(d)
        assert A.forward_path == ("layers" if mode in ("auto", "layers") else mode)
    for mode in FORWARD_MODES:
        torch.testing.assert_close(got[mode], got["jvp"], **TOL)
    with pytest.raises(ConfigError, match="forward_mode must be one of auto, layers, jvp, linearize, double"):
        ModuleProblem(model, "mse", forward_mode="fast")


class Custom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class MyLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) ** 2


def test_models_without_a_plan_use_torch_func() -> None:
    lin = nn.Linear(3, 3)
    cases = {
        "not a Sequential": nn.ModuleDict({"a": nn.Linear(3, 3)}),
        "an unknown layer": nn.Sequential(nn.Linear(3, 3), Custom()),
        "a subclass with its own forward": nn.Sequential(MyLinear(3, 3)),
        "an in-place layer that overwrites its input": nn.Sequential(nn.Linear(3, 3), nn.ELU(inplace=True)),
        "a tied layer": nn.Sequential(lin, nn.Tanh(), lin),
        "a layer that runs twice": nn.Sequential(lin, nn.Tanh(), nn.Sequential(lin)),
        "random dropout": nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)),
    }
    for why, model in cases.items():
        names = [n for n, _ in model.named_parameters()]
        assert chain.plan(model, names) is None, why
    ok = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.0), nn.Tanh())
    assert chain.plan(ok, [n for n, _ in ok.named_parameters()]) is not None
    # a residual function may transform the output: torch.func's products
    problem = ModuleProblem(ok, Residual(lambda z, y: z.sin() - y))
    assert problem.chain_plan is None
    X = torch.randn(4, 3)
    A = problem.jacobian([p.detach() for p in ok.parameters()], X, X)
    A.matvec([torch.ones_like(p) for p in ok.parameters()])
    assert A.forward_path == "dense"  # 12 weights: auto forms J (G16); a larger model uses jvp
    problem.forward_mode = "jvp"
    A = problem.jacobian([p.detach() for p in ok.parameters()], X, X)
    A.matvec([torch.ones_like(p) for p in ok.parameters()])
    assert A.forward_path == "jvp"
