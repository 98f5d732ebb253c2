"""The torch.func operator for any nn.Module against float64 references.

References: the dense Jacobian of the model output (``torch.func.jacrev``), the loss Hessian
in the outputs (``torch.func.hessian``), autograd gradients, and per-example loops. The
tolerances (1e-10) are float64 round-off of products of a few hundred terms of order one;
an error in a transpose, a factor B or a 1/sqrt(n) is of order one.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from shf import tensorlist as tl
from shf.batch import Inputs, rows
from shf.curvature import module
from shf.curvature.module import ModuleProblem, check_module, curvature_model, math_kernels
from shf.errors import ConfigError, DataError

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


class InPlaceSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid_(x * 1.0)  # an in-place activation, as a hand-written net may use


def _mlp(out: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), InPlaceSigmoid(), nn.Linear(3, out))


def _cnn(out: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, out),
    )


class SequenceHead(nn.Module):
    """A sequence model ``(n, T, 4) -> (n, T, 4)`` (its first output if it returns a tuple), then
    the mean over positions and a linear layer to 3 outputs."""

    def __init__(self, core: nn.Module, attention: bool = False) -> None:
        super().__init__()
        self.core, self.attention = core, attention
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.core(x, x, x, need_weights=False) if self.attention else self.core(x)
        return self.head((h[0] if isinstance(h, tuple) else h).mean(dim=1))


def _transformer(train: bool) -> nn.Module:
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
    return SequenceHead(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)).train(train)


SEQUENCE_MODELS = {
    "transformer-eval": lambda: _transformer(False),
    "transformer-train": lambda: _transformer(True),
    "attention": lambda: SequenceHead(nn.MultiheadAttention(4, 2, batch_first=True), attention=True),
    "lstm": lambda: SequenceHead(nn.LSTM(4, 4, num_layers=2, batch_first=True)),
    "gru": lambda: SequenceHead(nn.GRU(4, 4, batch_first=True, bidirectional=False)),
}


class NamedInputs(nn.Module):
    """Takes a dict of inputs, as models of several inputs do: ``{"ids": (n, T) token ids,
    "extra": {"x": (n, 2) features}}`` (a nested dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.lin = nn.Embedding(7, 3), nn.Linear(5, 3)

    def forward(self, batch: dict) -> torch.Tensor:  # type: ignore[type-arg]
        h = self.emb(batch["ids"]).mean(dim=1)
        return self.lin(torch.tanh(torch.cat([h, batch["extra"]["x"]], dim=1)))


def _batch(kind: str, loss: str, n: int = 6, seed: int = 0) -> tuple[nn.Module, Inputs, torch.Tensor]:
    torch.manual_seed(seed)
    X: Inputs
    if kind == "named":
        model = NamedInputs().to(F64)
        X = {"ids": torch.randint(0, 7, (n, 3)), "extra": {"x": torch.randn(n, 2, dtype=F64)}}
    elif kind in SEQUENCE_MODELS:
        model = SEQUENCE_MODELS[kind]().to(F64)
        X = torch.randn(n, 3, 4, dtype=F64)
    else:
        model = (_mlp() if kind == "mlp" else _cnn()).to(F64)
        X = torch.randn(n, 4, dtype=F64) if kind == "mlp" else torch.randn(n, 1, 4, 4, dtype=F64)
    if loss == "cross_entropy":
        Y = torch.randint(0, 3, (n,))
    elif loss == "bce":
        Y = torch.rand(n, 3, dtype=F64)
    else:
        Y = torch.randn(n, 3, dtype=F64)
    return model, X, Y


def _reference(model: nn.Module, loss: str, X: Inputs, Y: torch.Tensor):  # type: ignore[no-untyped-def]
    """Dense ``J`` (outputs x flat weights), per-example output Hessians ``H_i``, and ``f(w)``."""
    names = [k for k, _ in model.named_parameters()]
    w0 = [p.detach().clone() for p in model.parameters()]

    def out(flat: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, dict(zip(names, tl.unflatten(flat, w0))), (X,))

    def per_example(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if loss == "mse":
            return 0.5 * ((z - y) ** 2).sum()
        if loss == "bce":
            return nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
        return nn.functional.cross_entropy(z[None], y[None], reduction="sum")

    flat = tl.flatten(w0)
    with math_kernels(rnn=True):  # the fused kernels have no derivatives for jacrev either
        z = out(flat)
        J = torch.func.jacrev(out)(flat).reshape(z.shape[0], z.shape[1], -1)
    H = torch.stack([torch.func.hessian(per_example)(z[i], Y[i]) for i in range(z.shape[0])])
    f = lambda fl: torch.stack([per_example(zi, yi) for zi, yi in zip(out(fl), Y)]).mean()  # noqa: E731
    return w0, J, H, f, flat


CASES = [(kind, loss) for kind in ("mlp", "cnn") for loss in ("mse", "bce", "cross_entropy")] + [
    (kind, "cross_entropy") for kind in SEQUENCE_MODELS
] + [("named", "mse"), ("named", "cross_entropy")]


@pytest.mark.parametrize(("kind", "loss"), CASES)
def test_products_match_the_dense_gauss_newton_matrix(kind: str, loss: str) -> None:
    model, X, Y = _batch(kind, loss)
    w0, J, H, _, _ = _reference(model, loss, X, Y)
    n = rows(X)
    A = ModuleProblem(model, loss).jacobian(w0, X, Y)
    # G = (1/n) sum_i J_i^T H_i J_i must equal A^T A, column by column
    G = torch.einsum("iap,iab,ibq->pq", J, H, J) / n
    P = G.shape[0]
    AtA = torch.stack(
        [tl.flatten(A.rmatvec(A.matvec(tl.unflatten(torch.eye(P, dtype=F64)[j], w0)))) for j in range(P)], 1
    )
    torch.testing.assert_close(AtA, G, **TOL)


@pytest.mark.parametrize("mode", ["auto", "double-backward", "dense"])
@pytest.mark.parametrize(("kind", "loss"), CASES)
def test_forward_mode_is_the_jacobian_and_reverse_mode_its_adjoint(kind: str, loss: str, mode: str) -> None:
    model, X, Y = _batch(kind, loss, seed=1)
    w0, J, _, _, _ = _reference(model, loss, X, Y)
    problem = ModuleProblem(model, loss, forward_mode=mode)
    A = problem.jacobian(w0, X, Y)
    g = torch.Generator().manual_seed(5)
    d = [torch.randn(t.shape, generator=g, dtype=F64) for t in w0]
    u = torch.randn(A.residual.shape, generator=g, dtype=F64)
    # forward mode: B^T (J d) / sqrt(n)
    Jd = (J @ tl.flatten(d)).reshape(A.residual.shape[0], -1)
    torch.testing.assert_close(A.matvec(d), A.point.bt(Jd) / math.sqrt(rows(X)), **TOL)
    # adjoint test: <A d, u> = <d, A^T u>
    assert tl.dot(A.matvec(d), u) == pytest.approx(tl.dot(d, A.rmatvec(u)), rel=1e-12)


@pytest.mark.parametrize(("kind", "loss"), CASES)
def test_rhs_is_minus_the_autograd_gradient(kind: str, loss: str) -> None:
    model, X, Y = _batch(kind, loss, seed=2)
    w0, _, _, f, flat = _reference(model, loss, X, Y)
    A = ModuleProblem(model, loss).jacobian(w0, X, Y)
    grad = torch.func.grad(f)(flat)
    b = -A.residual
    torch.testing.assert_close(tl.flatten(A.rmatvec(b)), -grad, **TOL)  # A^T b = -grad f
    torch.testing.assert_close(tl.flatten(A.gradient()), grad, **TOL)
    assert A.loss == pytest.approx(float(f(flat)), rel=1e-12)
    assert ModuleProblem(model, loss).loss(w0, X, Y) == pytest.approx(float(f(flat)), rel=1e-12)


def _forced(problem: ModuleProblem, path: str) -> ModuleProblem:
    """``problem`` with its per-example statistics taken by ``path`` (``"auto"``: as it chooses)."""
    if path != "auto":
        problem.layer_plan = None  # no layer rules: vmap, or the loop over examples
        problem.per_example_path = "loop" if path == "loop" else None
    return problem


PER_EXAMPLE_CASES = [
    (kind, loss, path)
    for kind, loss in [("mlp", "cross_entropy"), ("cnn", "mse"), ("cnn", "bce")]
    for path in ("auto", "vmap", "loop")
] + [(kind, "cross_entropy", "auto") for kind in SEQUENCE_MODELS] + [
    ("named", "mse", path) for path in ("auto", "vmap", "loop")
]


@pytest.mark.parametrize(("kind", "loss", "path"), PER_EXAMPLE_CASES)
def test_per_example_statistics_match_a_loop_over_examples(kind: str, loss: str, path: str) -> None:
    model, X, Y = _batch(kind, loss, n=7, seed=3)
    w0, J, _, f, flat = _reference(model, loss, X, Y)
    problem = _forced(ModuleProblem(model, loss), path)
    A = problem.jacobian(w0, X, Y)
    n = rows(X)
    g = torch.Generator().manual_seed(9)
    U = torch.randn(A.residual.shape, generator=g, dtype=F64)
    # sum_i (J_i^T B_i u_i)^2, with B_i u_i from the loss factor, one example at a time
    V = A.point.b(U)
    want = sum((J[i].T @ V[i]) ** 2 for i in range(n))
    torch.testing.assert_close(tl.flatten(A.per_example_sumsq(U)), want, **TOL)
    # per-example gradients: their mean is grad f and their squares sum as a loop says
    G = A.point.grad_z
    per = [J[i].T @ G[i] for i in range(n)]
    grad, sumsq = A.per_example_gradient_stats()
    torch.testing.assert_close(tl.flatten(grad), torch.func.grad(f)(flat), **TOL)
    torch.testing.assert_close(tl.flatten(sumsq), sum(p * p for p in per), **TOL)
    assert problem.per_example_path == ("layers" if path == "auto" else path)


def test_per_example_statistics_are_the_same_in_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from shf.curvature import module

    model, X, Y = _batch("mlp", "mse", n=9, seed=4)
    w0 = [p.detach() for p in model.parameters()]
    whole = _forced(ModuleProblem(model, "mse"), "vmap").jacobian(w0, X, Y).per_example_gradient_stats()
    monkeypatch.setattr(module, "PER_EXAMPLE_BUDGET", 1)  # one example per vmap call
    chunked = _forced(ModuleProblem(model, "mse"), "vmap").jacobian(w0, X, Y).per_example_gradient_stats()
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(tl.flatten(a), tl.flatten(b), **TOL)


def test_in_place_activation_gives_the_same_product_on_every_call() -> None:
    """torch.func.linearize replays a wrong trace for sigmoid_ from its second call on: the
    operator must notice and keep jvp, past the point where it tries the trace."""
    from shf.curvature.module import LINEARIZE_AFTER

    model, X, Y = _batch("mlp", "mse", seed=6)
    w0 = [p.detach() for p in model.parameters()]
    A = ModuleProblem(model, "mse").jacobian(w0, X, Y)
    d = [torch.ones_like(t) for t in w0]
    first = A.matvec(d)
    for _ in range(LINEARIZE_AFTER + 3):
        torch.testing.assert_close(A.matvec(d), first, rtol=0, atol=0)
    assert not A.linearized


@pytest.mark.parametrize(("kind", "loss"), [("cnn", "cross_entropy"), ("cnn", "mse")])
def test_forward_mode_after_the_switch_to_linearize_is_still_the_jacobian(kind: str, loss: str) -> None:
    from shf.curvature.module import LINEARIZE_AFTER

    model, X, Y = _batch(kind, loss, seed=10)
    w0, J, _, _, _ = _reference(model, loss, X, Y)
    for mode, first in (("jvp", LINEARIZE_AFTER), ("linearize", 1)):
        A = ModuleProblem(model, loss, forward_mode=mode).jacobian(w0, X, Y)
        g = torch.Generator().manual_seed(11)
        for i in range(LINEARIZE_AFTER + 3):
            d = [torch.randn(t.shape, generator=g, dtype=F64) for t in w0]
            Jd = (J @ tl.flatten(d)).reshape(A.residual.shape[0], -1)
            torch.testing.assert_close(A.matvec(d), A.point.bt(Jd) / math.sqrt(rows(X)), **TOL)
            assert A.linearized == (i >= first - 1)
            assert A.forward_path == ("linearize" if i >= first - 1 else "jvp")


def test_only_the_chosen_parameters_are_trained() -> None:
    model, X, Y = _batch("mlp", "mse", seed=7)
    last = list(model[4].parameters())
    problem = ModuleProblem(model, "mse", params=last)
    A = problem.jacobian([p.detach() for p in last], X, Y)
    assert [t.shape for t in A.gradient()] == [p.shape for p in last]
    full = ModuleProblem(model, "mse").jacobian([p.detach() for p in model.parameters()], X, Y).gradient()
    torch.testing.assert_close(tl.flatten(A.gradient()), tl.flatten(full[-2:]), **TOL)


def test_layers_that_break_per_example_curvature_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"BatchNorm1d.*training mode.*model.eval\(\)"):
        check_module(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    with pytest.raises(ConfigError, match=r"Dropout.*random"):
        check_module(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)))
    check_module(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)).eval())
    with pytest.raises(ConfigError, match=r"nn\.Module"):
        check_module(lambda x: x)  # type: ignore[arg-type]


