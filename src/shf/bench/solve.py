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
* ``gradient``: the batch's gradient (a backward pass), where B3's forcing bound or B7's
  subset reads it before the solve (otherwise the quadratic model computes it under ``rho``);
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
from torch import Tensor, nn

from shf.bench.common import describe_machine, load_with_stand_ins, machine
from shf.config import ExperimentConfig, load
from shf.curvature.mlp import pre_activations
from shf.data.split import Split
from shf.errors import ConfigError, ShfError
from shf.experiments.classify import build_classifier, classify_method
from shf.experiments.methods import shf_method
from shf.experiments.run import build_network, check_data_for, resolve_device
from shf.fit import SHFMethod
from shf.method import Method
from shf.models.autoencoder import CROSS_ENTROPY, Autoencoder, as_sequential, sequential_weights, sparse_init
from shf.optim.batchsize import batch_cap
from shf.optim.shf import SHF
from shf.optim.step import SHFConfig

log = logging.getLogger(__name__)

PHASES = ("start", "n_max")
"""The phases of a run that are timed (see the module docstring)."""

PATHS = ("hand-written", "generic", "sequential")
"""How an autoencoder's products are made: ``hand-written`` (Alg. 4 and 5, the fast path),
``generic`` (the same module and parameters through ``torch.func``, per-example statistics by
``vmap``), ``sequential`` (the network as a user writes it, ``nn.Sequential`` of ``nn.Linear``
and ``nn.Sigmoid``, through ``torch.func`` with the per-layer rules). With the cross-entropy
objective the two generic paths train logits with ``loss="bce"``, the same objective."""

BREAKDOWN = (
    "products",
    "solver_other",
    "merit",
    "validation",
    "linesearch",
    "rho",
    "precond",
    "forward",
    "gradient",
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
    ("gradient", ("gradient",)),
    ("batch stats", ("batch_stats",)),
    ("other", ("other",)),
)


