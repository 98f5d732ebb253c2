"""Forward-mode products ``J d`` by per-layer rules, for a model that is a chain of known layers.

``torch.func.jvp`` recomputes the model's forward pass with every tangent, so on the generic
path one product ``A d`` costs a forward pass more than the hand-written Alg. 4, which
reuses the activations ``S_l`` and their derivatives ``S'_l`` cached once per HF iteration.
For a model that is an ``nn.Sequential`` (nested ones flattened) of layers with a rule below,
:class:`ChainForward` does the same for any such model: one forward pass per HF iteration
keeps each layer's input ``x`` (and what its rule needs), and every product then runs the
tangent recurrence

    dy = (d layer / d x) dx + (d layer / d theta) d_theta

layer by layer from ``dx = 0`` at the input, with no forward pass:

* ``Linear``: ``dy = dx W^T + x dW^T + db`` (any leading dimensions);
* ``Conv1d``/``Conv2d``/``Conv3d``: ``dy = conv(dx, W) + conv(x, dW) + db`` (the module's own
  padding mode, stride, dilation and groups: a convolution is linear in its input and in its
  weight);
* ``Sigmoid``, ``Tanh``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``SiLU``, ``GELU``, ``Softplus``:
  ``dy = f'(x) ∘ dx`` with ``f'`` evaluated once per HF iteration (Alg. 4's ``S'_l``);
* ``MaxPool1d``/``MaxPool2d``: ``dx`` read at the maxima's positions (found once);
* parameter-free linear layers (``Flatten``, ``Unflatten``, ``Identity``, ``AvgPool1d``/``2d``,
  ``Dropout`` in eval mode): ``dy = layer(dx)``.

Anything else (another layer, a parameter tied between layers, a loss that transforms the
output) gets no plan, and the caller keeps ``torch.func`` (:mod:`shf.curvature.module`).
The reverse products ``J^T u`` come from the same forward pass (plain autograd), so one
forward pass per HF iteration serves both directions, as in the hand-written path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d)
_LINEAR_NO_PARAMS = (nn.Flatten, nn.Unflatten, nn.Identity, nn.AvgPool1d, nn.AvgPool2d, nn.Dropout)


def _derivative(m: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``f'(x)`` of an elementwise activation (input ``x``, output ``y = f(x)``)."""
    if isinstance(m, nn.Sigmoid):
        return y * (1 - y)
    if isinstance(m, nn.Tanh):
        return 1 - y * y
    if isinstance(m, nn.ReLU):
        return (x > 0).to(x.dtype)
    if isinstance(m, nn.LeakyReLU):
        return torch.where(x > 0, 1.0, m.negative_slope).to(x.dtype)
    # The rest through autograd of the elementwise function (one backward pass per HF iteration).
    xr = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(m.forward(xr).sum(), xr)  # forward: not the hooks
    return grad


_ELEMENTWISE = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Softplus)


@dataclass(frozen=True)
class Layer:
    """One leaf of the chain: the module and the indices of its trained ``weight`` and ``bias``
    in the trained parameter list (None: not trained, no tangent)."""

    module: nn.Module
    weight: int | None = None
    bias: int | None = None


