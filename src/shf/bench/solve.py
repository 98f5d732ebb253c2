"""``shf bench solve``: the time of one HF iteration and where it goes.

For each configuration (a preset or a TOML file) and each *phase*, the benchmark builds
the data, the autoencoder and :class:`shf.fit.SHFMethod` exactly as ``shf train`` does,
takes ``iters + 1`` HF iterations from the sparse initialisation and reports the means
over the last ``iters`` of them (the first is a warm-up: its first calls allocate).

Phases:

* ``start``: the configuration as it is, i.e. the run's first iterations at ``n = n1``
  with the LSMR cap ``maxiter1``;
* ``n_max``: the batch size the run spends most of its time at, ``n = n_max`` (capped at
  the training-set size), with the LSMR cap that the growth rule gives there,
  ``ceil(maxiter1 * n / n1)`` (§4.5, without the rule's per-step rounding).

The time of an HF iteration, ``per_iteration_s``, is what the training loop spends on
it: the SHF step (:func:`shf.optim.step.shf_step`'s ``total``), the validation error and
the batch statistics of Alg. 2. Its breakdown (seconds per HF iteration, means):

* ``products``: Jacobian products ``A v`` and ``A^T u`` inside the solver;
* ``solver_other``: the rest of the solver, LSMR's (or CG's) vector work;
* ``merit``: the validation-set merit ``f(w + d; X_val)`` evaluated inside the solver;
* ``validation``: the validation error ``f(w; X_val)`` after the step;
* ``linesearch``: the Armijo backtracking (loss evaluations on the batch);
* ``rho``: the reduction ratio (one product ``A d`` and one batch loss);
* ``precond``: the preconditioner (Alg. 3 by default);
* ``forward``: the forward pass that builds ``A`` (caches ``S`` and ``S'``);
* ``batch_stats``: Alg. 2's per-example gradient statistics;
* ``other``: everything else (``per_iteration_s`` minus the above: weight update,
  warm-start decay, batch draw, timers); it may be slightly negative by rounding.

Timings use wall clocks around each part without device synchronisation: on a GPU
they show where the host waits, not the kernels' own times. Nothing here asserts a
timing; the numbers are for reading.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch

from shf.batchsize import batch_cap
from shf.bench.common import describe_machine, load_with_stand_ins, machine
from shf.config import ExperimentConfig, load
from shf.data.split import Split
from shf.errors import ConfigError, ShfError
from shf.experiments.methods import shf_method
from shf.experiments.run import build_network, check_data_for, resolve_device

log = logging.getLogger(__name__)

PHASES = ("start", "n_max")
"""The phases of a run that are timed (see the module docstring)."""

BREAKDOWN = (
    "products",
    "solver_other",
    "merit",
    "validation",
    "linesearch",
    "rho",
    "precond",
    "forward",
    "batch_stats",
    "other",
)
"""Keys of a case's ``breakdown`` and ``shares``; they sum to ``per_iteration_s``."""

# Table columns after the products: (heading, breakdown keys summed).
_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("LSMR vectors", ("solver_other",)),
    ("merit", ("merit",)),
    ("validation", ("validation",)),
    ("line search + rho", ("linesearch", "rho")),
    ("precond", ("precond",)),
    ("forward", ("forward",)),
    ("batch stats", ("batch_stats",)),
    ("other", ("other",)),
)


