"""shf.SHF, the torch.optim.Optimizer: state_dict round trip, param groups, refusals."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from torch import nn

import shf
from shf import SHF, Batch, Damping, LineSearch, Solver
from shf.errors import ConfigError, DataError
from shf.models import Autoencoder
from shf.optim.step import SHFConfig

F64 = torch.float64


def _task(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 5, generator=g, dtype=F64) * 2
    y = torch.randint(0, 3, (300,), generator=g)
    X = centres[y] + torch.randn(300, 5, generator=g, dtype=F64)
    return X[:240], y[:240], X[240:], y[240:]


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(F64)


def _steps(
    opt: SHF, X: torch.Tensor, y: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor], k: int
) -> list[dict]:
    out = []
    for _ in range(k):
        idx = torch.randperm(X.shape[0], generator=opt.generator)[: opt.batch_size]
        info = opt.step(X[idx], y[idx], val=val).as_dict()
        info.pop("times")
        out.append(info)
    return out


HYPER = {
    "damping": Damping(lambda1=1.0, weight_cost=0.0),  # no B10: the tests below predate it
    "solver": Solver(maxiter1=20),
    "batch": Batch(n1=30, n_max=120, theta=0.3),
    "preconditioner": "martens",
}


def test_state_dict_round_trip_continues_bit_for_bit() -> None:
    X, y, Xv, yv = _task()
    threads = torch.get_num_threads()
    model = _model()
    opt = SHF(model, "cross_entropy", train_size=240, seed=3, **HYPER)
    whole = _steps(opt, X, y, (Xv, yv), 20)
    final = [p.detach().clone() for p in model.parameters()]

    model = _model()
    opt = SHF(model, "cross_entropy", train_size=240, seed=3, **HYPER)
    first = _steps(opt, X, y, (Xv, yv), 10)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    model2 = _model(seed=99)  # other initial weights: everything must come from the checkpoint
    opt2 = SHF(model2, "cross_entropy", train_size=240, seed=12345, **HYPER)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    second = _steps(opt2, X, y, (Xv, yv), 10)
    assert torch.get_num_threads() == threads
    assert first + second == whole
    assert all(torch.equal(a, b) for a, b in zip(final, model2.parameters()))
    assert opt2.iterations == 20
    # The warm start lives in torch's per-parameter state.
    assert all("warm_start" in opt2.state[p] for p in model2.parameters())


def test_loading_a_state_dict_of_other_hyper_parameters_is_refused() -> None:
    model = _model()
    sd = SHF(model, "cross_entropy", **HYPER).state_dict()
    with pytest.raises(ConfigError, match=r"other hyper-parameters.*lambda1"):
        SHF(model, "cross_entropy", damping=Damping(lambda1=3.0)).load_state_dict(sd)
    with pytest.raises(ConfigError, match="not an SHF state dict"):
        SHF(model, "cross_entropy").load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())


def test_a_state_dict_from_before_a_new_option_loads_when_the_option_is_at_its_default() -> None:
    """A state saved by an shf without a later option (here B10's weight_cost) was made with that
    option's behaviour then, the paper's (0, none): it loads into an optimizer without the weight
    cost and is refused by one with it (today's default, 1e-4, among them)."""
    model = _model()
    sd = SHF(model, "cross_entropy", **HYPER).state_dict()
    del sd["shf"]["config"]["weight_cost"]  # as an older shf saved it
    SHF(model, "cross_entropy", **HYPER).load_state_dict(sd)
    other = {**HYPER, "damping": Damping(lambda1=1.0, weight_cost=1e-3)}
    with pytest.raises(ConfigError, match=r"other hyper-parameters \(weight_cost\)"):
        SHF(model, "cross_entropy", **other).load_state_dict(sd)


def test_groups_map_to_the_flat_config_and_back() -> None:
    from shf.optim.hyper import from_config, to_config

    cfg = SHFConfig.paper(lambda1=7.5, n1=200, n_max=2000, batch_growth=1.01, solver="cg", gamma_growth=1.003)
    assert to_config(**from_config(cfg)) == cfg
    assert SHF(_model(), "mse", config=cfg).config == cfg


def test_param_groups_select_parameters_but_may_not_set_options() -> None:
    model = _model()
    opt = SHF(model, "cross_entropy", params=[{"params": list(model[2].parameters())}])
    assert len(opt.weights()) == 2 and not opt.fast_path
    with pytest.raises(ConfigError, match="param groups cannot set options \\(momentum\\)"):
        SHF(model, "cross_entropy", params=[{"params": model.parameters(), "momentum": 0.9}])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"damping": Damping(drop=1.5)}, "drop must be in"),
        ({"solver": Solver(kind="gmres")}, "solver must be one of"),
        ({"batch": Batch(n1=10, n_max=5)}, "n_max must be"),
        ({"batch": Batch(n_max_fraction=0.0)}, "n_max_fraction must be in"),
        ({"batch": Batch(n_max_fraction=1.5)}, "n_max_fraction must be in"),
        ({"batch": Batch(n_max_fraction=float("nan"))}, "n_max_fraction must be in"),
        ({"preconditioner": "jacobi"}, "preconditioner must be one of"),
        ({"config": SHFConfig(), "damping": Damping()}, "either config= or"),
        ({"train_size": 1}, "train_size must be"),
    ],
)
def test_bad_hyper_parameters_are_refused_in_init(kwargs: dict, match: str) -> None:
    kwargs = {"loss": "cross_entropy", **kwargs}
    with pytest.raises(ConfigError, match=match):
        SHF(_model(), **kwargs)


