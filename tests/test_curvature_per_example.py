"""Per-layer rules for per-example statistics (shf.curvature.per_example) against ``vmap``.

Every rule is checked in float64 against the ``torch.func.vmap`` per-example gradients that the
generic path used before (and still uses as the fallback): the sum ``sum_i J_i^T v_i`` and the
sum of squares ``sum_i (J_i^T v_i)^2`` for random output cotangents ``V``. Both compute the same
sums in another order, so they agree to round-off: 1e-10 relative to the largest entry is far
above float64's ~1e-16 per operation over a few hundred terms, and far below any error of a
rule (a missing term or a square taken before a sum moves entries by O(1) relatively).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from shf.curvature import per_example
from shf.curvature.module import ModuleProblem
from shf.curvature.per_example import Recorder, plan
from shf.models import RowTransformer

TOL = 1e-10


class Flatten2(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class EmbedMean(nn.Module):
    """Token ids (n, T) -> embeddings -> LayerNorm -> mean over tokens -> Linear."""

    def __init__(self, padding_idx: int | None = 0) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 5, padding_idx=padding_idx)
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


class SelfAttention(nn.Module):
    """Multi-head self-attention over positions, pooled to a linear head; ``pad``: a float key
    padding mask made from the input (the last position never attended, and a penalty where the
    first feature is large), so that every example carries its own mask, as vmap needs."""

    def __init__(self, batch_first: bool = True, bias: bool = True, pad: bool = False, **kw: object) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=batch_first, bias=bias)
        self.head = nn.Linear(8, 3)
        self.pad, self.kw = pad, kw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.attn.batch_first else x.transpose(0, 1)
        kw = dict(self.kw)
        if self.pad:
            mask = torch.zeros(x.shape[:2], dtype=x.dtype)
            mask[:, -1] = -math.inf
            kw["key_padding_mask"] = mask - 3.0 * (x[..., 0] > 1.0).to(x.dtype)
        y = self.attn(h, h, h, **kw)[0]
        y = y if self.attn.batch_first else y.transpose(0, 1)
        return self.head(torch.tanh(y).mean(dim=1))


class CrossAttention(nn.Module):
    """Queries from three positions attend to keys and values from other inputs (three sites of
    in_proj_weight's rows), and the averaged attention weights are part of the output."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, weights = self.attn(x[:, :3], x, x.flip(1))
        return self.head(y.mean(dim=1)) + weights.pow(2).sum(dim=(1, 2)).unsqueeze(1)


def _attention_models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(7, 5, 8, generator=g)
    causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True)
    return {
        "self-attention": (SelfAttention(), X),
        "sequence-first-no-bias": (SelfAttention(batch_first=False, bias=False), X),
        "masks-no-weights": (
            SelfAttention(
                pad=True,
                attn_mask=torch.randn(5, 5, generator=g, dtype=torch.float64),
                need_weights=False,
            ),
            X,
        ),
        "causal": (SelfAttention(attn_mask=causal, is_causal=True), X),
        "cross-attention-weights": (CrossAttention(), X),
        "encoder": (
            nn.Sequential(
                nn.TransformerEncoder(block, 2, enable_nested_tensor=False),
                nn.Flatten(),
                nn.Linear(40, 3),
            ),
            X,
        ),
    }


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
        "embedding-no-padding": (EmbedMean(padding_idx=None), torch.randint(0, 7, (n, 6), generator=g)),
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


@pytest.mark.parametrize("name", list(_models()) + list(_attention_models()))
def test_each_rule_gives_vmap_s_sums_and_sums_of_squares(name: str) -> None:
    model, X = {**_models(), **_attention_models()}[name]
    (total, sumsq), (rt, rs), path = _both(model, X)
    assert path == "layers"
    _close(total, rt)
    _close(sumsq, rs)
    # the check can fail: squaring before the per-example sum (over positions, or over an
    # example's repeated ids) gives other numbers wherever an example has several positions
    assert all(float(s.abs().max()) > 0 for s in sumsq)


@pytest.mark.parametrize("name", ["linear-on-sequences", "conv1d", "conv2d"])
def test_rules_in_chunks_of_examples_give_the_same_sums(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a budget below one example's gradient: one example per chunk (nine chunks), each squared in
    # place and added; the sums must still be vmap's (a chunk lost or counted twice, or a square
    # taken of a running sum, moves them by O(1))
    monkeypatch.setattr(per_example, "PER_EXAMPLE_BUDGET", 1)
    model, X = _models()[name]
    (total, sumsq), (rt, rs), path = _both(model, X)
    assert path == "layers"
    _close(total, rt)
    _close(sumsq, rs)


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


@pytest.mark.parametrize("name", list(_attention_models()))
def test_attention_computes_its_own_function_while_recorded(name: str) -> None:
    """The statistics' forward pass runs multi-head attention as a recorded math path: the same
    outputs as the layer's own forward (float64 round-off), and the layer's forward is its own
    again afterwards."""
    model, X = _attention_models()[name]
    model, X = model.double(), X.double()
    layer_plan = plan(model, [n for n, _ in model.named_parameters()])
    assert layer_plan is not None
    with torch.no_grad():
        want = model(X)
    with Recorder(model, layer_plan) as rec:
        got = model(X).detach()
    assert rec.calls() is not None  # every layer recorded once, its outputs in the graph
    assert float((got - want).abs().max()) <= TOL * float(want.abs().max())
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_attention_outside_the_ruled_case_is_left_to_the_fallback() -> None:
    """Dropout while training draws per call: the layer runs its own forward and the fallback
    serves (one example at a time, as vmap refuses random operations); extra key/value rows
    (bias_k) have no rule at all."""
    model = SelfAttention()
    model.attn.dropout = 0.5
    model.train()
    assert plan(model, [n for n, _ in model.named_parameters()]) is not None
    prob = ModuleProblem(model.double(), "mse")
    w = [p.detach() for p in model.parameters()]
    X = torch.randn(4, 5, 8, dtype=torch.float64)
    prob.per_example_products(w, X, X, torch.randn(4, 3, dtype=torch.float64))
    assert prob.per_example_path == "loop"
    extra = nn.MultiheadAttention(8, 2, add_bias_kv=True)
    assert plan(extra, [n for n, _ in extra.named_parameters()]) is None


def test_the_row_transformer_is_served_by_the_rules() -> None:
    """shf's transformer classifier (attention, LayerNorm, Linear on rows, the position
    Embedding) has a rule for every parameter, and its sums agree with vmap."""
    model = RowTransformer(16, 3, width=8, layers=1, heads=2)
    (total, sumsq), (rt, rs), path = _both(model, torch.randn(6, 16))
    assert path == "layers"
    _close(total, rt)
    _close(sumsq, rs)
