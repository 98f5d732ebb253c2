"""The warm start's guards (B14) as parts: what each reads and decides."""

from __future__ import annotations

import pytest

from shf.errors import ConfigError
from shf.optim.warmstart import WARM_START_GUARDS, make_guard


def test_each_guard_decides_only_what_its_rule_says_and_reads_the_model_only_then() -> None:
    asked: list[str] = []

    def decreases(answer: bool, what: str):  # type: ignore[no-untyped-def]
        def ask() -> bool:
            asked.append(what)
            return answer

        return ask

    table = {}
    for name in WARM_START_GUARDS:
        g = make_guard(name)
        table[name] = (
            g.keeps_start(decreases(False, f"{name}-start")),
            g.solves_again(True, decreases(False, f"{name}-again")),
            g.solves_again(None, decreases(False, f"{name}-cold")),
            g.seeds_next(True, False),
            g.seeds_next(False, False),
            g.seeds_next(True, True),
        )
    assert table == {
        "none": (True, False, False, True, True, True),
        "model": (False, False, False, True, True, True),  # a start that does not decrease: from 0
        "retry": (True, True, False, True, True, True),  # a warm solve that does not: again from 0
        "reset": (True, False, False, False, True, True),  # a warm direction that does not: no seed
    }
    assert asked == ["model-start", "retry-again"]  # the model is computed only where it is read
    with pytest.raises(ConfigError, match="warm_start_guard must be one of"):
        make_guard("always")