def test_bad_models_and_batches_are_clear_errors() -> None:
    X, y, _, _ = _task()
    model = _model()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no parameter that requires grad"):
        SHF(model, "cross_entropy")
    with pytest.raises(ConfigError, match=r"torch\.nn\.Module"):
        SHF(lambda x: x, "mse")  # type: ignore[arg-type]
    opt = SHF(_model(), "cross_entropy")
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\]"):
        opt.step(X[:10], y[:10] + 5)
    with pytest.raises(DataError, match="integer class labels"):
        opt.step(X[:10], y[:10].to(F64))
    with pytest.raises(DataError, match="rows"):
        opt.step(X[:10], y[:9])
    with pytest.raises(ConfigError, match="at least 2 examples"):
        opt.step(X[:1], y[:1])
    with pytest.raises(DataError, match="model output's shape"):
        SHF(_model(), "mse").step(X[:10], torch.zeros(10, 4, dtype=F64))


def test_the_same_batch_is_checked_once_and_a_changed_one_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full-batch fit passes the same tensors at every step: their check (a forward pass on two
    rows) runs once. New tensors, or the same ones written in place, are checked again, so bad
    labels after good ones are still a one-line error."""
    X, y, _, _ = _task()
    opt = SHF(_model(), "cross_entropy")
    calls: list[int] = []
    check = opt.check_data
    monkeypatch.setattr(opt, "check_data", lambda *a, **k: (calls.append(1), check(*a, **k))[1])
    Xb, yb = X[:20].clone(), y[:20].clone()
    for _ in range(3):
        opt.step(Xb, yb)
    assert len(calls) == 1
    opt.step(Xb.clone(), yb)  # another tensor with the same values
    assert len(calls) == 2
    yb += 5  # in place: labels out of range
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\]"):
        opt.step(Xb, yb)


def test_step_without_validation_keeps_the_batch_size() -> None:
    X, y, _, _ = _task()
    opt = SHF(_model(), "cross_entropy", batch=Batch(n1=30, n_max=120))
    info = opt.step(X[:30], y[:30])
    assert info.val_loss is None and info.n_hat is not None and opt.batch_size == 30
    assert info.solver_stop in ("maxiter", "lsq_solved", "forcing")  # no merit without a validation set


def test_state_dict_keeps_the_batch_cap_of_the_training_set_it_was_made_for() -> None:
    model = _model()
    hyper = {**HYPER, "batch": Batch(n1=30, n_max=120, theta=0.3, n_max_fraction=None)}
    sd = SHF(model, "cross_entropy", train_size=100, **hyper).state_dict()
    other = SHF(model, "cross_entropy", **hyper)  # no train_size: n_max would be the config's 120
    other.load_state_dict(sd)
    assert other.schedule.n_max == 100 and other.train_size == 100


@pytest.mark.parametrize(
    ("n_max", "fraction", "train_size", "cap"),
    [
        (6000, 0.3, 8000, 2400),  # MNIST's preset on the 8,000-image stand-in: 30% of it
        (6000, None, 8000, 6000),  # the paper's: n_max alone
        (2000, 0.3, 6762, 2000),  # USPS: 30% is 2,029, above n_max
        (2500, 0.3, None, 2500),  # no training-set size: n_max
        (120, 0.3, 100, 30),  # 30% of 100 is below n1 = 30: n1
    ],
)
def test_b13_caps_the_batch_at_a_fraction_of_the_training_set(
    n_max: int, fraction: float | None, train_size: int | None, cap: int
) -> None:
    batch = Batch(n1=30, n_max=n_max, n_max_fraction=fraction)
    opt = SHF(_model(), "cross_entropy", batch=batch, train_size=train_size)
    assert opt.schedule.n_max == cap
    # the growth rule never passes the cap: Alg. 2 predicting the whole training set
    for _ in range(12):
        opt.schedule.update(f_val=1.0, n_hat=10**6)
    assert opt.schedule.n == cap


def test_parameters_are_fixed_at_construction_and_val_may_be_a_list() -> None:
    X, y, Xv, yv = _task()
    model = _model()
    opt = SHF(model, "cross_entropy", **HYPER)
    with pytest.raises(ConfigError, match="fixed when it is made"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)]})
    info = opt.step(X[:30], y[:30].to(torch.uint8), val=[Xv, yv])  # any integer label dtype
    assert info.val_loss is not None
    with pytest.raises(DataError, match="pair"):
        opt.step(X[:30], y[:30], val=[Xv, yv, yv])  # type: ignore[arg-type]


def test_a_cross_entropy_autoencoder_is_not_silently_trained_on_mse() -> None:
    from shf.models import Autoencoder

    net = Autoencoder((6, 3), loss_name="cross_entropy", dtype=F64)
    assert SHF(net).fast_path
    with pytest.raises(ConfigError, match="own loss 'cross_entropy'"):
        SHF(net, generic=True)


def test_nielsen_damping_falls_fast_while_the_model_is_good_and_round_trips() -> None:
    X, y, Xv, yv = _task()
    model = _model()
    hyper = {**HYPER, "damping": Damping(lambda1=1.0, rule="nielsen")}
    opt = SHF(model, "cross_entropy", train_size=240, seed=1, **hyper)
    first = _steps(opt, X, y, (Xv, yv), 3)
    # rho near 1 divides lambda^2 by up to 3 per step; the paper's rule would give 0.9^3 = 0.73
    assert opt.lam < 0.7 and all(r["lam_next"] < r["lam"] for r in first if r["rho"] > 0.5)
    sd = opt.state_dict()
    assert sd["shf"]["damping"] == {"nu": opt.hf_state.damping.nu}  # type: ignore[attr-defined]
    assert sd["shf"]["config"]["damping_rule"] == "nielsen"


def test_lambda_min_is_a_floor_under_the_damping() -> None:
    X, y, Xv, yv = _task()
    opt = SHF(
        _model(),
        "cross_entropy",
        train_size=240,
        **{**HYPER, "damping": Damping(1.0, rule="nielsen", lambda_min=0.5)},
    )
    _steps(opt, X, y, (Xv, yv), 4)
    assert opt.lam == 0.5  # Nielsen's rule alone goes below 0.3 in 3 steps (test above)
    with pytest.raises(ConfigError, match="lambda1 = 1 is below lambda_min = 2"):
        SHF(_model(), "cross_entropy", damping=Damping(lambda1=1.0, lambda_min=2.0))


def test_weight_cost_shrinks_the_weights_of_any_module() -> None:
    """B10 through the torch.func path: with a large weight cost the trained weights end up much
    smaller than without (a classifier's logits grow without bound on separable data otherwise)."""
    X, y, Xv, yv = _task()
    norms = {}
    for wc in (0.0, 0.1):
        opt = SHF(_model(), "cross_entropy", train_size=240, seed=1,
                  **{**HYPER, "damping": Damping(lambda1=1.0, weight_cost=wc)})  # fmt: skip
        steps = _steps(opt, X, y, (Xv, yv), 8)
        assert all(r["accepted"] for r in steps[2:])
        norms[wc] = float(torch.cat([p.detach().reshape(-1) for p in opt.model.parameters()]).norm())
    assert norms[0.1] < 0.8 * norms[0.0], norms


def test_groups_cover_every_config_field_once():
    """The hyper-parameter groups map 1:1 onto SHFConfig: a field missing from every group would be
    lost in a from_config -> to_config round trip."""
    import dataclasses

    from shf.optim.hyper import _RENAMED, GROUPS, from_config, to_config
    from shf.optim.step import SHFConfig

    names = [_RENAMED.get(g, {}).get(f.name, f.name) for g in GROUPS for f in dataclasses.fields(g)]
    fields = {f.name for f in dataclasses.fields(SHFConfig)} - {"preconditioner"}
    assert sorted(names) == sorted(fields)
    cfg = SHFConfig.paper(curvature_size=30, lambda_min=0.1, forcing="gradient", merit_size=7, maxiter_max=9)
    assert to_config(**from_config(cfg)) == cfg


def test_batch_statistics_skipped_at_n_max_change_no_decision(monkeypatch):
    """Deviation 23: at n = n_max Alg. 2 is not evaluated (n_hat is None) and the run is the same,
    bit for bit, as one that evaluates it at every iteration."""
    import shf

    g = torch.Generator().manual_seed(0)
    X = torch.rand(300, 8, generator=g, dtype=torch.float64)

    def run(always: bool):  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 8)).double()
        opt = shf.SHF(net, "mse", train_size=200, solver=shf.Solver(maxiter1=10),
                      batch=shf.Batch(n1=20, n_max=60, theta=0.01))  # fmt: skip
        if always:
            monkeypatch.setattr(opt.batch_policy, "needs_statistics", lambda: True)
        infos = []
        for _ in range(14):
            idx = torch.randperm(200, generator=opt.generator)[: opt.batch_size]
            infos.append(opt.step(X[idx], val=X[200:]))
        return [p.detach().clone() for p in net.parameters()], infos

    w_skip, i_skip = run(False)
    w_all, i_all = run(True)
    assert i_skip[-1].n == 60 and i_skip[-1].n_hat is None and i_all[-1].n_hat is not None
    assert [i.n for i in i_skip] == [i.n for i in i_all]
    assert [i.solver_iterations for i in i_skip] == [i.solver_iterations for i in i_all]
    assert all(torch.equal(a, b) for a, b in zip(w_skip, w_all))


