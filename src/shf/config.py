"""Experiment configuration: TOML files, strict keys and types, CLI overrides.

A configuration has four sections, each a dataclass whose fields are the keys that
section accepts: ``[data]`` (:class:`DataConfig`), ``[model]`` (:class:`ModelConfig`),
``[optimizer]`` (:class:`shf.optim.step.SHFConfig`, the paper's hyper-parameters) and
``[run]`` (:class:`RunConfig`). Unknown sections or keys, and values of the wrong type,
raise :class:`shf.errors.ConfigError` naming the key. Overrides are
``section.key=value`` strings whose value is read as a TOML literal (``3``, ``1e-5``,
``true``, ``[784, 400, 6]``, ``"name"``), a bare word being taken as a string.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

from shf.data.registry import DataConfig as DataConfig
from shf.errors import ConfigError
from shf.fit import LoopConfig
from shf.optim.first_order import FirstOrderConfig
from shf.optim.hf import HFConfig
from shf.optim.settings import STORED_DEFAULTS
from shf.optim.step import SHFConfig

DTYPES = ("float32", "float64")
NONE_WORDS = ("none", "null")  # spell "no value" for an optional key in an override


SEED_LIMIT = 2**63
"""Seeds are integers in ``[0, SEED_LIMIT)``: what ``torch.Generator.manual_seed`` takes as a
signed 64-bit integer, with room for the seeds derived from them."""


def max_threads() -> int:
    """The most torch threads a run may ask for: 4 per core of this machine (more only slows
    a run down, and OpenMP crashes on absurd counts)."""
    return 4 * (os.cpu_count() or 1)


def check_threads(value: object, where: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is None or a thread count in [1, :func:`max_threads`]."""
    if value is None:
        return
    cores = os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_threads():
        raise ConfigError(
            f"{where} must be an integer between 1 and {max_threads()} "
            f"(4 per core; this machine has {cores} core{'s' if cores != 1 else ''}), got {value}"
        )


def check_seed(value: object, where: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer in ``[0, SEED_LIMIT)``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"{where} must be a non-negative integer below 2**63, got {value}")


TASKS = ("autoencoder", "classify")
PATHS = ("hand-written", "sequential")
ARCHS = ("mlp", "cnn", "transformer")