def bench_solve(
    configs: Sequence[str] = ("curves", "mnist", "usps"),
    *,
    iters: int = 10,
    phases: Sequence[str] = PHASES,
    overrides: Sequence[str] = (),
    paths: Sequence[str] = ("hand-written",),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time ``iters`` HF iterations per configuration and phase and break their time down.

    Args:
        configs: preset names or TOML paths, each loaded with ``overrides`` applied
            (:func:`shf.config.load`); ``name:section.key=value:...`` adds overrides of its own
            (after the common ones), which the case's ``name`` then shows.
        iters: HF iterations averaged per case; ``iters + 1`` are taken and the first,
            a warm-up whose first calls allocate, is left out of the means.
        phases: a subset of :data:`PHASES`.
        overrides: ``section.key=value`` strings applied to every configuration.
        paths: a subset of :data:`PATHS`, the products an autoencoder's iterations are timed
            with, interleaved; a classifier (``model.task = "classify"``) runs once, on its
            own module through ``torch.func`` (path ``generic``).
        progress: called with one short line per finished (or skipped) case.

    Returns:
        ``{"machine": ..., "iters": iters, "cases": [...]}`` with one case per
        (configuration, phase), in order. A case that ran holds:

        * ``config`` (as given), ``name`` (the configuration's name), ``phase``, ``path``,
          ``model`` (a short description), ``per_example`` (how the per-example statistics ran:
          ``hand-written``, ``layers`` or ``vmap``),
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
          of the warm-up iteration;
        * ``vs_hand_written``: ``{"per_iteration": ..., "per_lsmr_iteration": ...}``, the
          time over the hand-written path's in the same phase (None when it did not run).

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
    paths = list(dict.fromkeys(paths))
    bad = [p for p in paths if p not in PATHS]
    if bad or not paths:
        raise ConfigError(f"paths must be some of {', '.join(PATHS)}, got {list(paths)!r}")
    loaded: list[tuple[str, ExperimentConfig]] = []
    for name in configs:
        # "preset:section.key=value:..." adds overrides of that configuration's own
        base, *own = name.split(":")
        cfg = load(base, [*overrides, *own])
        if own:
            cfg = dataclasses.replace(cfg, name=f"{cfg.name} ({', '.join(own)})")
        resolve_device(cfg.run.device)
        loaded.append((name, cfg))

    cases: list[dict[str, Any]] = []
    for name, cfg in loaded:
        data, note, error = _load_data(cfg)
        for phase in phases:
            if data is None:
                case: dict[str, Any] = {
                    "config": name, "name": cfg.name, "phase": phase, "path": None, "dataset": None,
                    "skipped": True, "error": error, "note": None,
                }  # fmt: skip
                done = [case]
                msgs = [f"{cfg.name} {phase}: skipped ({_first_line(error)})"]
            else:
                done = _run_phase(name, cfg, data, phase, iters, paths)
                msgs = []
                for case in done:
                    case["note"] = note
                    msgs.append(
                        f"{cfg.name} {phase} {case['path']}: "
                        f"{case['per_iteration_s']:.3g} s per HF iteration "
                        f"(n={case['n']:.0f}, {case['lsmr_iterations']:.0f} LSMR iterations, {data.name})"
                    )
            for msg in msgs:
                log.info("%s", msg)
                if progress is not None:
                    progress(msg)
            cases += done
    return {"machine": machine(), "iters": iters, "cases": cases}


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _load_data(cfg: ExperimentConfig) -> tuple[Split | None, str | None, str | None]:
    """``(data, note, error)``: the first of the data set and its stand-ins that loads and
    fits the network; ``note`` says when a stand-in was used, ``error`` why none was."""
    tried: list[str] = []
    check: Callable[[Split], None] | None = None
    if cfg.model.task == "autoencoder":
        net = build_network(cfg)
        check = lambda d: check_data_for(net, d)  # noqa: E731
    try:
        data, used, _ = load_with_stand_ins(cfg, check=check, tried=tried)
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


def _methods(cfg: ExperimentConfig, data: Split, opt: SHFConfig, paths: Sequence[str]) -> dict[str, Method]:
    """One SHF method per path, each from the same initial weights and the same generator
    state (hence the same batches and probes): see :data:`PATHS`."""
    seed = cfg.run.seed
    if cfg.model.task == "classify":
        # A classifier has no hand-written products: its own module through torch.func.
        clf = build_classifier(cfg, data.dim, dtype=data.train.dtype, device=data.train.device)
        run_cfg = dataclasses.replace(cfg, optimizer=opt)
        return {"generic": classify_method("shf-" + opt.solver, clf, data, run_cfg)}
    methods: dict[str, Method] = {}
    for path in paths:
        net = build_network(cfg)
        if path == "hand-written":
            methods[path] = shf_method(net, data, opt, seed)
            continue
        net.to(dtype=data.train.dtype, device=data.train.device)
        ce = net.loss_name == CROSS_ENTROPY
        model: nn.Module
        if path == "generic":
            # The autoencoder's own parameters, products through torch.func (vmap per example).
            model = _Logits(net) if ce else net
            convert: Callable[[list[Tensor]], list[Tensor]] = list
        else:
            # The network as a user writes it: nn.Linear + nn.Sigmoid (per-layer rules per example).
            model = as_sequential(net, logits=ce)
            convert = sequential_weights
        gen = torch.Generator().manual_seed(seed)
        shf = SHF(model, "bce" if ce else "mse", config=opt, train_size=data.train.shape[0], generator=gen,
                  generic=True)  # fmt: skip

        def init(o: SHF, net: Autoencoder = net, convert: Callable[..., list[Tensor]] = convert) -> None:
            # eq. (9) from the optimizer's generator, as shf_method draws it
            w = sparse_init(net, m0=opt.m0, sigma=opt.sigma, generator=o.generator, dtype=data.train.dtype,
                            device=data.train.device)  # fmt: skip
            o.set_weights(convert(w))

        methods[path] = SHFMethod(shf, data, init, reuse_val=False)
    return methods


class _Logits(nn.Module):
    """The autoencoder's output-layer pre-activation (logits), for ``loss="bce"`` on the generic
    path: the same objective as its hand-written ``cross_entropy``, on its own parameters."""

    def __init__(self, net: Autoencoder) -> None:
        super().__init__()
        self.net = net

    def forward(self, X: Tensor) -> Tensor:
        return pre_activations(self.net, list(self.net.weights), X)[1]


def _run_phase(
    name: str, cfg: ExperimentConfig, data: Split, phase: str, iters: int, paths: Sequence[str]
) -> list[dict[str, Any]]:
    """Take ``iters + 1`` HF iterations of one phase on every path, interleaved (one iteration
    of each path in turn, so that a change in the machine's speed reaches all alike), and
    summarise the last ``iters`` of each."""
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
        methods = _methods(cfg, data, opt, paths)
        weights = {p: m.init_weights() for p, m in methods.items()}
        records: dict[str, list[dict[str, Any]]] = {p: [] for p in methods}
        for _ in range(iters + 1):
            for p, method in methods.items():
                weights[p], rec = method.step(weights[p])
                records[p].append(rec)
    finally:
        torch.set_num_threads(threads_before)
    cases = []
    for p, recs in records.items():
        case: dict[str, Any] = {
            "config": name,
            "name": cfg.name,
            "phase": phase,
            "path": p,
            "dataset": data.name,
            "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
            "skipped": False,
            "model": _model_name(cfg),
            "encoder": list(cfg.model.encoder) if cfg.model.task == "autoencoder" else None,
            "solver": opt.solver,
            "dtype": cfg.run.dtype,
            "device": cfg.run.device,
            "threads": threads,
            "maxiter": opt.maxiter1,
            "per_example": recs[-1].get("per_example"),
        }
        case.update(summarise(recs[1:]))
        case["warmup_s"] = _iteration_seconds(recs[0]["times"])
        cases.append(case)
    _ratios(cases)
    return cases


def _model_name(cfg: ExperimentConfig) -> str:
    m = cfg.model
    if m.task == "classify":
        return f"{m.arch} classifier"
    return "autoencoder " + "-".join(str(s) for s in m.encoder)


def _ratios(cases: list[dict[str, Any]]) -> None:
    """Each case's time against the hand-written path's in the same phase (when it ran):
    ``vs_hand_written`` = per HF iteration and per LSMR iteration (the paths may take a
    different number of LSMR iterations, by round-off), else None."""
    base = next((c for c in cases if c["path"] == "hand-written"), None)
    for c in cases:
        if base is None:
            c["vs_hand_written"] = None
            continue

        def per_lsmr(case: dict[str, Any]) -> float:
            return float(case["per_iteration_s"]) / max(float(case["lsmr_iterations"]), 1.0)

        c["vs_hand_written"] = {
            "per_iteration": c["per_iteration_s"] / base["per_iteration_s"],
            "per_lsmr_iteration": per_lsmr(c) / per_lsmr(base),
        }


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
        "gradient": mean([float(r["times"].get("gradient", 0.0)) for r in records]),
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
    head = ["config", "data", "phase", "path", "n", "LSMR its / HF it", "merit evals / HF it", "s / HF it"]
    head += ["products", *(h for h, _ in _COLUMNS)]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|")
    sentences: list[str] = []
    for c in record["cases"]:
        if c.get("skipped"):
            cells = [c["name"], "-", c["phase"], "-", *(["-"] * (len(head) - 4))]
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
            c.get("path") or "hand-written",
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
            f"- {c['name']} / {c['phase']} / {c.get('path') or 'hand-written'}: "
            f"products take {100 * sh['products']:.0f}%{per_its_text}; "
            f"the largest other share is {top} ({100 * top_share:.0f}%)."
        )
        if c.get("note"):
            sentence += f" Note: {c['note']}."
        sentences.append(sentence)
    lines += ["", *sentences, ""]
    lines += _against_hand_written(record["cases"])
    return "\n".join(lines)


def _against_hand_written(cases: Sequence[dict[str, Any]]) -> list[str]:
    """A table of the paths against the hand-written one, in seconds per HF iteration by part
    (empty when no case has a hand-written case to compare with)."""
    rows = [c for c in cases if not c.get("skipped") and c.get("vs_hand_written")]
    if not any(c["path"] != "hand-written" for c in rows):
        return []
    parts = (("products", ("products",)), ("LSMR vectors", ("solver_other",)), ("precond", ("precond",)),
             ("forward", ("forward", "gradient")), ("batch stats", ("batch_stats",)),
             ("rest", ("merit", "validation", "linesearch", "rho", "other")))  # fmt: skip
    head = ["config", "phase", "path", "per example", "s / HF it", "x hand-written",
            "x per LSMR it", *(f"{h} (s)" for h, _ in parts)]  # fmt: skip
    out = [
        "## Against the hand-written path",
        "",
        "Seconds per HF iteration, and the ratios to the hand-written path's in the same phase (per HF "
        "iteration, and per LSMR iteration since the paths may take a different number by round-off); "
        "the paths' iterations ran interleaved, from the same weights and batches.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|",
    ]
    for c in rows:
        b, r = c["breakdown"], c["vs_hand_written"]
        cells = [c["name"], c["phase"], c["path"], str(c.get("per_example") or "-"),
                 f"{c['per_iteration_s']:.3g}", f"{r['per_iteration']:.2f}", f"{r['per_lsmr_iteration']:.2f}",
                 *(f"{sum(b[k] for k in keys):.3g}" for _, keys in parts)]  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]
