"""Layers whose weights act inside one opaque call, computed as their math path with each
linear map's input and output recorded, for the per-example rules (:mod:`shf.curvature.per_example`).

A forward hook sees a layer's input and output only. The per-layer rule of a weight needs the
input and the output gradient of the linear map that weight takes part in. For
``nn.MultiheadAttention`` (whose projections run inside ``F.multi_head_attention_forward``) and the
recurrent layers ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` (whose maps run inside one fused kernel,
once per time step) the statistics' forward pass runs the same function as the layer through
these math paths instead, each ``F.linear`` call recorded as a *site* ``(input, output)``. A call
outside the case a math path covers runs the layer's own forward and records ``None``; the caller
then uses ``vmap`` or one example at a time.

Each math path computes the layer's function to round-off (float64 tests against the layer's own
forward in ``tests/test_curvature_recorded.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

#: One call of a layer: its recorded (input, output) pairs, one per linear map inside it (one for
#: most layers; the input projections and the output projection of multi-head attention; each
#: time step's maps of a recurrent layer).
Sites = tuple[tuple[Tensor, Tensor], ...]
#: Where a math path hands its sites (``None``: the call ran the layer's own forward).
Record = Callable[[Sites | None], None]


def _additive(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A boolean mask (True: not attended) as ``-inf`` entries to add to the scores, a float
    mask as it is (``F.multi_head_attention_forward``'s convention)."""
    if mask is None or mask.is_floating_point():
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))