def test_bad_models_and_batches_are_clear_errors() -> None:
    model, X, Y = _batch("mlp", "cross_entropy")
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="requires grad"):
        ModuleProblem(model, "cross_entropy")
    model, X, Y = _batch("mlp", "cross_entropy")
    problem = ModuleProblem(model, "cross_entropy")
    w = [p.detach() for p in model.parameters()]
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\]"):
        problem.check_batch(w, X, Y + 3)
    with pytest.raises(DataError, match="rows"):
        problem.check_batch(w, X, Y[:-1])
    with pytest.raises(ConfigError, match="not a parameter of the model"):
        ModuleProblem(model, "mse", params=[torch.zeros(2, requires_grad=True)])


def test_fast_path_is_chosen_only_for_the_models_own_loss_and_parameters() -> None:
    from shf.models import Autoencoder

    net = Autoencoder((6, 3), dtype=F64)
    assert curvature_model(net) is net and curvature_model(net, "mse") is net
    assert isinstance(curvature_model(net, "bce"), ModuleProblem)
    assert isinstance(curvature_model(net, generic=True), ModuleProblem)
    assert isinstance(curvature_model(net, params=[net.weights[0]]), ModuleProblem)
    assert isinstance(curvature_model(_mlp()), ModuleProblem)


def test_chapelle_erhan_estimate_on_the_generic_operator_is_unbiased() -> None:
    """Softmax cross-entropy (a non-diagonal B): the mean of the estimate over M draws is
    diag(A^T A) within 6 standard errors per entry (see tests/test_precond.py for the bound)."""
    from shf.optim import precond

    model, X, Y = _batch("mlp", "cross_entropy", n=5, seed=8)
    w0, J, H, _, _ = _reference(model, "cross_entropy", X, Y)
    A = ModuleProblem(model, "cross_entropy").jacobian(w0, X, Y)
    exact = torch.diagonal(torch.einsum("iap,iab,ibq->pq", J, H, J)) / rows(X)
    g = torch.Generator().manual_seed(0)
    M = 800
    draws = torch.stack([tl.flatten(precond.chapelle_erhan_estimate(A, g)) for _ in range(M)])
    mean, std = draws.mean(0), draws.std(0)
    bound = 6 * std / M**0.5 + 1e-12
    assert torch.all((mean - exact).abs() <= bound), float(((mean - exact).abs() / bound).max())
    assert float(std.max()) > 1e-3 * float(exact.max())


