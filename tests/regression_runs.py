"""The small runs whose metrics must not change when the code is restructured.

``python tests/regression_runs.py`` prints the JSON that ``tests/data/before_refactor.json``
holds (recorded at commit b38bdfb, before the generic optimizer API); the test in
``tests/test_regression.py`` reruns them and compares. ``python tests/regression_runs.py parts``
prints ``tests/data/before_parts.json`` (recorded at commit b222d3e, before the HF iteration
was split into parts, issue 28): the defaults and their switches (B1-B15) on the shrunk default
preset, and ``shf.fit`` on a module (the generic products) with the defaults and the paper's
settings.

Both were recorded, and are rerun, in one process per set with :data:`REPRODUCIBLE` in the
environment (the script re-executes itself with it): one thread, MKL's conditional numerical
reproducibility (``MKL_CBWR=COMPATIBLE``) and ATen's baseline CPU kernels
(``ATEN_CPU_CAPABILITY=default``), so that the bits do not depend on the CPU's vector units. Without
them MKL and ATen pick AVX2 or AVX-512 code by the processor, and the same float64 run differs in
the 10th digit between an AMD EPYC and an Intel Xeon: a golden file recorded on one then fails on
the other. (Recorded on an Intel Xeon with that environment: ``before_refactor.json`` by the script
of commit 03233c6 on the code of b38bdfb, ``before_parts.json`` by the script of 97dcf67 on the
code of b222d3e.)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch

from shf import config as cfgmod
from shf.data.curves import generate_curves
from shf.data.split import Split, make_split

REPRODUCIBLE = {
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "default",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""The environment in which the runs give the same bits on any x86 CPU (module docstring)."""

# (name, preset, method): each paper preset's optimizer settings with SHF-LSMR, and the
# baselines on the CURVES preset (named "default-*": recorded when the default preset had the
# paper's CURVES settings, which it no longer has; the CURVES preset has them).
RUNS = [
    ("curves-shf-lsmr", "curves", "shf-lsmr"),
    ("mnist-shf-lsmr", "mnist", "shf-lsmr"),
    ("usps-shf-lsmr", "usps", "shf-lsmr"),
    ("default-shf-cg", "curves", "shf-cg"),
    ("default-martens-hf", "curves", "martens-hf"),
    ("default-adam", "curves", "adam"),
    ("default-sgd", "curves", "sgd"),
]

# Shrunk to seconds: a small network, small batches, few iterations, float64.
OVERRIDES = [
    "model.encoder=[784, 24, 6]",
    "optimizer.n1=40",
    "optimizer.n_max=120",
    "optimizer.maxiter1=30",
    "optimizer.miniter=8",
    "optimizer.recover=12",
    "hf.maxiter=20",
    "hf.num_chunks=2",
    "first_order.batch_size=50",
    "first_order.steps=4",
    "run.max_iters=6",
    "run.dtype=float64",
    "run.threads=1",
    "run.eval_every=2",
    "run.max_time=inf",
]

# The baselines were recorded when they drew their own sparse initialisation (m0 = 15,
# sigma = 1.0) from their own generator; since the fair comparison (issue 31) they start from
# SHF's initial weights by default. Setting m0 and sigma keeps the recorded runs reachable.
OWN_INIT = {
    "martens-hf": ["hf.m0=15", "hf.sigma=1.0"],
    "adam": ["first_order.m0=15", "first_order.sigma=1.0"],
    "sgd": ["first_order.m0=15", "first_order.sigma=1.0"],
}

# The defaults (the default preset holds them) with their switches on, and turned to their other
# choices, so that every branch of the HF iteration runs: the subsets of B5 and B7 made smaller
# than the shrunk sets so that they act.
# B10's weight cost is the constant the runs were recorded with: B24 (the default since) would raise
# it for the shrunk network's 161 weights per training example.
ACTIVE = ["optimizer.curvature_size=20", "optimizer.merit_size=40", "optimizer.weight_cost_rule=constant"]
PARTS_RUNS: list[tuple[str, str, str, list[str]]] = [
    ("defaults", "default", "shf-lsmr", ACTIVE),
    ("defaults-cg", "default", "shf-cg", ACTIVE),
    ("defaults-other-choices", "default", "shf-lsmr", [
        *ACTIVE, "optimizer.step_rule=model", "optimizer.warm_start_guard=retry",
        "optimizer.maxiter_rule=merit", "optimizer.preconditioner=martens", "optimizer.curvature_patience=1",
        "optimizer.theta=0.3",
    ]),
    ("defaults-paper-damping", "default", "shf-lsmr", [
        *ACTIVE, "optimizer.damping_rule=paper", "optimizer.weight_cost=0.0",
        "optimizer.warm_start_guard=model", "optimizer.preconditioner=none", "optimizer.forcing=none",
        "optimizer.batch_schedule=fixed",
    ]),
    ("defaults-squared-no-merit", "default", "shf-lsmr", [
        "model.loss=squared", "optimizer.use_merit=false", "optimizer.curvature_size=20",
        "optimizer.weight_cost_rule=constant",
    ]),
]  # fmt: skip