def attention(
    m: nn.MultiheadAttention,
    record: Record,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    key_padding_mask: Tensor | None = None,
    need_weights: bool = True,
    attn_mask: Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """``nn.MultiheadAttention.forward`` for the statistics' forward pass: the same function,
    computed as ``F.multi_head_attention_forward``'s math path with the projections as separate
    ``F.linear`` calls whose inputs and outputs go to ``record``. A call outside the ruled case
    (unbatched inputs, dropout while training, an integer mask, ``is_causal`` without a mask)
    runs the layer's own forward and records ``None`` (the caller then uses ``vmap``)."""
    masks = [t for t in (key_padding_mask, attn_mask) if t is not None]
    if (
        query.dim() != 3
        or (m.training and m.dropout > 0.0)
        or any(not (t.dtype == torch.bool or t.is_floating_point()) for t in masks)
        or (is_causal and attn_mask is None)
    ):
        record(None)
        return nn.MultiheadAttention.forward(
            m, query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
            attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal,
        )  # fmt: skip
    same = query is key and key is value
    if not m.batch_first:  # the examples first, as the rules read them
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    E, H = m.embed_dim, m.num_heads
    W, b = m.in_proj_weight, m.in_proj_bias
    sites: list[tuple[Tensor, Tensor]] = []
    if same:  # self-attention: one projection to the query, key and value columns
        qkv = functional.linear(query, W, b)
        sites.append((query.detach(), qkv))
        q, k, v = qkv.chunk(3, dim=-1)
    else:  # each input through its own rows of the packed projection
        projected = []
        for j, x in enumerate((query, key, value)):
            rows = slice(j * E, (j + 1) * E)
            y = functional.linear(x, W[rows], None if b is None else b[rows])
            sites.append((x.detach(), y))
            projected.append(y)
        q, k, v = projected
    n, L, S, d = q.shape[0], q.shape[1], k.shape[1], E // H
    # heads: (n, H, positions, d)
    q, k, v = (t.reshape(n, -1, H, d).transpose(1, 2) for t in (q, k, v))
    # the masks added to the scores: attn_mask (L, S) or (n*H, L, S), key_padding_mask (n, S)
    bias = _additive(attn_mask, q.dtype)
    if bias is not None:
        bias = bias.reshape(1, 1, L, S) if bias.dim() == 2 else bias.reshape(n, H, L, S)
    padding = _additive(key_padding_mask, q.dtype)
    if padding is not None:
        padding = padding.reshape(n, 1, 1, S)
        bias = padding if bias is None else bias + padding
    # softmax(q k^T / sqrt(d) + mask) v, the heads joined
    scores = (q * math.sqrt(1.0 / d)) @ k.transpose(-2, -1)
    weights = torch.softmax(scores if bias is None else scores + bias, dim=-1)
    ctx = (weights @ v).transpose(1, 2).reshape(n, L, E)
    out = functional.linear(ctx, m.out_proj.weight, m.out_proj.bias)
    sites.append((ctx.detach(), out))
    record(tuple(sites))
    out = out.clone()  # a later in-place operation cannot change the recorded output
    if not m.batch_first:
        out = out.transpose(0, 1)
    if not need_weights:
        return out, None
    return out, weights.mean(dim=1) if average_attn_weights else weights


def _cell(m: nn.RNNBase, xt: Tensor, hh: Tensor, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """One time step of ``m`` (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``, PyTorch's equations) from the
    input map ``xt = W_ih x_t + b_ih`` and the hidden map ``hh = W_hh h_{t-1} + b_hh``."""
    if isinstance(m, nn.LSTM):
        # i, f, g, o = the four gate blocks; c_t = f c_{t-1} + i g; h_t = o tanh(c_t)
        i, f, g, o = (xt + hh).chunk(4, dim=-1)
        assert c is not None
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if isinstance(m, nn.GRU):
        # r = s(W_ir x + b_ir + W_hr h + b_hr), z likewise, n = tanh(W_in x + b_in + r (W_hn h + b_hn)),
        # h_t = (1 - z) n + z h_{t-1}
        xr, xz, xn = xt.chunk(3, dim=-1)
        hr, hz, hn = hh.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h, None
    # h_t = tanh or relu of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    pre = xt + hh
    return (torch.tanh(pre) if m.nonlinearity == "tanh" else torch.relu(pre)), None


def recurrent(m: nn.RNNBase, record: Record, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:
    """``nn.RNN``/``nn.LSTM``/``nn.GRU``'s forward for the statistics' forward pass: the same
    function, layer by layer, direction by direction and step by step, with the input map
    ``W_ih x + b_ih`` of each (layer, direction) as one site over the whole sequence followed by
    its hidden map ``W_hh h_{t-1} + b_hh`` as one site per step (in the order the steps run).
    A call outside the covered case (a packed or unbatched sequence, dropout between layers while
    training, ``proj_size``) runs the layer's own forward and records ``None``."""
    if (
        not isinstance(input, Tensor)
        or input.dim() != 3
        or (m.training and m.dropout > 0.0 and m.num_layers > 1)
        or m.proj_size > 0
    ):
        record(None)
        return type(m).forward(m, input, hx)  # type: ignore[no-any-return]
    lstm = isinstance(m, nn.LSTM)
    x = input if m.batch_first else input.transpose(0, 1)  # (examples, steps, features)
    n, T = x.shape[0], x.shape[1]
    D, H = (2 if m.bidirectional else 1), m.hidden_size
    h0: Tensor
    c0: Tensor | None
    if hx is None:
        h0 = c0 = x.new_zeros(m.num_layers * D, n, H)
    else:
        h0, c0 = hx if lstm else (hx, None)
    sites: list[tuple[Tensor, Tensor]] = []
    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    for layer in range(m.num_layers):
        outputs = []
        for d in range(D):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            bias_ih = getattr(m, "bias_ih" + suffix) if m.bias else None
            bias_hh = getattr(m, "bias_hh" + suffix) if m.bias else None
            W_hh = getattr(m, "weight_hh" + suffix)
            xi = functional.linear(x, getattr(m, "weight_ih" + suffix), bias_ih)
            sites.append((x.detach(), xi))
            h: Tensor = h0[layer * D + d]
            c = None if c0 is None else c0[layer * D + d]
            ys: list[Tensor] = []
            for t in reversed(range(T)) if d else range(T):  # the reverse direction reads t = T-1..0
                hh = functional.linear(h, W_hh, bias_hh)
                sites.append((h.detach(), hh))
                h, c = _cell(m, xi[:, t], hh, h, c)
                ys.append(h)
            outputs.append(torch.stack(ys[::-1] if d else ys, dim=1))
            h_n.append(h)
            if c is not None:
                c_n.append(c)
        x = outputs[0] if D == 1 else torch.cat(outputs, dim=-1)  # the next layer's input
    record(tuple(sites))
    out = x if m.batch_first else x.transpose(0, 1)
    return (out, (torch.stack(h_n), torch.stack(c_n))) if lstm else (out, torch.stack(h_n))


MathPath = Callable[..., Any]
MATH_PATHS: dict[type[nn.Module], MathPath] = {
    nn.MultiheadAttention: attention,
    nn.RNN: recurrent,
    nn.LSTM: recurrent,
    nn.GRU: recurrent,
}
"""The layers the recorder runs through a math path (exact types), and the path: called as
``path(layer, record, *args, **kwargs)`` with the layer's forward arguments."""