def test_batchnorm_in_eval_mode_uses_its_running_statistics() -> None:
    """Buffers go through functional_call: an eval-mode BatchNorm is an affine map with the
    running statistics, and the operator matches the dense reference."""
    torch.manual_seed(12)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).to(F64)
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    model.eval()
    X, Y = torch.randn(6, 4, dtype=F64), torch.randn(6, 3, dtype=F64)
    w0, J, _, f, flat = _reference(model, "mse", X, Y)
    A = ModuleProblem(model, "mse").jacobian(w0, X, Y)
    d = [torch.randn_like(t) for t in w0]
    torch.testing.assert_close(A.matvec(d), (J @ tl.flatten(d)).reshape(6, 3) / math.sqrt(6), **TOL)
    torch.testing.assert_close(tl.flatten(A.gradient()), torch.func.grad(f)(flat), **TOL)


def test_frozen_parameters_follow_the_model_and_unusable_batchnorm_is_refused() -> None:
    model, X, Y = _batch("mlp", "mse", seed=13)
    model.float()
    model[0].requires_grad_(False)
    problem = ModuleProblem(model, "mse")
    model.double()  # after the problem was made
    w = [p.detach() for p in model.parameters() if p.requires_grad]
    assert math.isfinite(problem.loss(w, X, Y))
    with pytest.raises(ConfigError, match="no running statistics"):
        check_module(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False)).eval())