def test_one_set_of_defaults_and_the_paper_as_a_named_preset():
    """The groups hold shf's defaults, SHFConfig's defaults are theirs, TUNED is where they differ
    from the paper, and shf.PAPER is the paper's CURVES run (§6) exactly."""
    import dataclasses

    from shf.optim.hyper import AUTO, GROUPS, TUNED, group_key, to_config
    from shf.optim.settings import PAPER_VALUES
    from shf.optim.step import SHFConfig

    assert to_config() == SHFConfig()
    for cls in GROUPS:  # every group default is the flat default of its key ("auto": AUTO's)
        for f in dataclasses.fields(cls):
            want = AUTO[cls, f.name] if f.default == "auto" else f.default
            assert getattr(SHFConfig(), group_key(cls, f.name)) == want, (cls.__name__, f.name)
    assert {(Damping, "rule"): "nielsen"} == AUTO  # B23: the regime may choose the trust region
    paper = shf.PAPER
    assert paper == SHFConfig.paper() == dataclasses.replace(SHFConfig(), **PAPER_VALUES)
    assert (paper.damping_rule, paper.lambda_min, paper.maxiter1, paper.recover) == ("paper", 0.0, 200, 100)
    assert paper.use_merit and paper.forcing == "none" and paper.warm_start_guard == "none"
    assert paper.curvature_size is None and paper.merit_size is None and paper.maxiter_max is None
    assert paper.weight_cost == 0.0 and paper.n_max_fraction is None
    # TUNED lists exactly the keys where the defaults leave the paper, with the defaults' values
    assert set(TUNED) == {k for k in PAPER_VALUES if getattr(SHFConfig(), k) != PAPER_VALUES[k]}
    assert SHFConfig.paper(**TUNED) == SHFConfig()
    assert SHFConfig.paper(lambda1=7.5).lambda1 == 7.5 and SHFConfig.paper(lambda1=7.5).use_merit


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ({"damping": Damping(drop=0.9)}, r"Damping\(drop=0.9\) is ignored by Nielsen's damping rule"),
        ({"solver": Solver(merit_size=100)}, r"Solver\(merit_size=100\) is ignored by the solve without"),
        ({"solver": Solver(ftol=1e-5)}, r"Solver\(ftol=1e-05\) is ignored by the solve without Alg. 6's"),
        ({"solver": Solver(forcing="none", forcing_eta0=0.1)}, "ignored by the solve without B3's forcing"),
        ({"line_search": LineSearch(step_max=2.0)}, r"is ignored by Armijo's backtracking from 1"),
        ({"batch": Batch(curvature_growth=3.0)}, "is ignored by curvature rows that do not grow"),
        ({"batch": Batch(schedule="fixed", theta=0.3)}, r"is ignored by the fixed batch"),
    ],
)  # fmt: skip
def test_a_setting_that_the_chosen_parts_ignore_is_refused_naming_the_part(groups, match):
    with pytest.raises(ConfigError, match=match):
        shf.SHF(_model(), "mse", **groups)


