"""Per-example gradient statistics from each layer's inputs and output gradients.

The preconditioners (Chapelle-Erhan's ``sum_i (J_i^T B_i u_i)^2``, Martens' ``sum_i (grad l_i)^2``)
and Alg. 2's variance test need, for output-space cotangents ``v_i`` (one row per example),

    total = sum_i J_i^T v_i,        sumsq = sum_i (J_i^T v_i)^2   (elementwise).

For a parameter used by one layer, once per forward pass, ``J_i^T v_i`` restricted to that
layer's parameters is a function of the layer's input ``a_i`` and the gradient ``g_i`` of
``sum_i <z_i, v_i>`` with respect to the layer's output (the standard per-layer rules of
BackPACK and Opacus). One forward pass with hooks that keep each layer's input, and one
backward pass from ``V`` to the layers' outputs, give every ``(a_i, g_i)``; the rules then
give ``total`` and ``sumsq`` with a few matrix products per layer, instead of one gradient
per example through ``torch.func.vmap``:

* ``Linear`` on ``(n, in)`` inputs: ``total_W = g^T a``, ``sumsq_W = (g∘g)^T (a∘a)``; on
  ``(n, ..., in)`` inputs the example's gradient ``G_i = sum_t g_it a_it^T`` is formed per
  example (in chunks) and squared;
* ``Conv1d``/``Conv2d`` (zero padding, numeric padding, no groups): ``G_i`` is the weight
  gradient of the example alone, all examples at once as the groups of one convolution;
* ``Embedding``: the rows of ``g_i`` added at the example's indices (an index repeated within an
  example adds before squaring; ``padding_idx`` gets nothing);
* ``LayerNorm``: ``G_i = sum g_i ∘ x̂_i`` over the positions, ``x̂`` the normalised input;
* ``MultiheadAttention`` (equal query, key and value widths, no ``bias_k``/``add_zero_attn``,
  no dropout while training, batched inputs): its weights are used by two linear maps inside
  ``F.multi_head_attention_forward``, out of reach of hooks, so while the statistics' forward pass
  runs the layer computes the same function through :func:`shf.curvature.recorded.attention`
  (the math path of that function), which records the input projections' and the output
  projection's inputs and outputs; each is then a ``Linear`` on sequences (the query, key and
  value rows of ``in_proj_weight`` from their own inputs when those differ, as in
  cross-attention);
* ``RNN``, ``LSTM``, ``GRU`` (no ``proj_size``, no dropout between layers while training,
  batched unpacked sequences): through :func:`shf.curvature.recorded.recurrent`, each (layer,
  direction)'s input map ``W_ih x_t + b_ih`` is a ``Linear`` on the sequence and its hidden map
  ``W_hh h_{t-1} + b_hh`` the same rule on the steps stacked as positions.

A model is ruled only when every trained parameter belongs to a layer with a rule, that layer
runs exactly once per forward pass, and no parameter is shared (tied) between modules; any
other model returns ``None`` and the caller uses ``vmap`` (:meth:`ModuleProblem.per_example_products`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional
from torch.nn.grad import conv1d_weight, conv2d_weight

from shf.curvature.recorded import MATH_PATHS, Sites

PER_EXAMPLE_BUDGET = 1 << 22
"""Numbers held at once by a rule that forms per-example gradients (sequence and
convolution inputs): 16 MiB in float32. At 64 MiB the chunks (and their squares) made the
statistics of a small sequence model need 2.4x the memory of a gradient on the same batch
(issue 27's goal: at most 2x; ``benchmarks/per_example.py --memory``)."""

#: (total, sumsq) for each of a layer's parameters, by attribute name ("weight", "bias").
Stats = dict[str, tuple[Tensor, Tensor]]
#: The recorded call of each planned layer, by module path.
Calls = dict[str, Sites]
Rule = Callable[[nn.Module, Sequence[tuple[Tensor, Tensor]]], Stats]


def _chunked(per_example: Callable[[slice], Tensor], n: int, size: int) -> tuple[Tensor, Tensor]:
    """``(sum_i G_i, sum_i G_i^2)`` over examples, ``per_example(rows)`` giving ``G`` for a slice of
    them with ``size`` numbers per example, at most :data:`PER_EXAMPLE_BUDGET` at a time.
    ``per_example`` must return a tensor of its own (not a view of its inputs): it is squared in
    place, so that a chunk's square takes no second buffer."""
    step = max(1, PER_EXAMPLE_BUDGET // max(1, size))
    total: Tensor | None = None
    sumsq: Tensor | None = None
    for start in range(0, n, step):
        G = per_example(slice(start, start + step))
        t = G.sum(dim=0)
        s = G.mul_(G).sum(dim=0)  # G_i^2 in place: G is not used again
        del G
        total, sumsq = (t, s) if total is None or sumsq is None else (total.add_(t), sumsq.add_(s))
    assert total is not None and sumsq is not None
    return total, sumsq


def _sums(per: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum_i G_i, sum_i G_i^2)`` of the per-example gradients ``per`` (examples first)."""
    return per.sum(dim=0), (per * per).sum(dim=0)


def _bias(g: Tensor) -> tuple[Tensor, Tensor]:
    """A bias added to every position: the example's gradient sums ``g`` over the positions."""
    return _sums(g.reshape(g.shape[0], -1, g.shape[-1]).sum(dim=1) if g.dim() > 2 else g)


def _linear(m: nn.Module, a: Tensor, g: Tensor) -> Stats:
    assert isinstance(m, nn.Linear)
    out: Stats = {}
    if a.dim() == 2:
        # G_i = g_i a_i^T: the sum is g^T a, the sum of squares (g∘g)^T (a∘a)
        out["weight"] = (g.T @ a, (g * g).T @ (a * a))
    else:
        out["weight"] = _seq_linear(a, g)
    if m.bias is not None:
        out["bias"] = _bias(g)
    return out


def _conv(m: nn.Module, a: Tensor, g: Tensor) -> Stats:
    assert isinstance(m, (nn.Conv1d, nn.Conv2d))
    n, c_in, c_out = a.shape[0], m.in_channels, m.out_channels
    weight_grad = conv1d_weight if isinstance(m, nn.Conv1d) else conv2d_weight
    shape = tuple(m.weight.shape)

    def per_example(s: slice) -> Tensor:
        # G_i for the examples of s at once: the examples as groups of one convolution's weight
        # gradient (3x faster than unfold and a batched product at the CNN classifier's sizes)
        k = a[s].shape[0]
        x = a[s].reshape(1, k * c_in, *a.shape[2:])
        gy = g[s].reshape(1, k * c_out, *g.shape[2:])
        G: Tensor = weight_grad(x, (k * c_out, *shape[1:]), gy, stride=m.stride, padding=m.padding,  # type: ignore[no-untyped-call]
                        dilation=m.dilation, groups=k)  # fmt: skip
        return G.reshape(k, *shape)

    out: Stats = {"weight": _chunked(per_example, n, m.weight.numel())}
    if m.bias is not None:
        out["bias"] = _sums(g.reshape(n, c_out, -1).sum(dim=2))
    return out


def _embedding(m: nn.Module, a: Tensor, g: Tensor) -> Stats:
    assert isinstance(m, nn.Embedding)
    n, rows = a.shape[0], m.num_embeddings
    idx = a.reshape(n, -1)
    gf = g.reshape(n, idx.shape[1], -1)
    example = torch.arange(n, device=idx.device).unsqueeze(1).expand_as(idx)
    key = example * rows + idx  # one key per (example, row) pair
    if m.padding_idx is None:  # every position counts: views, no copy of the gradients
        ids, vals = idx.reshape(-1), gf.reshape(-1, gf.shape[-1])
    else:
        keep = idx != m.padding_idx
        ids, key, vals = idx[keep], key[keep], gf[keep]
    total = torch.zeros(rows, gf.shape[-1], dtype=g.dtype, device=g.device).index_add_(0, ids, vals)
    # an index repeated within one example adds before squaring
    uniq, inverse = torch.unique(key.reshape(-1), return_inverse=True)
    per = vals.new_zeros(uniq.shape[0], gf.shape[-1]).index_add_(0, inverse, vals)
    sumsq = torch.zeros_like(total).index_add_(0, uniq % rows, per.mul_(per))
    return {"weight": (total, sumsq)}


def _layer_norm(m: nn.Module, a: Tensor, g: Tensor) -> Stats:
    assert isinstance(m, nn.LayerNorm)
    shape = m.normalized_shape
    xhat = functional.layer_norm(a, shape, None, None, m.eps)
    n = a.shape[0]

    def per_example(t: Tensor) -> tuple[Tensor, Tensor]:
        return _sums(t.reshape(n, -1, *shape).sum(dim=1))  # summed over the positions first

    out: Stats = {}
    if m.weight is not None:
        out["weight"] = per_example(xhat.mul_(g))  # g ∘ x̂, in x̂'s buffer
    if m.bias is not None:
        out["bias"] = per_example(g)
    return out


def _seq_linear(a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum_i G_i, sum_i G_i^2)`` of a weight used at every position, ``G_i = sum_t g_it a_it^T``
    (the examples first in ``a`` and ``g``)."""
    n = a.shape[0]
    a3, g3 = a.reshape(n, -1, a.shape[-1]), g.reshape(n, -1, g.shape[-1])
    return _chunked(lambda s: torch.einsum("nto,nti->noi", g3[s], a3[s]), n, a3.shape[-1] * g3.shape[-1])


def _attention_rule(m: nn.Module, sites: Sequence[tuple[Tensor, Tensor]]) -> Stats:
    """Multi-head attention's weights from the sites :func:`shf.curvature.recorded.attention`
    records: the input projections (one site for self-attention, whose output holds the query,
    key and value columns, or one per input) and the output projection (the last site)."""
    assert isinstance(m, nn.MultiheadAttention)
    *inputs, (ctx, g_out) = sites
    weight = [_seq_linear(a, g) for a, g in inputs]
    # the rows of in_proj_weight are the query, key and value maps: each block's statistics
    # come from its own site, and disjoint rows concatenate
    out: Stats = {"in_proj_weight": (torch.cat([t for t, _ in weight]), torch.cat([s for _, s in weight]))}
    if m.in_proj_bias is not None:
        bias = [_bias(g) for _, g in inputs]
        out["in_proj_bias"] = (torch.cat([t for t, _ in bias]), torch.cat([s for _, s in bias]))
    out["out_proj.weight"] = _seq_linear(ctx, g_out)
    if m.out_proj.bias is not None:
        out["out_proj.bias"] = _bias(g_out)
    return out


def _recurrent_rule(m: nn.Module, sites: Sequence[tuple[Tensor, Tensor]]) -> Stats:
    """A recurrent layer's weights from the sites :func:`shf.curvature.recorded.recurrent`
    records: for each (layer, direction), the input map over the whole sequence, then the hidden
    map once per step. ``W_ih`` is a ``Linear`` on the sequence; ``W_hh``'s per-example gradient
    ``sum_t g_it h_i,t-1^T`` is the same rule on the steps stacked as positions."""
    assert isinstance(m, nn.RNNBase)
    out: Stats = {}
    k = 0
    for layer in range(m.num_layers):
        for d in range(2 if m.bidirectional else 1):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            a, g = sites[k]
            steps = sites[k + 1 : k + 1 + a.shape[1]]
            k += 1 + a.shape[1]
            h, gh = torch.stack([t for t, _ in steps], dim=1), torch.stack([t for _, t in steps], dim=1)
            out["weight_ih" + suffix] = _seq_linear(a, g)
            out["weight_hh" + suffix] = _seq_linear(h, gh)
            if m.bias:
                out["bias_ih" + suffix] = _bias(g)
                out["bias_hh" + suffix] = _bias(gh)
    assert k == len(sites)
    return out


def _one_site(rule: Callable[[nn.Module, Tensor, Tensor], Stats]) -> Rule:
    """A rule of a layer with one linear map: its input ``a`` and output gradient ``g``."""

    def of_sites(m: nn.Module, sites: Sequence[tuple[Tensor, Tensor]]) -> Stats:
        ((a, g),) = sites
        return rule(m, a, g)

    return of_sites


RULES: dict[type[nn.Module], Rule] = {
    nn.Linear: _one_site(_linear),
    nn.Conv1d: _one_site(_conv),
    nn.Conv2d: _one_site(_conv),
    nn.Embedding: _one_site(_embedding),
    nn.LayerNorm: _one_site(_layer_norm),
    nn.MultiheadAttention: _attention_rule,
    nn.RNN: _recurrent_rule,
    nn.LSTM: _recurrent_rule,
    nn.GRU: _recurrent_rule,
}
"""The layer types with a rule (exact types: a subclass may change what its forward does)."""

ATTENTION_PARAMETERS = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
"""Multi-head attention's parameters that its rule serves (``out_proj`` runs no forward of its own)."""


def _ruled(m: nn.Module) -> bool:
    rule = RULES.get(type(m))
    if rule is None:
        return False
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        return m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)
    if isinstance(m, nn.Embedding):  # max_norm rewrites the weight; scale_grad_by_freq reads the batch
        return m.max_norm is None and not m.scale_grad_by_freq
    if isinstance(m, nn.MultiheadAttention):  # the packed projection, no extra key/value rows
        return bool(m._qkv_same_embed_dim) and m.bias_k is None and m.bias_v is None and not m.add_zero_attn
    if isinstance(m, nn.RNNBase):  # no projection of the hidden state
        return m.proj_size == 0
    return True


def _rule_parameters(m: nn.Module) -> tuple[str, ...]:
    """The parameter names a layer's rule serves."""
    if isinstance(m, nn.MultiheadAttention):
        return ATTENTION_PARAMETERS
    if isinstance(m, nn.RNNBase):
        return tuple(m._flat_weights_names)
    return ("weight", "bias")


@dataclass(frozen=True)
class LayerPlan:
    """The layers whose rules give the statistics of the trained parameters ``names``:
    ``owners[k] = (module path, attribute)`` of ``names[k]``."""

    owners: tuple[tuple[str, str], ...]
    modules: tuple[str, ...]


def plan(model: nn.Module, names: Sequence[str]) -> LayerPlan | None:
    """The layers that serve ``names`` (the trained parameters, as ``named_parameters`` names
    them), or ``None`` when one of them has no rule or a parameter is shared between modules."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    if any(c > 1 for c in seen.values()):
        return None  # a tied parameter: its per-example gradient sums over its uses
    mods = dict(model.named_modules())
    owners = []
    for name in names:
        path, _, attr = name.rpartition(".")
        parent, _, child = path.rpartition(".")
        if child == "out_proj" and isinstance(mods.get(parent), nn.MultiheadAttention):
            path, attr = parent, f"out_proj.{attr}"  # served by the attention layer's rule
        m = mods.get(path)
        if m is None or not _ruled(m) or attr not in _rule_parameters(m):
            return None
        owners.append((path, attr))
    return LayerPlan(tuple(owners), tuple(dict.fromkeys(p for p, _ in owners)))


class Recorder:
    """Forward hooks that keep each planned layer's input and output while the model runs
    (``with Recorder(model, plan): z = forward()``); :meth:`calls` gives them afterwards.
    Multi-head attention and the recurrent layers run their math paths
    (:data:`shf.curvature.recorded.MATH_PATHS`) instead of their own forwards meanwhile (the same
    function, its linear maps recorded).

    Each hook hands what follows a copy of the layer's output, so that an in-place activation
    (``ReLU(inplace=True)``, ``sigmoid_``) cannot change the output whose gradient is read.
    """

    def __init__(self, model: nn.Module, layer_plan: LayerPlan) -> None:
        self._mods = dict(model.named_modules())
        self._plan = layer_plan
        self._seen: dict[str, list[Sites | None]] = {p: [] for p in layer_plan.modules}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        # (layer, its own forward attribute, if it had one)
        self._patched: list[tuple[nn.Module, Callable[..., Any] | None]] = []

    def _hook_for(self, path: str) -> Callable[..., Tensor]:
        def hook(module: nn.Module, args: tuple[object, ...], output: Tensor) -> Tensor:
            x = args[0] if args else None
            if isinstance(x, Tensor) and isinstance(output, Tensor):
                self._seen[path].append(((x.detach(), output),))
                return output.clone()
            self._seen[path].append(None)  # not a plain tensor call: no rule
            return output

        return hook

    def _math_path_for(self, m: nn.Module, path: str) -> Callable[..., Any]:
        math_path = MATH_PATHS[type(m)]

        def forward(*args: Any, **kwargs: Any) -> Any:
            return math_path(m, self._seen[path].append, *args, **kwargs)

        return forward

    def __enter__(self) -> Recorder:
        for p in self._plan.modules:
            m = self._mods[p]
            if type(m) in MATH_PATHS:
                self._patched.append((m, m.__dict__.get("forward")))
                m.forward = self._math_path_for(m, p)  # type: ignore[method-assign]
            else:
                self._handles.append(m.register_forward_hook(self._hook_for(p)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        for m, own in self._patched:
            del m.forward  # the class's forward again, or the one the instance had
            if own is not None:
                m.forward = own  # type: ignore[method-assign]
        self._handles, self._patched = [], []

    def calls(self) -> Calls | None:
        """``{layer: ((input, output), ...)}``, or None if a planned layer did not run exactly once
        (or its output is outside the graph): the caller then uses ``vmap``."""
        calls: Calls = {}
        for p, got in self._seen.items():
            if len(got) != 1 or got[0] is None or not all(o.requires_grad for _, o in got[0]):
                return None  # not run, run twice (a shared layer), or outside the graph
            calls[p] = got[0]
        return calls


def sums(
    model: nn.Module,
    layer_plan: LayerPlan,
    z: Tensor,
    calls: Calls,
    V: Tensor,
    like: Sequence[Tensor],
    *,
    retain_graph: bool = False,
) -> tuple[list[Tensor], list[Tensor]]:
    """``(sum_i J_i^T v_i, sum_i (J_i^T v_i)^2)`` in the order of ``layer_plan.owners`` (shapes of
    ``like``) from the recorded ``calls`` of the forward pass that gave ``z``: one backward pass
    from ``V`` to the layers' outputs, then each layer's rule (``retain_graph``: keep the graph
    for later backward passes)."""
    mods = dict(model.named_modules())
    sites = [site for p in layer_plan.modules for site in calls[p]]
    grads = torch.autograd.grad(
        z, [o for _, o in sites], grad_outputs=V, allow_unused=True, retain_graph=retain_graph
    )
    stats: dict[str, Stats] = {}
    k = 0
    for p in layer_plan.modules:
        got = []
        for a, o in calls[p]:
            g = grads[k]
            got.append((a, torch.zeros_like(o) if g is None else g.detach()))
            k += 1
        stats[p] = RULES[type(mods[p])](mods[p], got)
    total, sumsq = [], []
    for (path, attr), w in zip(layer_plan.owners, like):
        t, s = stats[path][attr]
        total.append(t.reshape(w.shape).to(w.dtype))
        sumsq.append(s.reshape(w.shape).to(w.dtype))
    return total, sumsq


def products(
    model: nn.Module,
    layer_plan: LayerPlan,
    forward: Callable[[], Tensor],
    V: Tensor,
    like: Sequence[Tensor],
) -> tuple[list[Tensor], list[Tensor]] | None:
    """``(sum_i J_i^T v_i, sum_i (J_i^T v_i)^2)`` in the order of ``layer_plan.owners`` (shapes of
    ``like``), from one forward pass ``forward()`` (which must run ``model`` with parameters that
    require grad, so that the layers' outputs are in the graph) and one backward pass from ``V``;
    ``None`` if a planned layer did not run exactly once (the caller then uses ``vmap``)."""
    with Recorder(model, layer_plan) as rec:
        z = forward()
    calls = rec.calls()
    if calls is None:
        return None
    return sums(model, layer_plan, z, calls, V, like)