@dataclass
class ModelConfig:
    """The model.

    Attributes:
        task: ``autoencoder`` (the paper's: ``encoder`` sizes, decoder mirrored, ``linear_code``,
            ``loss`` = ``squared`` or ``cross_entropy`` on logistic outputs) or ``classify``
            (a classifier of the data set's labels, softmax cross-entropy; ``arch`` = ``mlp``
            with tanh layers of ``hidden`` units, ``cnn``, two 5x5 convolutions of
            ``channels`` maps, or ``transformer``, images read as sequences of rows by
            ``len(hidden)`` encoder blocks of width ``hidden[0]`` with ``heads`` heads).
        path: how SHF trains an autoencoder: ``hand-written`` (its products by Alg. 4 and 5, the
            fast path) or ``sequential`` (the network as a user writes it, ``nn.Sequential`` of
            ``nn.Linear`` and ``nn.Sigmoid``, through ``torch.func`` and the per-layer rules, the
            path any ``nn.Module`` takes; issue 27). The same weights, batches and objective; the
            other methods train the objective by autograd either way.
    """

    task: str = "autoencoder"
    encoder: list[int] = field(default_factory=lambda: [784, 400, 200, 100, 50, 25, 6])
    linear_code: bool = False
    loss: str = "squared"
    arch: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    channels: list[int] = field(default_factory=lambda: [8, 16])
    classes: int = 10
    heads: int = 4
    path: str = "hand-written"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"model.task must be one of {TASKS}, got {self.task!r}")
        if len(self.encoder) < 2 or any(isinstance(m, bool) or m < 1 for m in self.encoder):
            raise ConfigError(f"model.encoder must list at least two positive sizes, got {self.encoder}")
        if self.arch not in ARCHS:
            raise ConfigError(f"model.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.task == "autoencoder" and self.arch != "mlp":
            raise ConfigError(
                f"model.arch = {self.arch!r} (--arch) applies to task classify (--task classify), not to an "
                "autoencoder, whose layers are model.encoder (--encoder)"
            )
        if not self.hidden or any(m < 1 for m in self.hidden):
            raise ConfigError(f"model.hidden must list positive sizes, got {self.hidden}")
        if len(self.channels) != 2 or any(m < 1 for m in self.channels):
            raise ConfigError(f"model.channels must be two positive counts, got {self.channels}")
        if self.classes < 2:
            raise ConfigError(f"model.classes must be >= 2, got {self.classes}")
        if self.arch == "transformer":
            if len(set(self.hidden)) != 1:
                raise ConfigError(
                    "model.hidden for the transformer is its width once per encoder block, all equal "
                    f"(e.g. [32, 32] for two blocks of width 32), got {self.hidden}"
                )
            if isinstance(self.heads, bool) or self.heads < 1 or self.hidden[0] % self.heads:
                raise ConfigError(
                    f"model.heads must be a positive divisor of the width {self.hidden[0]}, got {self.heads}"
                )
        if self.path not in PATHS:
            raise ConfigError(f"model.path must be one of {PATHS}, got {self.path!r}")
        if self.task == "classify" and self.path != "hand-written":
            raise ConfigError(
                "model.path chooses how an autoencoder is trained; a classifier is an nn.Module already"
            )
        if self.task == "classify" and self.loss != "squared":
            raise ConfigError("model.loss is the autoencoder's; a classifier uses softmax cross-entropy")


@dataclass
class RunConfig(LoopConfig):
    """Seeds, numerics, device, and the loop's stopping rules (the fields it inherits from
    :class:`shf.fit.LoopConfig`, with the same defaults and checks); ``checkpoint_every``:
    write ``checkpoint.pt`` every this many iterations (0: only when interrupted)."""

    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        check_seed(self.seed, "run.seed")
        if not (isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 0):
            raise ConfigError(f"run.checkpoint_every must be an integer >= 0, got {self.checkpoint_every}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"run.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"run.device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        check_threads(self.threads, "run.threads")
        super().__post_init__()  # validates the stopping rules

    def loop(self) -> LoopConfig:
        """The loop's stopping rules: this section's keys that :class:`LoopConfig` has."""
        return LoopConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LoopConfig)})


@dataclass
class ExperimentConfig:
    """A whole run: data, model, optimizer and run settings."""

    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: SHFConfig = field(default_factory=SHFConfig)
    run: RunConfig = field(default_factory=RunConfig)
    hf: HFConfig = field(default_factory=HFConfig)
    first_order: FirstOrderConfig = field(default_factory=FirstOrderConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON/TOML-ready; ``inf`` kept as a float)."""
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": SHFConfig,
    "run": RunConfig,
    "hf": HFConfig,
    "first_order": FirstOrderConfig,
}


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` (int -> float allowed) or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in NONE_WORDS)):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [{section}]: {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}"
        )
    kwargs = {k: _check_type(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"[{section}] {e}") from None


def from_dict(d: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from nested dictionaries."""
    unknown = sorted(set(d) - set(SECTIONS) - {"name"})
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)}; valid: name, {', '.join(SECTIONS)}")
    name = d.get("name", "default")
    if not isinstance(name, str):
        raise ConfigError(f"name must be a string, got {name!r}")
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(f"name {name!r} must be a plain name (it names the run directory under runs/)")
    parts = {}
    for sec, cls in SECTIONS.items():
        vals = d.get(sec, {})
        if not isinstance(vals, dict):
            raise ConfigError(f"[{sec}] must be a table of keys, got {vals!r}")
        parts[sec] = _build(cls, vals, sec)
    return ExperimentConfig(name=name, **parts)