def test_a_setting_is_accepted_once_a_part_that_reads_it_is_chosen():
    shf.SHF(_model(), "mse", damping=Damping(rule="paper", drop=0.9))
    shf.SHF(_model(), "mse", solver=Solver(use_merit=True, merit_size=100, ftol=1e-5))
    shf.SHF(_model(), "mse", solver=Solver(maxiter_rule="merit", first_check=3))  # B4's cap reads it
    shf.SHF(_model(), "mse", line_search=LineSearch(step_rule="model", step_max=2.0))
    shf.SHF(_model(), "mse", config=shf.SHFConfig.paper(lambda1=3.0))  # a whole configuration: not checked


def test_b11_grows_the_curvature_batch_when_the_validation_loss_stalls() -> None:
    """B11: the curvature rows of every iteration are what PlateauGrowth makes of the validation
    losses the steps report (replayed here), they grow at least once in this run (so the check
    is not vacuous), and a state dict saved mid-run resumes the rule bit for bit."""
    from shf.optim.plateau import PlateauGrowth

    X, y, Xv, yv = _task()
    hyper = {**HYPER, "batch": Batch(n1=30, n_max=120, theta=0.3, curvature_size=8, curvature_patience=2)}

    def fresh() -> SHF:
        return SHF(_model(), "cross_entropy", train_size=240, seed=3, **hyper)

    opt = fresh()
    whole = _steps(opt, X, y, (Xv, yv), 24)
    replay, expected = PlateauGrowth(size=8, patience=2), []
    for info in whole:
        rows = replay.size
        expected.append(rows if rows < info["n"] else None)
        replay.update(info["val_loss"], cap=120)
    assert [i["curvature_rows"] for i in whole] == expected
    assert expected[0] == 8 and max(r or 0 for r in expected) > 8

    opt = fresh()
    first = _steps(opt, X, y, (Xv, yv), 12)
    saved = opt.state_dict()
    opt2 = fresh()
    opt2.load_state_dict(saved)
    for p, q in zip(opt2._params, opt._params):  # the weights travel with the model's state dict
        p.data.copy_(q.data)
    # (compared as JSON: a rejected step's rho is NaN, and NaN != NaN in a dict comparison)
    resumed = [json.dumps(i, sort_keys=True) for i in first + _steps(opt2, X, y, (Xv, yv), 12)]
    assert resumed == [json.dumps(i, sort_keys=True) for i in whole]


