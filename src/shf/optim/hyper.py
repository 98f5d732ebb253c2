"""Between SHF's typed settings groups (what :class:`shf.SHF` and :func:`shf.fit` take) and the flat
:class:`shf.optim.step.SHFConfig` (the ``[optimizer]`` section of a configuration file).

The groups (:mod:`shf.optim.settings`) are the API and hold shf's one set of defaults; together
their fields are exactly those of :class:`SHFConfig`, whose defaults are theirs: :func:`to_config`
maps groups to the flat configuration and :func:`from_config` maps back. :data:`TUNED` is derived:
where the defaults differ from the paper's settings (``SHFConfig.paper()``, ``shf.PAPER``).
:func:`check_given` refuses a setting that the chosen parts ignore.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from shf.errors import ConfigError
from shf.optim import settings as st
from shf.optim.step import SHFConfig

__all__ = ["GROUPS", "PAPER", "TUNED", "check_given", "from_config", "group_key", "to_config"]

PAPER: SHFConfig = SHFConfig.paper()
"""The paper's settings (its CURVES run, §6) as a named preset: ``shf.SHF(model, loss,
config=shf.PAPER)`` or ``shf.fit(..., config=shf.PAPER)``; another preset's Table 1 row on top with
``SHFConfig.paper(lambda1=7.5, ...)``. (SHF copies the configuration it is given.)"""

TUNED: dict[str, Any] = {k: getattr(SHFConfig(), k) for k in st.PAPER_VALUES}
"""The measured-best settings beyond the paper (issue 11; ``docs/results/ablations2`` and, for
B10 and B13-B15, ``docs/results/goal``): the keys of :class:`SHFConfig` whose default values differ
from the paper's, with the defaults' values. ``shf compare``'s ``shf-tuned`` overlays them on any
preset (the paper's presets keep the paper's values)."""

# (group field -> SHFConfig field) where the names differ.
_RENAMED: dict[type, dict[str, str]] = {
    st.Damping: {"rule": "damping_rule"},
    st.WarmStart: {"growth": "gamma_growth", "guard": "warm_start_guard"},
    st.Solver: {"kind": "solver"},
    st.Batch: {"growth": "batch_growth", "schedule": "batch_schedule", "test": "batch_test"},
}
GROUPS: tuple[type, ...] = (st.Damping, st.WarmStart, st.Solver, st.Batch, st.LineSearch, st.Init)

# (group, field) -> the flat value of a group default that :class:`shf.SHF`'s regime may choose
# (B17): the group's ``"auto"`` tells a rule not given from one given by name.
AUTO: dict[tuple[type, str], Any] = {(st.Damping, "rule"): SHFConfig.damping_rule}


def to_config(
    *,
    damping: st.Damping | None = None,
    warm_start: st.WarmStart | None = None,
    solver: st.Solver | None = None,
    batch: st.Batch | None = None,
    line_search: st.LineSearch | None = None,
    init: st.Init | None = None,
    preconditioner: str = st.PRECONDITIONER,
) -> SHFConfig:
    """The flat, validated :class:`SHFConfig` of these groups (``None``: the group's defaults).

    A field given a value other than its default that the chosen parts ignore is refused
    (:func:`check_given`)."""
    values: dict[str, Any] = {"preconditioner": preconditioner}
    given = list(zip(GROUPS, (damping, warm_start, solver, batch, line_search, init)))
    for cls, part in given:
        part = cls() if part is None else part
        if not (isinstance(part, cls) and dataclasses.is_dataclass(part)):
            raise ConfigError(f"expected a shf.{cls.__name__}, got {type(part).__name__}")
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if value == "auto" and (cls, f.name) in AUTO:
                value = AUTO[cls, f.name]  # not given: the flat default (the regime may replace it)
            values[group_key(cls, f.name)] = value
    cfg = SHFConfig(**values)
    check_given(cfg, given)
    return cfg


def from_config(cfg: SHFConfig) -> dict[str, Any]:
    """The groups of ``cfg`` as keyword arguments of :func:`to_config` (its inverse)."""
    out: dict[str, Any] = {"preconditioner": cfg.preconditioner}
    keys = ("damping", "warm_start", "solver", "batch", "line_search", "init")
    for key, cls in zip(keys, GROUPS):
        out[key] = cls(**{f.name: getattr(cfg, group_key(cls, f.name)) for f in dataclasses.fields(cls)})
    return out


def group_key(cls: type, name: str) -> str:
    """The :class:`SHFConfig` key of group ``cls``'s field ``name``."""
    return _RENAMED.get(cls, {}).get(name, name)


def given_fields(groups: Iterable[tuple[type, Any]]) -> Iterator[tuple[type, str, str, Any, Any]]:
    """``(class, field, SHFConfig key, value, default)`` of each group field given a value other
    than its default. ``groups``: ``(class, instance or None)``; what is not an instance of its
    class is skipped (:func:`to_config` refuses it)."""
    for cls, part in groups:
        if not isinstance(part, cls):
            continue
        default = cls()
        for f in dataclasses.fields(cls):
            value, was = getattr(part, f.name), getattr(default, f.name)
            if value != was:
                yield cls, f.name, group_key(cls, f.name), value, was


def check_given(cfg: SHFConfig, groups: Iterable[tuple[type, Any]]) -> None:
    """Refuse a group field given a value other than its default that ``cfg``'s parts ignore
    (``Damping(drop=0.9)`` under Nielsen's rule, ``Solver(merit_size=100)`` without the merit),
    with a message naming the part that ignores it. ``groups``: ``(class, instance or None)``."""
    ignored = cfg.ignored()
    for cls, name, key, value, default in given_fields(groups):
        if key in ignored:
            raise ConfigError(
                f"{cls.__name__}({name}={value!r}) is ignored by {ignored[key]}: leave {name} at "
                f"its default ({default!r}), or choose a part that reads it"
            )
