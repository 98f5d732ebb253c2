"""The fit loop's interface: every optimiser the loop drives provides all of it."""

from __future__ import annotations

import pytest

from shf.averaging import Averaged
from shf.fit import SHFMethod
from shf.method import Method
from shf.optim.first_order import FirstOrder
from shf.optim.hf import MartensHF


@pytest.mark.parametrize("cls", [SHFMethod, MartensHF, FirstOrder, Averaged])
def test_each_method_class_has_the_whole_interface(cls: type) -> None:
    for name in ("init_weights", "step", "summary", "state_dict", "load_state_dict"):
        assert callable(getattr(cls, name, None)), f"{cls.__name__} lacks {name}"


def test_the_protocol_refuses_an_object_without_it() -> None:
    class Half:
        def init_weights(self) -> list:
            return []

    assert not isinstance(Half(), Method)
    # a built method is one (runtime check of the protocol's members)
    import regression_runs
    from shf.experiments.methods import build_method
    from shf.experiments.run import build_network

    cfg = regression_runs.shrunk("default", [])
    data = regression_runs.data()
    m = build_method("adam", build_network(cfg), data, cfg)
    assert isinstance(m, Method) and isinstance(Averaged(m, 0.5), Method)