def test_b11_needs_b7s_curvature_batch() -> None:
    with pytest.raises(ConfigError, match="set curvature_size too"):
        SHFConfig.paper(curvature_patience=5)
    with pytest.raises(ConfigError, match="curvature_growth"):
        SHFConfig.paper(curvature_size=10, lambda_min=0.1, curvature_patience=5, curvature_growth=1.0)


def test_a_batch_the_model_cannot_take_is_a_one_line_shf_error() -> None:
    """Generic and hand-written paths: dtype and width mismatches name the data set and the fix."""
    from shf.models import Autoencoder

    X, y, Xv, yv = _task()
    opt = SHF(_model(), "cross_entropy")  # float64 parameters
    dtypes = r"the batch inputs are float32 but the model's parameters are float64: "
    with pytest.raises(DataError, match=dtypes + r"convert with X\.double\(\) or model\.float\(\)"):
        opt.step(X[:10].float(), y[:10])
    width = r"the validation data \(inputs of shape \(60, 4\)\) do not fit the model"
    with pytest.raises(DataError, match=width):
        opt.step(X[:10], y[:10], val=(Xv[:, :4], yv))
    with pytest.raises(DataError, match="the given inputs are float32"):
        opt.loss(X.float(), y)
    net = Autoencoder((10, 6, 3), m0=5, generator=torch.Generator().manual_seed(0))  # float32
    fast = SHF(net)
    assert fast.fast_path
    Z = torch.rand(20, 10, dtype=F64)
    with pytest.raises(DataError, match="batch inputs are float64 but the model's parameters are float32"):
        fast.step(Z)
    with pytest.raises(DataError, match=r"the batch data \(inputs of shape \(20, 9\)\) do not fit the model"):
        fast.step(Z[:, :9].float())