class TwoHeads(nn.Module):
    """Returns a dict (or a tuple) of outputs, as multi-task models and many library models do."""

    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        self.body, self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3), nn.Linear(5, 2)
        self.as_dict = as_dict

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor] | tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.body(x))
        return {"a": self.a(h), "b": self.b(h)} if self.as_dict else (self.a(h), self.b(h))


@pytest.mark.parametrize("as_dict", [True, False])
def test_a_model_with_several_outputs_trains_with_a_residual_that_picks_them(as_dict: bool) -> None:
    """The residual (z_a - y) and 0.5 z_b (two heads fitted at once) through the generic products
    equal the dense Jacobian of the same residual; without a residual function it is one line."""
    torch.manual_seed(0)
    model = TwoHeads(as_dict).to(F64)
    X, Y = torch.randn(6, 4, dtype=F64), torch.randn(6, 3, dtype=F64)

    def pick(out, y):  # type: ignore[no-untyped-def]
        a, b = (out["a"], out["b"]) if isinstance(out, dict) else out
        return torch.cat([a - y, 0.5 * b], dim=1)

    problem = ModuleProblem(model, pick)
    w0 = [p.detach().clone() for p in model.parameters()]
    problem.check_batch(w0, X, Y)
    A = problem.jacobian(w0, X, Y)
    names = [k for k, _ in model.named_parameters()]

    def residual(flat: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, dict(zip(names, tl.unflatten(flat, w0))), (X,))
        return pick(out, Y)

    J = torch.func.jacrev(residual)(tl.flatten(w0)).reshape(6 * 5, -1) / math.sqrt(6)
    d = [torch.randn_like(t) for t in w0]
    torch.testing.assert_close(A.matvec(d).reshape(-1), J @ tl.flatten(d), **TOL)
    R = residual(tl.flatten(w0)).reshape(-1) / math.sqrt(6)
    torch.testing.assert_close(A.residual.reshape(-1), R, **TOL)
    refused = r"returns a (dict|tuple), not one tensor: give a residual function"
    with pytest.raises(ConfigError, match=refused):
        ModuleProblem(model, "mse").check_batch(w0, X, Y)


