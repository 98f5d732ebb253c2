"""A batch's inputs: one tensor, or a dict of tensors (named inputs, e.g. token ids and a mask).

Examples are rows: every tensor of a dict (dicts may nest) has the same first dimension, the
number of examples ``n``. The model is called with the inputs as its one argument, ``model(X)``,
so a model that takes named inputs receives the dict. Everything shf does to a batch is done
here, leaf by leaf: count its rows, take some of them (Alg. 1's random batch, Alg. 6's merit
subset, one example for ``vmap``), move it, describe it in an error message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import torch
from torch import Tensor

from shf.errors import DataError

Inputs: TypeAlias = Tensor | Mapping[str, Any]
"""A tensor whose rows are examples, or a dict (``str`` keys) of such tensors or dicts."""


def is_inputs(x: object) -> bool:
    """Whether ``x`` is a tensor or a non-empty dict of inputs (its leaves are checked by :func:`leaves`)."""
    return isinstance(x, Tensor) or (isinstance(x, Mapping) and len(x) > 0)


def leaves(X: Inputs, what: str = "inputs") -> list[tuple[str, Tensor]]:
    """The tensors of ``X`` with their names (``""`` for a tensor, ``"['ids']"`` for a dict's
    entry); a :class:`DataError` for anything else (a list, a number, an empty dict, a non-str key)."""
    out: list[tuple[str, Tensor]] = []

    def walk(x: object, name: str) -> None:
        if isinstance(x, Tensor):
            out.append((name, x))
        elif isinstance(x, Mapping) and x:
            for k, v in x.items():
                if not isinstance(k, str):
                    raise DataError(f"{what}{name}: a dict of inputs needs str keys, got {k!r}")
                walk(v, f"{name}[{k!r}]")
        else:
            kind = "an empty dict" if isinstance(x, Mapping) else type(x).__name__
            raise DataError(f"{what}{name} must be a torch.Tensor or a dict of tensors, got {kind}")

    walk(X, "")
    return out


def rows(X: Inputs, what: str = "inputs") -> int:
    """``n``, the number of examples: the first dimension, the same for every tensor of a dict."""
    found = leaves(X, what)
    for name, t in found:
        if t.dim() == 0:
            raise DataError(f"{what}{name} must have one row per example (examples first), got a scalar")
    n = found[0][1].shape[0]
    for name, t in found[1:]:
        if t.shape[0] != n:
            raise DataError(
                f"{what}: {what}{found[0][0]} has {n} rows but {what}{name} has {t.shape[0]} "
                "(every tensor of a dict holds one row per example)"
            )
    return int(n)


def apply(f: Callable[[Tensor], Tensor], X: Inputs) -> Inputs:
    """``X`` with ``f`` applied to each tensor (the same structure)."""
    if isinstance(X, Tensor):
        return f(X)
    return {k: apply(f, v) for k, v in X.items()}


def take(X: Inputs, idx: Tensor | slice | int) -> Inputs:
    """The rows ``idx`` of ``X`` (``X[idx]`` of every tensor; an ``int`` drops the row dimension)."""
    if isinstance(X, Tensor):
        return X[idx]
    return apply(lambda t: t[idx.to(t.device) if isinstance(idx, Tensor) else idx], X)


def first(X: Inputs) -> Tensor:
    """The first tensor of ``X`` (its device is the batch's)."""
    return X if isinstance(X, Tensor) else leaves(X)[0][1]


def device(X: Inputs) -> torch.device:
    """The device of ``X``'s tensors (the first one's)."""
    return first(X).device


def describe(X: Inputs) -> str:
    """``"inputs of shape (n, d)"`` or ``"inputs ['ids'] (n, T) int64, ['mask'] (n, T) bool"``."""
    if isinstance(X, Tensor):
        return f"inputs of shape {tuple(X.shape)}"
    parts = [f"{name} {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for name, t in leaves(X)]
    return "inputs " + ", ".join(parts)