def _stepped_state(model: nn.Module) -> dict:
    X, y, Xv, yv = _task()
    opt = SHF(model, "cross_entropy", **HYPER)
    _steps(opt, X, y, (Xv, yv), 1)
    return opt.state_dict()


@pytest.mark.parametrize("older", [False, True], ids=["recorded", "before-shf-recorded-them"])
def test_a_state_dict_of_another_architecture_is_refused_on_load(older: bool) -> None:
    """It used to load and fail later, deep inside LSMR, on a warm start of another shape."""
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).to(F64)
    deep = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).to(F64)
    cases = [
        (wide, r"parameter 0 \(0\.weight\) has shape \(8, 5\) in the state dict but \(16, 5\) in this model"),
        (deep, "the state dict is for 4 parameters but this model has 6"),
        (_model().float(), r"parameter 0 \(0\.weight\) is float64 in the state dict but float32 in this "
                           r"model: cast the model with model\.double\(\)"),
    ]  # fmt: skip
    sd = _stepped_state(_model())
    if older:
        del sd["shf"]["params"]  # as an older shf saved it: the warm starts' shapes are checked
    for model, match in cases:
        with pytest.raises(ConfigError, match=match):
            SHF(model, "cross_entropy", **HYPER).load_state_dict(sd)
    SHF(_model(), "cross_entropy", **HYPER).load_state_dict(sd)  # the same architecture loads