DROP = {"time_s", "wall_s", "times", "elapsed_s"}


def without_times(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with their timing fields (:data:`DROP`) removed: what a resumed run repeats exactly."""
    return [{k: v for k, v in r.items() if k not in DROP} for r in records]


def data() -> Split:
    X = generate_curves(400, seed=5)
    return make_split(X[:240], X[240:320], X[320:], "tiny CURVES").to(torch.float64)


def shrunk(preset: str, overrides: list[str]) -> cfgmod.ExperimentConfig:
    """``preset`` with :data:`OVERRIDES` and ``overrides``, less the shrunk settings that the
    run's parts ignore (the merit's constants without the merit), which shf refuses."""
    every = [*OVERRIDES, *overrides]
    ignored = cfgmod.load(preset, every, given=[]).optimizer.ignored()
    kept = [o for o in every if o.split("=", 1)[0].removeprefix("optimizer.") not in ignored]
    return cfgmod.load(preset, kept)


def run(preset: str, method: str, out: str, extra: list[str] | None = None) -> dict[str, Any]:
    from shf.experiments.run import run_experiment

    cfg = shrunk(preset, [*OWN_INIT.get(method, []), "run.seed=7", *(extra or [])])
    metrics: list[dict[str, Any]] = []
    summary = run_experiment(cfg, out, data=data(), on_iteration=metrics.append, method=method)
    keep_summary = {k: v for k, v in summary.items() if k not in ("wall_time_s", "optimizer_time_s", "name")}
    rows = [{k: v for k, v in r.items() if k not in DROP} for r in metrics]
    return {"summary": keep_summary, "metrics": rows}


FIT_RUNS = ("fit-defaults", "fit-paper")


def fit_run(name: str) -> dict[str, Any]:
    """``shf.fit`` on an ``nn.Sequential`` classifier (the generic products, per-layer rules):
    the defaults (``fit-defaults``) or the paper's settings (``fit-paper``), 6 iterations."""
    import shf
    from shf.optim.step import SHFConfig

    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.Tanh(), torch.nn.Linear(10, 3)).double()
    g = torch.Generator().manual_seed(4)
    y = torch.randint(0, 3, (300,), generator=g)
    X = torch.randn(300, 6, generator=g, dtype=torch.float64) * 0.5
    X[torch.arange(300), y * 2] += 1.0
    hyper: dict[str, Any] = {"batch": shf.Batch(n1=40, n_max=120)}
    if name == "fit-paper":
        hyper = {"config": SHFConfig.paper(n1=40, n_max=120, maxiter1=30, miniter=8, recover=12)}
    res = shf.fit(model, (X[:200], y[:200]), (X[200:250], y[200:250]), test=(X[250:], y[250:]),
                  loss="cross_entropy", max_iters=6, seed=7, **hyper)  # fmt: skip
    return {"history": without_times(res.history), "best_val_loss": res.best_val_loss,
            "test_loss": res.test_loss, "iterations": res.iterations}  # fmt: skip


def main() -> None:
    import tempfile

    if any(os.environ.get(k) != v for k, v in REPRODUCIBLE.items()):
        # read when MKL and torch load: set them for a fresh process of this script
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], {**os.environ, **REPRODUCIBLE})
    out: dict[str, Any] = {}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if sys.argv[1:] == ["parts"]:
            for name, preset, method, extra in PARTS_RUNS:
                out[name] = run(preset, method, f"{tmp}/{name}", extra)
            for name in FIT_RUNS:
                out[name] = fit_run(name)
        else:
            for name, preset, method in RUNS:
                out[name] = run(preset, method, f"{tmp}/{name}")
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