def bench_solve(
    configs: Sequence[str] = ("curves", "mnist", "usps"),
    *,
    iters: int = 10,
    phases: Sequence[str] = PHASES,
    overrides: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time ``iters`` HF iterations per configuration and phase and break their time down.

    Args:
        configs: preset names or TOML paths, each loaded with ``overrides`` applied
            (:func:`shf.config.load`).
        iters: HF iterations averaged per case; ``iters + 1`` are taken and the first,
            a warm-up whose first calls allocate, is left out of the means.
        phases: a subset of :data:`PHASES`.
        overrides: ``section.key=value`` strings applied to every configuration.
        progress: called with one short line per finished (or skipped) case.

    Returns:
        ``{"machine": ..., "iters": iters, "cases": [...]}`` with one case per
        (configuration, phase), in order. A case that ran holds:

        * ``config`` (as given), ``name`` (the configuration's name), ``phase``,
          ``dataset`` (the data set's name as loaded), ``sizes`` (train/val/test rows),
          ``note`` (a stand-in data set used, else ``None``), ``skipped`` = ``False``;
        * ``encoder``, ``solver``, ``dtype``, ``device``, ``threads`` (torch threads),
          ``maxiter`` (the LSMR cap the phase starts with);
        * ``n``: the mini-batch size, mean over the timed iterations;
        * ``iterations``: timed HF iterations (= ``iters``);
        * ``lsmr_iterations``, ``merit_evaluations``: means per HF iteration;
        * ``per_iteration_s``: seconds per HF iteration, mean of the SHF step's total
          plus the validation error plus the batch statistics;
        * ``breakdown``: seconds per HF iteration by part (:data:`BREAKDOWN`, meanings in
          the module docstring), summing to ``per_iteration_s``;
        * ``shares``: ``breakdown`` divided by ``per_iteration_s`` (sums to 1);
        * ``products_ms_per_lsmr_iteration``: ``products`` divided by the LSMR iterations,
          in milliseconds (``None`` when LSMR took no iteration);
        * ``samples_s``: ``per_iteration_s`` of each timed iteration; ``warmup_s``: that
          of the warm-up iteration.

        A case whose data could not be loaded (neither the data set nor a stand-in of
        :data:`shf.bench.common.STAND_INS` loads and fits the network) has ``skipped`` =
        ``True`` and ``error`` (one line per data set tried, joined by ``"; "``) instead.

    Raises:
        ConfigError: ``iters < 1``, an unknown phase, or a configuration, override or
            device that is invalid; raised before any work.
    """
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ConfigError(f"iters must be a positive integer (HF iterations per case), got {iters!r}")
    phases = list(phases)
    bad = [p for p in phases if p not in PHASES]
    if bad or not phases:
        raise ConfigError(f"phases must be some of {', '.join(PHASES)}, got {phases!r}")
    if not configs:
        raise ConfigError("give at least one configuration (a preset name or a TOML file)")
    loaded: list[tuple[str, ExperimentConfig]] = []
    for name in configs:
        cfg = load(name, list(overrides))
        resolve_device(cfg.run.device)
        loaded.append((name, cfg))

    cases: list[dict[str, Any]] = []
    for name, cfg in loaded:
        data, note, error = _load_data(cfg)
        for phase in phases:
            if data is None:
                case: dict[str, Any] = {
                    "config": name, "name": cfg.name, "phase": phase, "dataset": None,
                    "skipped": True, "error": error, "note": None,
                }  # fmt: skip
                msg = f"{cfg.name} {phase}: skipped ({_first_line(error)})"
            else:
                case = _run_case(name, cfg, data, phase, iters)
                case["note"] = note
                msg = (
                    f"{cfg.name} {phase}: {case['per_iteration_s']:.3g} s per HF iteration "
                    f"(n={case['n']:.0f}, {case['lsmr_iterations']:.0f} LSMR iterations, {data.name})"
                )
            log.info("%s", msg)
            cases.append(case)
            if progress is not None:
                progress(msg)
    return {"machine": machine(), "iters": iters, "cases": cases}


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _load_data(cfg: ExperimentConfig) -> tuple[Split | None, str | None, str | None]:
    """``(data, note, error)``: the first of the data set and its stand-ins that loads and
    fits the network; ``note`` says when a stand-in was used, ``error`` why none was."""
    net = build_network(cfg)
    tried: list[str] = []
    try:
        data, used, _ = load_with_stand_ins(cfg, check=lambda d: check_data_for(net, d), tried=tried)
    except (ShfError, OSError):
        return None, None, "; ".join(tried)
    note = None
    if used is not cfg:
        note = (
            f"{cfg.data.dataset} could not be loaded ({tried[0]}); "
            f"timed on the stand-in {used.data.dataset} ({data.name}, "
            f"{len(data.train)}/{len(data.val)}/{len(data.test)} rows)"
        )
    return data, note, None


def _run_case(name: str, cfg: ExperimentConfig, data: Split, phase: str, iters: int) -> dict[str, Any]:
    """Take ``iters + 1`` HF iterations of one phase and summarise the last ``iters``."""
    opt = cfg.optimizer
    N = data.train.shape[0]
    if phase == "n_max":
        n1 = min(opt.n1, N)
        n = batch_cap(opt.n_max, opt.n1, N, opt.n_max_fraction)
        opt = dataclasses.replace(opt, n1=n, maxiter1=math.ceil(opt.maxiter1 * n / n1))
    threads_before = torch.get_num_threads()
    if cfg.run.threads is not None:
        torch.set_num_threads(cfg.run.threads)
    try:
        threads = torch.get_num_threads()
        net = build_network(cfg)
        method = shf_method(net, data, opt, cfg.run.seed)
        w = method.init_weights()
        records: list[dict[str, Any]] = []
        for _ in range(iters + 1):
            w, rec = method.step(w)
            records.append(rec)
    finally:
        torch.set_num_threads(threads_before)
    case: dict[str, Any] = {
        "config": name,
        "name": cfg.name,
        "phase": phase,
        "dataset": data.name,
        "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "skipped": False,
        "encoder": list(cfg.model.encoder),
        "solver": opt.solver,
        "dtype": cfg.run.dtype,
        "device": cfg.run.device,
        "threads": threads,
        "maxiter": opt.maxiter1,
    }
    case.update(summarise(records[1:]))
    case["warmup_s"] = _iteration_seconds(records[0]["times"])
    return case


def _iteration_seconds(times: dict[str, float]) -> float:
    """The HF iteration as the loop sees it: the SHF step, the validation error, Alg. 2."""
    return times["total"] + times["validation"] + times["batch_stats"]


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over the iteration records of :meth:`shf.fit.SHFMethod.step`.

    Returns ``n``, ``iterations``, ``lsmr_iterations``, ``merit_evaluations``,
    ``per_iteration_s``, ``breakdown``, ``shares``, ``products_ms_per_lsmr_iteration``
    and ``samples_s`` as described in :func:`bench_solve`.
    """
    if not records:
        raise ValueError("no iteration records to summarise")

    def mean(values: Sequence[float]) -> float:
        return statistics.fmean(values) if values else 0.0

    samples = [_iteration_seconds(r["times"]) for r in records]
    per_iteration = mean(samples)

    def tmean(key: str) -> float:
        return mean([float(r["times"][key]) for r in records])

    products = tmean("products")
    breakdown = {
        "products": products,
        "solver_other": tmean("solver") - products,
        "merit": tmean("merit"),
        "validation": tmean("validation"),
        "linesearch": tmean("linesearch"),
        "rho": tmean("rho"),
        "precond": tmean("precond"),
        "forward": tmean("forward"),
        "batch_stats": tmean("batch_stats"),
    }
    breakdown["other"] = per_iteration - sum(breakdown.values())
    shares = {k: (v / per_iteration if per_iteration > 0 else 0.0) for k, v in breakdown.items()}
    solver_its = mean([float(r.get("solver_iterations", 0)) for r in records])
    return {
        "n": mean([float(r["examples"]) for r in records]),
        "iterations": len(records),
        "lsmr_iterations": solver_its,
        "merit_evaluations": mean([float(r["merit_evaluations"]) for r in records]),
        "per_iteration_s": per_iteration,
        "breakdown": breakdown,
        "shares": shares,
        "products_ms_per_lsmr_iteration": 1e3 * products / solver_its if solver_its > 0 else None,
        "samples_s": samples,
    }


def markdown(record: dict[str, Any]) -> str:
    """A compact summary of :func:`bench_solve`'s record: a table with one row per case
    (shares in % of the HF iteration) and one sentence per case."""
    lines = [
        "# `shf bench solve`: time per HF iteration",
        "",
        f"Machine: {describe_machine(record['machine'])}.",
        "",
        f"Means over {record['iters']} HF iterations per case after one warm-up iteration. "
        "An HF iteration is the SHF step plus the validation error plus Alg. 2's batch statistics; "
        "the shares are % of it. *Phase* `start`: n = n1, maxiter1; `n_max`: n = n_max (capped at "
        "the training set), maxiter scaled as the growth rule does.",
        "",
    ]
    head = ["config", "data", "phase", "n", "LSMR its / HF it", "merit evals / HF it", "s / HF it"]
    head += ["products", *(h for h, _ in _COLUMNS)]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|")
    sentences: list[str] = []
    for c in record["cases"]:
        if c.get("skipped"):
            cells = [c["name"], "-", c["phase"], *(["-"] * (len(head) - 3))]
            lines.append("| " + " | ".join(cells) + " |")
            why = _first_line(c.get("error"))
            sentences.append(f"- {c['name']} / {c['phase']}: skipped, no data ({why}).")
            continue
        sh = c["shares"]
        groups = [(h, sum(sh[k] for k in keys)) for h, keys in _COLUMNS]
        cells = [
            c["name"],
            c["dataset"],
            c["phase"],
            f"{c['n']:.0f}",
            f"{c['lsmr_iterations']:.1f}",
            f"{c['merit_evaluations']:.1f}",
            f"{c['per_iteration_s']:.3g}",
            f"{100 * sh['products']:.1f}",
            *(f"{100 * v:.1f}" for _, v in groups),
        ]
        lines.append("| " + " | ".join(cells) + " |")
        top, top_share = max(groups, key=lambda g: g[1])
        per_its = c.get("products_ms_per_lsmr_iteration")
        per_its_text = f", {per_its:.3g} ms per LSMR iteration" if per_its is not None else ""
        sentence = (
            f"- {c['name']} / {c['phase']}: products take {100 * sh['products']:.0f}%{per_its_text}; "
            f"the largest other share is {top} ({100 * top_share:.0f}%)."
        )
        if c.get("note"):
            sentence += f" Note: {c['note']}."
        sentences.append(sentence)
    lines += ["", *sentences, ""]
    return "\n".join(lines)