def _twin_steps(lr: float | None, k: int, scheduler: bool = False) -> tuple[list[torch.Tensor], list[dict]]:
    """``k`` steps from the same start and batches; ``lr=None``: SHF's default."""
    X, y, Xv, yv = _task()
    model = _model()
    opt = SHF(model, "cross_entropy", train_size=240, seed=3, **HYPER, **({} if lr is None else {"lr": lr}))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=1.0) if scheduler else None
    infos = []
    for _ in range(k):
        infos += _steps(opt, X, y, (Xv, yv), 1)
        if sched is not None:
            sched.step()
    return [p.detach().clone() for p in model.parameters()], infos


def test_lr_one_and_a_scheduler_that_keeps_it_leave_the_steps_bit_for_bit() -> None:
    """lr = 1.0 (explicit, or kept by a StepLR with gamma 1) takes exactly the default's steps."""
    w0, infos0 = _twin_steps(None, 6)
    for lr, scheduler in ((1.0, False), (1.0, True)):
        w, infos = _twin_steps(lr, 6, scheduler)
        assert all(torch.equal(a, b) for a, b in zip(w0, w))
        assert infos == infos0


def test_a_torch_lr_scheduler_scales_shfs_step() -> None:
    """StepLR used to raise KeyError: 'lr'; the param groups' lr now scales w + lr s d."""
    X, y, Xv, yv = _task()
    batch = (X[:60], y[:60])
    start = _model()
    deltas, infos = [], []
    for lr in (1.0, 0.5):
        model = _model()
        opt = SHF(model, "cross_entropy", lr=lr, **HYPER)
        info = opt.step(*batch, val=(Xv, yv))
        infos.append(info)
        deltas.append([p.detach() - q.detach() for p, q in zip(model.parameters(), start.parameters())])
        # the reported losses are those of the weights the step wrote
        assert info.loss_new == pytest.approx(opt.loss(*batch), rel=1e-12)
        assert info.val_loss == pytest.approx(opt.loss(Xv, yv), rel=1e-12)
    full, half = infos
    assert full.accepted and half.accepted and half.step == 0.5 * full.step
    assert half.lam_next == full.lam_next and half.rho == full.rho  # the damping sees d, not lr
    for a, b in zip(*deltas):
        torch.testing.assert_close(b, 0.5 * a, rtol=1e-9, atol=1e-14)

    model = _model()
    opt = SHF(model, "cross_entropy", **HYPER)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        opt.step(*batch, val=(Xv, yv))
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.125
    sd = opt.state_dict()
    again = SHF(_model(), "cross_entropy", **HYPER)
    again.load_state_dict(sd)
    assert again.param_groups[0]["lr"] == 0.125  # the schedule's lr is resumed
    for g in sd["param_groups"]:
        del g["lr"]  # as an SHF state dict from before lr
    again.load_state_dict(sd)
    assert again.param_groups[0]["lr"] == 1.0


def test_bad_lrs_are_refused() -> None:
    model = _model()
    with pytest.raises(ConfigError, match=r"the scale of SHF's step\) must be finite and >= 0, got -1\.0"):
        SHF(model, "cross_entropy", lr=-1.0)
    groups = [{"params": model[0].parameters(), "lr": 0.5}, {"params": model[2].parameters()}]
    with pytest.raises(ConfigError, match=r"the param groups' lr must be equal, got \[0.5, 1.0\]"):
        SHF(model, "cross_entropy", params=groups)
    opt = SHF(model, "cross_entropy")
    opt.param_groups[0]["lr"] = math.nan
    X, y, _, _ = _task()
    with pytest.raises(ConfigError, match="got nan"):
        opt.step(X[:10], y[:10])