class Unused(nn.Module):
    """A layer the output does not depend on: its columns of J are zero."""

    def __init__(self) -> None:
        super().__init__()
        self.used, self.spare = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.used(x))


def test_double_backward_products_with_a_parameter_the_output_does_not_use() -> None:
    torch.manual_seed(0)
    model, X, Y = Unused().to(F64), torch.randn(5, 4, dtype=F64), torch.randn(5, 3, dtype=F64)
    w0 = [p.detach() for p in model.parameters()]
    d = [torch.randn_like(t) for t in w0]
    A = ModuleProblem(model, "mse", forward_mode="double-backward").jacobian(w0, X, Y)
    ref = ModuleProblem(model, "mse", forward_mode="jvp").jacobian(w0, X, Y)
    torch.testing.assert_close(A.matvec(d), ref.matvec(d), **TOL)
    assert A.forward_path == "double-backward"
    frozen = ModuleProblem(model, "mse", [model.spare.weight], forward_mode="double-backward")
    A0 = frozen.jacobian([model.spare.weight.detach()], X, Y)
    assert float(A0.matvec([torch.ones(3, 4, dtype=F64)]).abs().max()) == 0.0  # only unused columns


DENSE_CASES = [(kind, loss) for kind in ("mlp", "cnn") for loss in ("mse", "bce", "cross_entropy")] + [
    ("named", "cross_entropy"), ("attention", "cross_entropy"),
]


