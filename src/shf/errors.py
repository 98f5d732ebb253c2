"""Exceptions the library raises for bad input, each with a message that names the problem."""

from __future__ import annotations

from collections.abc import Sequence


class ShfError(Exception):
    """Base class of the errors :mod:`shf` raises on purpose."""


class ConfigError(ShfError, ValueError):
    """An invalid hyper-parameter, configuration key or architecture."""


class DataError(ShfError, ValueError):
    """Data that cannot be used: wrong shape, NaN/Inf, values outside the model's range."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file that does not exist (still a ``FileNotFoundError`` for callers that expect one)."""


class InterruptedRunError(ShfError):
    """A run stopped by a signal and left resumable; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def require(ok: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def require_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """Raise :class:`ConfigError` unless the setting ``name`` is one of ``choices``."""
    require(value in choices, f"{name} must be one of {choices}, got {value!r}")