def test_a_step_refuses_a_non_finite_validation_set_and_leaves_the_weights() -> None:
    """A NaN in the validation set makes the merit and the growth rule meaningless: a one-line
    DataError naming the set (a NaN batch is skipped instead: test_faults)."""
    model = _model()
    opt = SHF(model, "cross_entropy")
    X, y, Xv, yv = _task()
    Xv = Xv.clone()
    Xv[3, 1] = math.nan
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DataError, match=r"the validation inputs have 1 row\(s\) with NaN or Inf values"):
        opt.step(X[:40], y[:40], val=(Xv, yv))
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_the_forward_mode_reaches_the_generic_products_and_is_refused_on_the_hand_written_path() -> None:
    X, y, Xv, yv = _task()
    opt = SHF(_model(), "cross_entropy", train_size=240, seed=1, forward_mode="double-backward", **HYPER)
    ref = SHF(_model(), "cross_entropy", train_size=240, seed=1, forward_mode="jvp", **HYPER)
    a, b = _steps(opt, X, y, (Xv, yv), 2), _steps(ref, X, y, (Xv, yv), 2)
    assert opt.problem.forward_mode == "double-backward"
    assert [r["loss_new"] for r in a] == pytest.approx([r["loss_new"] for r in b], rel=1e-5)
    net = Autoencoder((6, 3))
    with pytest.raises(ConfigError, match="forward_mode='jvp' is for the generic products"):
        SHF(net, forward_mode="jvp")
    assert SHF(net, forward_mode="jvp", generic=True).problem.forward_mode == "jvp"


def test_a_steps_record_is_plain_data_that_a_checkpoint_loads_without_shfs_classes() -> None:
    """The stop reason is a SolveStop in memory and its plain string in the record, so records
    saved in a checkpoint load with torch.load(weights_only=True)."""
    from shf.optim.solve import SolveStop

    X, y, Xv, yv = _task()
    opt = SHF(_model(), "cross_entropy", train_size=240, **HYPER)
    info = opt.step(X[:30], y[:30], val=(Xv, yv))
    assert isinstance(info.solver_stop, SolveStop)
    rec = info.as_dict()
    assert type(rec["solver_stop"]) is str and rec["solver_stop"] == info.solver_stop
    buf = io.BytesIO()
    torch.save({"records": [rec]}, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["records"][0]["solver_stop"] == rec["solver_stop"]


def test_the_trust_region_s_radius_resumes_bit_for_bit() -> None:
    """B23's radius is the damping part's state: 8 + 8 steps through a checkpoint (read as data)
    equal 16 in one go, on a residual fit in the full-batch regime (its default there)."""
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0.0, 3.0, 30, dtype=torch.float64).unsqueeze(1)
    y = 2.0 * torch.exp(-1.3 * x) + 0.5 + 0.01 * torch.randn(x.shape, generator=g, dtype=torch.float64)

    class Decay(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.tensor([1.0, 0.2, 0.0], dtype=torch.float64))

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.p[0] * torch.exp(-self.p[1] * t) + self.p[2]

    def residual(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return out - target

    model = Decay()
    opt = SHF(model, residual)
    assert opt.config.damping_rule == "trust-region"
    whole = [opt.step(x, y).radius for _ in range(16)]
    final = model.p.detach().clone()
    model = Decay()
    opt = SHF(model, residual)
    first = [opt.step(x, y).radius for _ in range(8)]
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model2 = Decay()
    opt2 = SHF(model2, residual)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    second = [opt2.step(x, y).radius for _ in range(8)]
    assert first + second == whole and len(set(whole)) > 3  # the radius moved
    assert torch.equal(final, model2.p.detach())