@pytest.mark.parametrize(("kind", "loss"), DENSE_CASES)
def test_the_dense_jacobian_gives_the_same_products_and_statistics(kind: str, loss: str) -> None:
    """forward_mode='dense' (G16): J formed once; the gradient and the per-example sums equal the
    reference dense Jacobian's (float64, the TOL of this file; the products and the adjoint test
    are in test_forward_mode_is_the_jacobian_and_reverse_mode_its_adjoint)."""
    model, X, Y = _batch(kind, loss, n=7, seed=4)
    w0, J, _, f, flat = _reference(model, loss, X, Y)
    A = ModuleProblem(model, loss, forward_mode="dense").jacobian(w0, X, Y)
    assert A.forward_path == "dense"
    U = torch.randn(A.residual.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    torch.testing.assert_close(tl.flatten(A.gradient()), torch.func.grad(f)(flat), **TOL)
    V = A.point.b(U)
    want = sum((J[i].T @ V[i].reshape(-1)) ** 2 for i in range(rows(X)))
    torch.testing.assert_close(tl.flatten(A.per_example_sumsq(U)), want, **TOL)
    assert A.problem.per_example_path == "dense"
    # A as a matrix (B20's exact solve reads it): its columns are the products with unit vectors
    M = A.dense()
    assert M is not None
    eye = torch.eye(M.shape[1], dtype=F64)
    cols = torch.stack([A.matvec(tl.unflatten(e, w0)).reshape(-1) for e in eye], dim=1)
    torch.testing.assert_close(M, cols, **TOL)
    assert ModuleProblem(model, loss, forward_mode="jvp").jacobian(w0, X, Y).dense() is None


def test_math_kernels_inside_themselves_do_nothing_and_the_outer_exit_restores() -> None:
    """A nested entry (``jacrev`` calling the model inside the Jacobian's entry) switches nothing
    and restores nothing; the outer exit restores the fast path and the attention backends; a
    nested entry that asks for more (``rnn``) than the outer one still switches oneDNN off."""
    before = torch.backends.mha.get_fastpath_enabled(), torch.backends.mkldnn.enabled
    with math_kernels(rnn=False):
        assert not torch.backends.mha.get_fastpath_enabled()
        with math_kernels(rnn=False):
            assert not torch.backends.mha.get_fastpath_enabled()
        assert not torch.backends.mha.get_fastpath_enabled()  # the inner exit restored nothing
        with math_kernels(rnn=True):
            assert not torch.backends.mkldnn.enabled
        assert torch.backends.mkldnn.enabled == before[1]
    assert (torch.backends.mha.get_fastpath_enabled(), torch.backends.mkldnn.enabled) == before
    assert module._KERNELS.depth == 0


def test_auto_forms_the_jacobian_of_a_small_model_only() -> None:
    """auto: dense up to DENSE_WEIGHTS trained weights (a parametric fit), matrix-free above."""
    torch.manual_seed(0)
    small = nn.Linear(3, 2).to(F64)  # 8 weights
    X, Y = torch.randn(6, 3, dtype=F64), torch.randn(6, 2, dtype=F64)
    A = ModuleProblem(small, "mse").jacobian([p.detach() for p in small.parameters()], X, Y)
    assert A.forward_path == "dense"
    big = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).to(F64)
    assert sum(p.numel() for p in big.parameters()) > module.DENSE_WEIGHTS
    B = ModuleProblem(big, "mse").jacobian([p.detach() for p in big.parameters()], X, Y)
    assert B.forward_path != "dense"
