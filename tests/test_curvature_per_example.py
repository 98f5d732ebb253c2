"""Per-layer rules for per-example statistics (shf.curvature.per_example) against ``vmap``.

Every rule is checked in float64 against the ``torch.func.vmap`` per-example gradients that the
generic path used before (and still uses as the fallback): the sum ``sum_i J_i^T v_i`` and the
sum of squares ``sum_i (J_i^T v_i)^2`` for random output cotangents ``V``. Both compute the same
sums in another order, so they agree to round-off: 1e-10 relative to the largest entry is far
above float64's ~1e-16 per operation over a few hundred terms, and far below any error of a
rule (a missing term or a square taken before a sum moves entries by O(1) relatively).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shf.curvature.module import ModuleProblem
from shf.curvature.per_example import plan

TOL = 1e-10


class Flatten2(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class EmbedMean(nn.Module):
    """Token ids (n, T) -> embeddings -> LayerNorm -> mean over tokens -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 5, padding_idx=0)
        self.norm = nn.LayerNorm(5)
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.emb(x)).mean(dim=1))


class Twice(nn.Module):
    """One layer applied twice (a shared layer): its per-example gradient sums over the uses."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(torch.tanh(self.a(x)))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 3)
        self.dec = nn.Linear(3, 6)
        self.dec.weight = nn.Parameter(self.enc.weight.detach().T.clone())
        self.enc.weight = self.dec.weight  # the same parameter in two modules (transposed use below)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(nn.functional.linear(x, self.enc.weight.T, self.enc.bias))
        return self.dec(h)


def _models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    n = 9
    return {
        "mlp": (nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)), torch.randn(n, 6, generator=g)),
        "mlp-inplace-relu": (
            nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace=True), nn.Linear(5, 3, bias=False)),
            torch.randn(n, 6, generator=g),
        ),
        "linear-on-sequences": (
            nn.Sequential(nn.Linear(4, 3), nn.Tanh(), Flatten2(), nn.Linear(15, 2)),
            torch.randn(n, 5, 4, generator=g),
        ),
        "conv1d": (
            nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.Tanh(), Flatten2(), nn.Linear(12, 2)),
            torch.randn(n, 2, 8, generator=g),
        ),
        "conv2d": (
            nn.Sequential(
                nn.Conv2d(2, 3, 3, padding=2, dilation=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(3, 4, 2, stride=2, bias=False), Flatten2(), nn.Linear(16, 3),
            ),
            torch.randn(n, 2, 8, 8, generator=g),
        ),
        # ids with repeats inside an example and the padding index
        "embedding-layernorm": (EmbedMean(), torch.randint(0, 7, (n, 6), generator=g)),
        "layernorm-2d": (
            nn.Sequential(nn.Linear(6, 4), nn.LayerNorm(4), nn.Linear(4, 2)),
            torch.randn(n, 6, generator=g),
        ),
    }


def _both(model: nn.Module, X: torch.Tensor, loss: str = "mse", params=None):
    model = model.double()
    X = X if not X.is_floating_point() else X.double()
    torch.manual_seed(1)
    for p in model.parameters():
        p.data.normal_(0, 0.5)
    prob = ModuleProblem(model, loss, params)
    w = [p.detach() for p in (params if params is not None else model.parameters())]
    with torch.no_grad():
        z = prob.output(w, X, X)
    V = torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    layers = prob.per_example_products(w, X, X, V)
    path = prob.per_example_path
    prob.layer_plan = None  # the vmap fallback
    ref = prob.per_example_products(w, X, X, V)
    assert prob.per_example_path == "vmap"
    return layers, ref, path


def _close(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        scale = float(b.abs().max()) or 1.0
        assert float((a - b).abs().max()) <= TOL * scale


@pytest.mark.parametrize("name", list(_models()))
def test_each_rule_gives_vmap_s_sums_and_sums_of_squares(name: str) -> None:
    model, X = _models()[name]
    (total, sumsq), (rt, rs), path = _both(model, X)
    assert path == "layers"
    _close(total, rt)
    _close(sumsq, rs)
    # the check can fail: squaring before the per-example sum (over positions, or over an
    # example's repeated ids) gives other numbers wherever an example has several positions
    assert all(float(s.abs().max()) > 0 for s in sumsq)


def test_a_subset_of_the_parameters_and_a_classifier_loss() -> None:
    model, X = _models()["mlp"]
    model = model.double()
    params = [model[2].weight]
    (total, sumsq), (rt, rs), path = _both(model, X, "mse", params)
    assert path == "layers" and len(total) == 1
    _close(total, rt)
    _close(sumsq, rs)


UNRULED = [Twice(), Tied(), nn.Sequential(nn.Linear(4, 4), nn.PReLU(), nn.Linear(4, 2))]


@pytest.mark.parametrize("model", UNRULED)
def test_models_without_rules_fall_back_to_vmap(model: nn.Module) -> None:
    X = torch.randn(7, 6 if isinstance(model, Tied) else 4)
    (total, sumsq), (rt, rs), path = _both(model, X)
    assert path == "vmap"  # the layer path declined (a shared layer, a tied weight, PReLU's weight)
    _close(total, rt)
    _close(sumsq, rs)


def test_a_layer_that_runs_twice_is_detected_at_the_first_call() -> None:
    m = Twice()
    assert plan(m, ["a.weight", "a.bias"]) is not None  # the plan cannot see it: the hook count does
    (total, _), (rt, _), path = _both(m, torch.randn(5, 4))
    assert path == "vmap"
    _close(total, rt)


def test_the_statistics_path_appears_in_the_step_metrics() -> None:
    from shf import SHF

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    X, y = torch.randn(60, 6), torch.randint(0, 3, (60,))
    opt = SHF(model, "cross_entropy", preconditioner="chapelle-erhan")
    info = opt.step(X, y)
    assert info.per_example == "layers"
    opt2 = SHF(Twice(), "mse", preconditioner="chapelle-erhan")
    assert opt2.step(torch.randn(30, 4), torch.randn(30, 4)).per_example == "vmap"


def test_an_embedding_that_reads_the_batch_is_left_to_vmap() -> None:
    """scale_grad_by_freq divides by the ids' counts in the batch: not one example's gradient."""
    model = EmbedMean()
    model.emb.scale_grad_by_freq = True
    assert plan(model, [n for n, _ in model.named_parameters()]) is None