def _leaves(model: nn.Module) -> list[nn.Module] | None:
    """The leaves of a (nested) ``nn.Sequential`` in the order they run, or None for any other model
    (a subclass counts only with ``nn.Sequential``'s own ``forward``)."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return None
    out: list[nn.Module] = []
    for child in model:
        if isinstance(child, nn.Sequential):
            sub = _leaves(child)
            if sub is None:
                return None
            out += sub
        else:
            out.append(child)
    return out


def _supported(m: nn.Module) -> bool:
    """Whether ``m`` has a rule: its exact class (a subclass may change ``forward``) and settings."""
    if type(m) not in _AFFINE + _ELEMENTWISE + _POOL + _LINEAR_NO_PARAMS:
        return False
    if isinstance(m, _POOL):
        return not m.return_indices
    if isinstance(m, nn.Dropout):
        return not m.training or m.p == 0
    if getattr(m, "inplace", False):
        # f'(x) is read from x after the layer ran: right for ReLU, and for LeakyReLU with a
        # slope >= 0 (the sign of x is kept); wrong for the others, which overwrite x.
        return isinstance(m, nn.ReLU) or (isinstance(m, nn.LeakyReLU) and m.negative_slope >= 0)
    return True


def plan(model: nn.Module, names: Sequence[str]) -> list[Layer] | None:
    """The chain of ``model``'s layers with the positions of the trained parameters ``names``
    (as ``named_parameters`` calls them), or None when the model is not a chain of layers
    with a rule, a trained parameter is not a ``Linear``'s or a convolution's ``weight``/``bias``,
    or a parameter is shared between layers."""
    leaves = _leaves(model)
    if leaves is None or not all(_supported(m) for m in leaves):
        return None
    by_id: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in by_id:
            return None  # tied
        by_id[id(p)] = name
    index = {name: i for i, name in enumerate(names)}
    layers: list[Layer] = []
    for m in leaves:
        own = dict(m.named_parameters(recurse=False))
        if set(own) - {"weight", "bias"}:
            return None
        pos = {k: index.get(by_id[id(p)]) for k, p in own.items()}
        layers.append(Layer(m, pos.get("weight"), pos.get("bias")))
    found = {i for layer in layers for i in (layer.weight, layer.bias) if i is not None}
    return layers if found == set(range(len(names))) else None


class ChainForward:
    """The tangent map ``d -> J d`` of a chain at fixed weights and inputs (see the module docstring).

    Built from one forward pass that ``run`` makes (the model with the trained weights swapped
    in): hooks keep, as each layer runs, what its rule needs (a ``Linear``'s or convolution's
    input, an activation's ``f'(x)``, the pooling maxima), before a later in-place layer could
    change it. ``output`` is what ``run`` returned.
    """

    def __init__(self, layers: list[Layer], run: Callable[[], Tensor]) -> None:
        self.layers = layers
        # One hook per module, in the order its calls run: a parameter-free module may appear at
        # several places of the chain (one nn.Tanh() used after every layer).
        kept: dict[int, list[Tensor | None]] = {}

        def hook(m: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            kept.setdefault(id(m), []).append(_saved(m, args[0].detach(), out.detach()))

        modules = list({id(layer.module): layer.module for layer in layers}.values())
        handles = [m.register_forward_hook(hook) for m in modules]
        try:
            self.output = run()
        finally:
            for h in handles:
                h.remove()
        places = Counter(id(layer.module) for layer in layers)
        if any(len(kept.get(k, [])) != count for k, count in places.items()):
            raise RuntimeError("the chain's layers did not run once per place in the chain")
        calls = {k: iter(v) for k, v in kept.items()}
        self._saved = [next(calls[id(layer.module)]) for layer in layers]

    def __call__(self, w: Sequence[Tensor], d: Sequence[Tensor]) -> Tensor:
        """``J d`` at the recorded point, for weights ``w`` and tangents ``d`` (trained parameters)."""
        dx: Tensor | None = None  # the input has no tangent
        for layer, saved in zip(self.layers, self._saved):
            m = layer.module
            if isinstance(m, _AFFINE):
                assert saved is not None
                W = w[layer.weight] if layer.weight is not None else m.weight.detach()
                dW = d[layer.weight] if layer.weight is not None else None
                db = d[layer.bias] if layer.bias is not None else None
                dx = _affine_tangent(m, saved, dx, W, dW, db)
            elif dx is None:
                continue  # no tangent yet: nothing trained before this layer
            elif isinstance(m, _ELEMENTWISE):
                assert saved is not None
                dx = saved * dx  # dy = f'(x) ∘ dx
            elif isinstance(m, _POOL):
                assert saved is not None
                dx = dx.flatten(2).gather(2, saved.flatten(2)).view(saved.shape)
            else:
                dx = m.forward(dx)  # a linear layer without parameters (no hooks)
        if dx is None:
            return torch.zeros_like(self.output)
        return dx


def _saved(m: nn.Module, x: Tensor, y: Tensor) -> Tensor | None:
    """What a layer's rule keeps from its input ``x`` and output ``y``."""
    if isinstance(m, _AFFINE):
        return x
    if isinstance(m, _ELEMENTWISE):
        return _derivative(m, x, y)
    if isinstance(m, _POOL):
        return _pool_indices(m, x)
    return None


def _affine_tangent(
    m: nn.Module, x: Tensor, dx: Tensor | None, W: Tensor, dW: Tensor | None, db: Tensor | None
) -> Tensor | None:
    """``dy = layer(dx; W, no bias) + layer(x; dW, db)`` for a Linear or a convolution (``None``:
    no tangent reaches the output, nothing trained up to here)."""
    linear = isinstance(m, nn.Linear)

    def apply(inp: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if linear:
            return functional.linear(inp, weight, bias)
        out: Tensor = m._conv_forward(inp, weight, bias)  # type: ignore[operator]
        return out

    out: Tensor | None = None
    if dW is not None:
        out = apply(x, dW, db)
    elif db is not None:  # a trained bias of a frozen weight
        out = apply(x, torch.zeros_like(W), db)
    if dx is not None:
        term = apply(dx, W, None)
        out = term if out is None else out.add_(term)
    return out


def _pool_indices(m: nn.Module, x: Tensor) -> Tensor:
    """The flat positions (per example and channel) of the maxima a max-pooling layer takes."""
    if isinstance(m, nn.MaxPool1d):
        _, idx = functional.max_pool1d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, True)
    else:
        assert isinstance(m, nn.MaxPool2d)
        _, idx = functional.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, True)
    return idx