def restore_infinities(d: dict[str, Any]) -> dict[str, Any]:
    """A stored configuration (a run's ``config.json``) as :func:`from_dict` takes it.

    An ``[optimizer]`` key that the stored configuration lacks was added to shf after that run was
    made, when shf's behaviour without it was the paper's: it gets the paper's value
    (:data:`shf.optim.settings.STORED_DEFAULTS`: the paper's, or what it did before the key
    existed), not today's default.

    ``config.json`` is strict JSON, where :func:`shf.runlog.jsonable` wrote an infinite float
    (``run.max_time = inf``: no time limit) as ``null``; a ``null`` under a key whose type is a
    plain ``float`` (``None`` is not one of its values) is that infinity again. Other values are
    left for :func:`from_dict` to check."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for sec, cls in SECTIONS.items():
        vals = out.get(sec)
        if not isinstance(vals, dict):
            continue
        hints = typing.get_type_hints(cls)
        for k, v in vals.items():
            if v is None and hints.get(k) is float:
                vals[k] = math.inf
    if isinstance(out.get("optimizer"), dict):
        # a key missing from a stored run was added after it: the run had the paper's setting
        out["optimizer"] = {**STORED_DEFAULTS, **out["optimizer"]}
    return out


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"section.key=value"`` -> ``(section, key, value)`` with ``value`` a TOML literal."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. optimizer.lambda1=3)")
    lhs, raw = text.split("=", 1)
    section, key = lhs.strip().split(".", 1)
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        # "inf" is not a TOML float literal; any other bare word is a string.
        value = math.inf if raw.lower() in ("inf", "+inf") else raw
    return section, key, value


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of the nested dictionary ``d`` with ``section.key=value`` applied."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in SECTIONS:
            raise ConfigError(f"override {text!r}: unknown section {section!r}; valid: {', '.join(SECTIONS)}")
        out.setdefault(section, {})[key] = value
    return out


def preset_names() -> list[str]:
    """Names of the built-in configuration files (``shf/experiments/configs/*.toml``)."""
    files = resources.files("shf.experiments").joinpath("configs")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def read_toml(name_or_path: str) -> dict[str, Any]:
    """Read a built-in preset by name or a TOML file by path."""
    p = Path(name_or_path)
    if p.is_dir():
        presets = ", ".join(preset_names())
        raise ConfigError(f"config {str(p)!r} is a directory: give a TOML file or a preset name ({presets})")
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            raise ConfigError(f"config file {str(p)!r} is not a text (TOML) file") from None
    else:
        names = preset_names()
        if name_or_path not in names:
            raise ConfigError(f"unknown config {name_or_path!r}: give a .toml file or one of {names}")
        text = resources.files("shf.experiments").joinpath("configs", f"{name_or_path}.toml").read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{name_or_path}: invalid TOML: {e}") from None


SIZE_KEYS = ("n_train", "n_val", "n_test")


def load(
    name_or_path: str = "default", overrides: list[str] | None = None, *, given: Iterable[str] | None = None
) -> ExperimentConfig:
    """Read a preset or file, apply overrides, validate.

    An ``[optimizer]`` key that the chosen parts ignore (:meth:`SHFConfig.ignored`) is refused
    where it is given: in the file, against the parts the file chooses, and in the overrides,
    against the result. ``given``: the ``[optimizer]`` keys of the overrides that the user gave
    (default: all of them; a method's own overlay passed as overrides is not the user's).

    The split sizes a file sets are for its own data set: an override that names another
    data set drops them (unless the overrides set them too), so a preset's sizes do not
    leak onto a data set of another size.
    """
    base = read_toml(name_or_path)
    d = apply_overrides(base, overrides or [])
    try:  # the file's own [optimizer] keys, against the parts the file itself chooses
        check_ignored(from_dict(base).optimizer, base.get("optimizer", {}), str(name_or_path))
    except ConfigError as e:
        if "is ignored" in str(e):
            raise
        # the file is completed by the overrides: its keys are checked against the result below
    before = base.get("data", {}).get("dataset", DataConfig.dataset)
    after = d.get("data", {}).get("dataset", DataConfig.dataset)
    if after != before:
        given = {parse_override(o)[1] for o in overrides or [] if parse_override(o)[0] == "data"}
        for k in SIZE_KEYS:
            if k not in given:
                d["data"].pop(k, None)
    cfg = from_dict(d)
    if given is None:
        given = [parse_override(o)[1] for o in overrides or [] if parse_override(o)[0] == "optimizer"]
    check_ignored(cfg.optimizer, given, "--set")
    return cfg


def check_ignored(cfg: SHFConfig, keys: Iterable[str], where: str) -> None:
    """Refuse the ``[optimizer]`` ``keys`` (given in a file or as overrides, ``where``) that the
    parts ``cfg`` chooses do not read (:meth:`SHFConfig.ignored`), naming the part."""
    ignored = cfg.ignored()
    for k in keys:
        if k in ignored:
            raise ConfigError(
                f"{where}: optimizer.{k} is ignored by {ignored[k]}: remove it, or choose a part "
                "that reads it"
            )
