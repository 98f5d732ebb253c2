"""``shf compare``: several methods on the same data, architecture, seed and time budget.

Each method runs in its own process (so its peak resident memory can be measured) into
``<out>/runs/<method>``; first-order methods first run a learning-rate sweep on the first
seed (``sweep_fraction`` of the budget per rate, by default the whole budget) and keep the
rate with the best validation error reached; with the whole budget the sweep's run of that
rate is the first seed's run (not run again). ``shf-tuned`` is SHF-LSMR with the
configuration's ``[optimizer]`` section overlaid by the measured-best settings
(:data:`shf.optim.hyper.TUNED`), so ``--config usps --methods shf-lsmr,shf-tuned`` puts the
paper's settings and the new defaults side by side; a key set with ``--set`` is the user's
choice and is not overlaid. The result is a table
(``compare.md``/``compare.json``), an error-against-time figure (``compare.png``) and,
over seeds, the best validation error so far against time with one band per method
(``compare-bands.png``).

Time to target: the first optimiser time at which the test error (measured at every
iteration in a comparison) is at or below the target, which is given or, by
default, the worst final best-validation test error among the methods, so every
method reaches it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
import signal
import statistics
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from shf import config as cfgmod
from shf.errors import ConfigError, InterruptedRunError, ShfError
from shf.experiments.methods import METHODS
from shf.experiments.stop import ForwardStop, StopRequest
from shf.optim.hyper import TUNED
from shf.runlog import peak_rss_mb, read_metrics

BASELINE_LOSSES = ("squared", "cross_entropy")
"""The objectives a first-order baseline sweeps on an autoencoder (the one with the best validation
error, on the reported squared-error scale, wins): it gets every objective SHF is given."""
DEFAULT_LRS = {"adam": [3e-4, 1e-3, 3e-3, 1e-2], "sgd": [3e-3, 1e-2, 3e-2, 1e-1]}
UNCAPPED_ITERS = 10**9
"""``run.max_iters`` in every compared run: only the time budget and patience stop it."""

TUNED_METHOD = "shf-tuned"
"""SHF-LSMR with the configuration's ``[optimizer]`` overlaid by :data:`shf.optim.hyper.TUNED` and,
for an autoencoder, its ``[model]`` by :data:`TUNED_MODEL`."""

TUNED_MODEL = {"loss": "cross_entropy"}
"""Beyond the paper (docs/deviations.md B9): the autoencoder trains on the cross-entropy of its
logistic outputs (Martens 2010's objective) instead of the squared error; errors are still
reported as the squared error."""


FAILED_EXIT = 3
"""The child's exit code when the run refused its input (a :class:`shf.errors.ShfError`): its
message goes to the parent, which raises it as its own, without the child's traceback."""


def _child(
    cfg_dict: dict[str, Any], method: str, out: str, threads: int | None, overwrite: bool, errors: Any = None
) -> None:
    """Run one method in this (child) process and record its peak resident memory. SIGINT or
    SIGTERM stops the run after its current iteration, as in ``shf train`` (checkpoint, best
    weights, an ``"interrupted"`` summary); the process then exits with 128 + the signal number,
    and with 130 on a second Ctrl-C (abort: the last periodic checkpoint stays). A run that
    refuses its input (a bad setting for this method, data that do not fit) puts the message on
    ``errors`` (a queue) and exits with :data:`FAILED_EXIT`."""
    import torch

    from shf.experiments.run import run_or_reuse

    if threads is not None:
        torch.set_num_threads(threads)
    cfg = cfgmod.from_dict(cfg_dict)
    try:
        with StopRequest() as stop:
            summary = run_or_reuse(cfg, out, method=method, overwrite=overwrite, should_stop=stop)
    except KeyboardInterrupt:
        sys.exit(130)  # no traceback from the child: the parent says what happened
    except ShfError as e:
        if errors is None:
            raise
        errors.put(str(e))
        sys.exit(FAILED_EXIT)
    summary["peak_rss_mb"] = peak_rss_mb()
    from shf.runlog import RunDir

    RunDir(out).write_json("summary.json", summary)  # atomically: a kill leaves the previous one
    if summary.get("stop_reason") == "interrupted":
        sys.exit(stop.exit_code)


def run_method(
    cfg: cfgmod.ExperimentConfig, method: str, out: Path, overwrite: bool = False, label: str | None = None
) -> dict[str, Any]:
    """Run ``method`` in a fresh process (spawn): a finished run of the same configuration is
    reused, an interrupted one resumed, one of another configuration refused (or replaced
    with ``overwrite``); return the summary. ``label``: the method's name in messages (for
    ``shf-tuned``, which runs as ``shf-lsmr``)."""
    summary_path = out / "summary.json"
    s0 = finished_run(cfg, method, out, refuse=not overwrite)
    if s0 is not None:
        return s0  # finished with this configuration: reused without a process
    # An earlier interrupted run's summary: if the child leaves it as it was, the child was aborted
    # before writing its own (a second Ctrl-C while resuming), and that summary is stale.
    before = summary_path.read_text() if summary_path.is_file() else None
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    p = ctx.Process(target=_child, args=(cfg.to_dict(), method, str(out), cfg.run.threads, overwrite, errors))
    p.start()
    # A Ctrl-C or SIGTERM while the child trains stops the child gracefully; the parent waits
    # for its checkpoint and summary, then stops the comparison with a resumable message.
    assert p.pid is not None  # started
    with ForwardStop(p.pid) as fwd:
        p.join()
    name = label or method
    if p.exitcode is not None and p.exitcode < 0:  # killed (SIGKILL, or a signal with no handler yet)
        raise ConfigError(
            f"method {name} was stopped by signal {-p.exitcode}; "
            f"run the same command again to resume it from {out}"
        )
    stopped = fwd.signum is not None or p.exitcode in (128 + signal.SIGINT, 128 + signal.SIGTERM)
    if stopped:
        code = p.exitcode if p.exitcode and p.exitcode > 128 else fwd.exit_code  # the child's, else ours
        after = summary_path.read_text() if summary_path.is_file() else None
        s_int = json.loads(after) if after is not None and after != before else {}
        if p.exitcode == 0:  # the signal came as the run was ending: it finished, the rest waits
            what = f"method {name} finished as the stop arrived; run the same command again to go on"
        elif s_int.get("stop_reason") == "interrupted":
            what = (f"method {name} was interrupted after iteration {s_int.get('hf_iterations')}, with a "
                    f"checkpoint; run the same command again to resume it from {out}")  # fmt: skip
        else:
            what = (f"method {name} was interrupted at once (aborted; its last periodic checkpoint stays); "
                    f"run the same command again to resume it from {out}")  # fmt: skip
        raise InterruptedRunError(what, exit_code=code)
    if p.exitcode == FAILED_EXIT and not errors.empty():
        raise ConfigError(f"method {name}: {errors.get()}")
    if p.exitcode != 0 or not summary_path.is_file():
        raise ConfigError(f"method {name} failed (exit code {p.exitcode}); see {out}")
    s: dict[str, Any] = json.loads(summary_path.read_text())
    return s


def finished_run(
    cfg: cfgmod.ExperimentConfig, method: str, out: Path, *, refuse: bool = False
) -> dict[str, Any] | None:
    """The summary of a finished run of exactly ``cfg`` and ``method`` in ``out``; None when there is
    none, it was interrupted, or it is of another configuration (``refuse``: a
    :class:`ConfigError` naming the differing keys instead)."""
    from shf.experiments.run import is_finished, stored_run

    if not ((out / "summary.json").is_file() and (out / "config.json").is_file()):
        return None
    diff, s, _ = stored_run(cfg, out, method, overwrite=not refuse)
    if diff or not is_finished(s, cfg):
        return None
    return s


def _with(cfg: cfgmod.ExperimentConfig, **sections: dict[str, Any]) -> cfgmod.ExperimentConfig:
    parts = {k: dataclasses.replace(getattr(cfg, k), **v) for k, v in sections.items()}
    return dataclasses.replace(cfg, **parts)


def _time_to(metrics: list[dict[str, Any]], key: str, target: float) -> float | None:
    """The first optimiser time at which ``key`` is at or below ``target`` (None: never)."""
    return next((r["time_s"] for r in metrics if r.get(key) is not None and r[key] <= target), None)


def _mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean and the 95% t-interval half-width over seeds (None for one value)."""
    from shf.experiments.reproduce import stats

    st = stats(list(values))
    half = None if st["ci95_high"] is None else float(st["ci95_high"]) - float(st["mean"])  # type: ignore[arg-type]
    return {"mean": st["mean"], "ci95": half, "n": st["n"]}


def mean_ci_text(values: Sequence[float], spec: str = ".4f") -> str:
    """``"mean ± half-width"`` of :func:`_mean_ci` (the mean alone for one value), in format ``spec``."""
    st = _mean_ci(values)
    return f"{st['mean']:{spec}}" + ("" if st["ci95"] is None else f" ± {st['ci95']:{spec}}")


def _best(trial: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The sweep run with the lowest best validation error (among the finite ones, if any)."""
    finite = [r for r in trial if math.isfinite(r["val_error"])]
    return min(finite or trial, key=lambda r: r["val_error"])


def _mean_of(runs: Sequence[dict[str, Any]], key: str) -> float | None:
    """The mean of ``key`` over the runs, or None where a run lacks it (a classifier's runs)."""
    values = [r.get(key) for r in runs]
    return statistics.fmean(cast(list[float], values)) if all(v is not None for v in values) else None


def _paired_ratios(
    runs: Sequence[dict[str, Any]],
    times: Sequence[float | None],
    ref_runs: Sequence[dict[str, Any]],
    ref_times: Sequence[float | None],
) -> dict[str, dict[str, Any]]:
    """Per-seed ratios to the reference method on the same seed (same data, same initial
    weights): ``test_ratio`` = test error / the reference's test error, and ``time_ratio`` = time
    to the target / the reference's time to it (only over the seeds where both reached it),
    each as a mean with its 95% t-interval. Pairing by seed removes the spread between seeds
    that both methods share; the goals of issue 31 are stated on these ratios."""
    ref = {r["seed"]: (r, t) for r, t in zip(ref_runs, ref_times)}
    tests, tms = [], []
    for r, t in zip(runs, times):
        if r["seed"] not in ref:
            continue
        rr, rt = ref[r["seed"]]
        if rr["test_error"] > 0:
            tests.append(r["test_error"] / rr["test_error"])
        if t is not None and rt:
            tms.append(t / rt)
    out: dict[str, dict[str, Any]] = {}
    if tests:
        out["test_ratio"] = _mean_ci(tests)
    if tms:
        out["time_ratio"] = _mean_ci(tms)
    return out


def compare(
    cfg: cfgmod.ExperimentConfig,
    methods: Sequence[str],
    out: str | os.PathLike[str],
    *,
    budget: float,
    hf_loss: str = "cross_entropy",
    lrs: dict[str, list[float]] | None = None,
    sweep_fraction: float = 1.0,
    target: float | None = None,
    overwrite: bool = False,
    seeds: Sequence[int] | None = None,
    target_from: str | None = None,
    report_only: bool = False,
    eval_every: int = 1,
    explicit: Collection[str] = (),
    tuned_optimizer: Mapping[str, Any] | None = None,
    baseline_losses: Sequence[str] | None = None,
    weight_decays: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Run the methods and write the table and figure; return the JSON record.

    Every method runs for ``budget`` seconds of optimiser time or until patience; the
    configuration's ``run.max_iters`` is replaced by :data:`UNCAPPED_ITERS`. The validation
    error is recorded every iteration; train and test errors every ``eval_every`` iterations
    (which thins the curves and, without ``target_from``, the times to the test target).

    ``seeds``: run every method once per seed (default: the configuration's); rows report
    means and 95% t-intervals over them. ``target_from``: the target is that method's best
    validation error averaged over the seeds, and every method's ``time_to_target_s`` is the
    first time its validation error reaches it (with its ratio to the target method's);
    otherwise the target is ``target`` or the worst final test error, reached by test error.
    First-order methods sweep their learning rate once, on the first seed, for
    ``sweep_fraction`` of the budget per rate, choosing by the best validation error reached;
    the chosen rate serves every seed, and with ``sweep_fraction = 1`` its sweep run is the
    first seed's run. ``report_only``: run nothing; tabulate the finished runs of this very
    configuration under ``out`` (a method's row is over the seeds it has finished; a method with
    none is left out). ``explicit``: the ``section.key`` names the user set (``--set``); they win
    over ``shf-tuned``'s overlay (TUNED, B9), which sets only the other keys.
    ``tuned_optimizer``: ``[optimizer]`` values laid over TUNED for ``shf-tuned`` alone (keys the
    base configuration cannot hold, e.g. ``curvature_size`` over a paper preset's ``lambda_min = 0``).

    A fair baseline: every method starts from the same weights for a seed (SHF's draw; see
    :func:`shf.experiments.methods.shared_init`), and a first-order method (Adam, SGD) on an
    autoencoder sweeps its objective too, each of ``baseline_losses`` (default: the squared error
    and the cross-entropy, :data:`BASELINE_LOSSES`) at each learning rate, choosing the pair by
    the best validation error on the reported (squared-error) scale; the record names each
    method's objective (``objective``) and the chosen rate.

    ``weight_decays``: a first-order method then also sweeps its weight decay
    (``first_order.weight_decay``: the coupled L2 decay, the objective of SHF's weight cost),
    after the rate and objective, at the chosen ones, on the first seed, for the same share of
    the budget: each value that is not the configuration's own is one more sweep run, and the
    best validation error over all of them wins (so the configuration's decay, usually 0, stays
    in the race). A staged sweep (rates, then decays) costs ``rates x objectives + decays`` runs
    where the grid would cost their product; the record names the decay chosen
    (``weight_decay``). None (the default): the configuration's decay, no sweep.
    """
    classify = cfg.model.task == "classify"
    if classify:
        from shf.experiments.classify import METHODS as CLASSIFY_METHODS

        for m in methods:
            if m not in CLASSIFY_METHODS:
                choices = ", ".join(CLASSIFY_METHODS)
                raise ConfigError(f"method {m!r} does not train classifiers; choose from {choices}")
    for m in methods:
        if m not in (*METHODS, TUNED_METHOD):
            raise ConfigError(f"unknown method {m!r}; choose from {', '.join((*METHODS, TUNED_METHOD))}")
    if not (budget > 0 and math.isfinite(budget)):
        raise ConfigError(f"the time budget must be a positive number of seconds, got {budget}")
    if target_from is not None and target_from not in methods:
        raise ConfigError(f"--target-from {target_from!r} is not one of the methods compared")
    seeds = list(seeds) if seeds else [cfg.run.seed]
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"seeds must be distinct non-negative integers, got {seeds}")
    lrs = lrs or DEFAULT_LRS
    root = Path(out)
    # The validation error is recorded every iteration, so times to a validation target are
    # exact; train and test errors (outside the optimiser's clock, but not its wall time) every
    # eval_every iterations (times to a test target are then as coarse). One thread per method unless
    # set. The budget (and patience) end a run, never the preset's iteration cap: a first-order
    # method at a small rate would otherwise stop at the preset's max_iters epochs early.
    if not (isinstance(eval_every, int) and eval_every >= 1):
        raise ConfigError(f"eval_every must be a positive integer, got {eval_every}")
    base = _with(cfg, run={"max_time": budget, "eval_every": eval_every, "threads": cfg.run.threads or 1,
                           "max_iters": UNCAPPED_ITERS})  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {}
    sweeps: dict[str, list[dict[str, Any]]] = {}
    objectives: dict[str, str] = {}
    decay_of: dict[str, float] = {}  # a first-order method's weight decay (chosen, or the configuration's)
    losses = list(baseline_losses) if baseline_losses else list(BASELINE_LOSSES)
    bad = sorted(set(losses) - set(BASELINE_LOSSES))
    if bad:
        raise ConfigError(f"unknown baseline objective(s) {', '.join(bad)}; choose from {BASELINE_LOSSES}")
    decays = list(weight_decays or ())
    if any(not (math.isfinite(wd) and wd >= 0) for wd in decays) or len(set(decays)) != len(decays):
        raise ConfigError(f"weight decays must be distinct finite numbers >= 0, got {decays}")

    def fetch(c: cfgmod.ExperimentConfig, method: str, d: Path, label: str) -> dict[str, Any] | None:
        if report_only:
            return finished_run(c, method, d)
        return run_method(c, method, d, overwrite, label=label)

    def sweep_run(
        m: str, first: cfgmod.ExperimentConfig, loss: str, lr: float, wd: float
    ) -> list[dict[str, Any]]:
        """One sweep run of first-order method ``m`` on the first seed's configuration ``first``
        (objective ``loss``, rate ``lr``, weight decay ``wd``): its record, or none when it has
        not finished (report-only)."""
        scfg = _with(first, run={"max_time": budget * sweep_fraction},
                     first_order={"lr": lr, "weight_decay": wd}, model={"loss": loss})  # fmt: skip
        name = f"{m}-lr{lr:g}" if classify else f"{m}-{loss}-lr{lr:g}"
        sdir = root / "sweep" / (name if wd == first.first_order.weight_decay else f"{name}-wd{wd:g}")
        got = fetch(scfg, m, sdir, m)
        if got is None:
            return []
        got["run_dir"] = str(sdir)
        return [{"lr": lr, "loss": None if classify else loss, "val_error": got["val_error"],
                 "test_error": got["test_error"], "summary": got, "weight_decay": wd}]  # fmt: skip

    if not 0 < sweep_fraction <= 1:
        raise ConfigError(f"the sweep fraction must be in (0, 1], got {sweep_fraction}")
    for m in methods:
        mcfg, run_as = base, m
        if m == "martens-hf":
            mcfg = _with(base, model={"loss": hf_loss})
        if m == TUNED_METHOD:
            overlay = {k: v for k, v in TUNED.items() if f"optimizer.{k}" not in explicit}
            overlay.update(tuned_optimizer or {})
            # the tuned settings with the solver the configuration names (lsmr unless
            # --set optimizer.solver=cg: item 5's LSMR-against-CG ablation on the defaults)
            mcfg = _with(base, optimizer=overlay)
            run_as = f"shf-{mcfg.optimizer.solver}"
            if not classify:  # B9: the autoencoders' new defaults train on the cross-entropy objective
                model = {k: v for k, v in TUNED_MODEL.items() if f"model.{k}" not in explicit}
                mcfg = _with(mcfg, model=model)
        reuse: dict[str, Any] | None = None  # the sweep's run of the chosen rate, first seed
        if m in ("adam", "sgd"):
            trial: list[dict[str, Any]] = []
            first = _with(mcfg, run={"seed": seeds[0]}, data={"seed": seeds[0]})
            own_decay = first.first_order.weight_decay
            for loss in ([first.model.loss] if classify else losses):
                for lr in lrs[m]:
                    trial += sweep_run(m, first, loss, lr, own_decay)
            if not trial:  # report-only, and no sweep run finished
                continue
            # The weight decay, at the chosen rate and objective (a staged sweep: rates first).
            chosen = _best(trial)
            for wd in decays:
                if wd != own_decay:
                    trial += sweep_run(m, first, chosen["loss"] or first.model.loss, chosen["lr"], wd)
            chosen = _best(trial)
            if sweep_fraction == 1:
                reuse = chosen["summary"]
            sweeps[m] = [{k: v for k, v in r.items() if k != "summary"} for r in trial]
            mcfg = _with(mcfg, first_order={"lr": chosen["lr"], "weight_decay": chosen["weight_decay"]})
            if chosen["loss"] is not None:  # an autoencoder's objective (a classifier has one)
                mcfg = _with(mcfg, model={"loss": chosen["loss"]})
            decay_of[m] = mcfg.first_order.weight_decay
        objectives[m] = "softmax cross-entropy" if classify else mcfg.model.loss
        results[m] = []
        for i, seed in enumerate(seeds):
            if i == 0 and reuse is not None:
                results[m].append(reuse)  # the whole-budget sweep run of this rate on this seed
                continue
            d = root / "runs" / (m if len(seeds) == 1 else f"{m}-seed{seed}")
            # The seed asked for (the configuration as it is when that is its own seed, so a run
            # made without --seeds is the same configuration).
            same = len(seeds) == 1 and seed == cfg.run.seed
            scfg = mcfg if same else _with(mcfg, run={"seed": seed}, data={"seed": seed})
            got = fetch(scfg, run_as, d, m)
            if got is None:
                continue
            got["run_dir"] = str(d)
            results[m].append(got)
        if not results[m]:
            del results[m]
    if not results:
        raise ConfigError(f"no finished run under {root} to report")
    if target_from is not None and target_from not in results:
        raise ConfigError(f"--target-from {target_from}: no finished run of it under {root}")

    if target_from is not None:
        tgt = statistics.fmean(s["val_error"] for s in results[target_from])
        key = "val_error"
    else:
        tgt = target if target is not None else max(s["test_error"] for r in results.values() for s in r)
        key = "test_error"
    times = {m: [_time_to(read_metrics(s["run_dir"]), key, tgt) for s in runs] for m, runs in results.items()}

    def mean_time(m: str) -> float | None:
        t = times[m]
        if not t or any(x is None for x in t):
            return None
        return statistics.fmean(x for x in t if x is not None)

    ref_time = mean_time(target_from) if target_from is not None else None
    rows = []
    for m, runs in results.items():
        s = runs[0]
        t_mean = mean_time(m)
        over = {
            "best_val_error": _mean_ci([r["val_error"] for r in runs]),
            "test_error": _mean_ci([r["test_error"] for r in runs]),
        }
        if classify and all("test_accuracy" in r for r in runs):
            over["test_accuracy"] = _mean_ci([r["test_accuracy"] for r in runs])
        if target_from is not None:
            over.update(_paired_ratios(runs, times[m], results[target_from], times[target_from]))
        rows.append({
            "method": m,
            "best_val_error": statistics.fmean(r["val_error"] for r in runs),
            "train_error": statistics.fmean(r["train_error"] for r in runs),
            "test_error": statistics.fmean(r["test_error"] for r in runs),
            "train_error_no_half": _mean_of(runs, "train_error_no_half"),
            "test_error_no_half": _mean_of(runs, "test_error_no_half"),
            "test_accuracy": _mean_of(runs, "test_accuracy"),
            "time_to_target_s": t_mean,
            "time_to_target_ratio": None if t_mean is None or not ref_time else t_mean / ref_time,
            "reached_target": sum(x is not None for x in times[m]),
            "examples_processed": s["examples_processed"],
            "peak_rss_mb": s.get("peak_rss_mb"),
            "iterations": s["hf_iterations"],
            "optimizer_time_s": s["optimizer_time_s"],
            "lr": s.get("lr"),
            "weight_decay": decay_of.get(m),
            "objective": objectives.get(m),
            "seeds": [
                {"seed": r["seed"], "best_val_error": r["val_error"], "test_error": r["test_error"],
                 "time_to_target_s": t}
                for r, t in zip(runs, times[m])
            ],
            "over_seeds": over,
        })  # fmt: skip
    record = {
        "dataset": next(iter(results.values()))[0]["dataset"],
        "encoder": cfg.model.encoder if not classify else None,
        "task": cfg.model.task,
        "arch": cfg.model.arch if classify else None,
        "seed": seeds[0],
        "seeds": seeds,
        "budget_s": budget,
        "target_test_error": tgt if key == "test_error" else None,
        "target_val_error": tgt if key == "val_error" else None,
        "target_from": target_from,
        "hf_loss": hf_loss,
        "rows": rows,
        "lr_sweeps": sweeps,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "compare.json").write_text(json.dumps(record, indent=2) + "\n")
    (root / "compare.md").write_text(markdown(record))
    from shf.plots import figure2, time_bands

    time_bands(
        {m: [r["run_dir"] for r in runs] for m, runs in results.items()},
        root / "compare-bands.png",
        target=tgt if key == "val_error" else None,
        title=f"{record['dataset']}: best validation error so far, {len(seeds)} seed(s), budget {budget:g} s",
        ylabel="best validation cross-entropy" if classify else None,
    )
    figure2(
        [runs[0]["run_dir"] for runs in results.values()],
        root / "compare.png",
        labels=list(results),
        title=f"{record['dataset']}: train (dotted) and test (solid) error, budget {budget:g} s",
        ylabel="mean cross-entropy" if classify else None,
    )
    return record


def _f(x: Any, spec: str = ".4f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "—"


_AUTOENCODER_COLUMNS = [
    ("best val", "best_val_error", ".4f"), ("train", "train_error", ".4f"), ("test", "test_error", ".4f"),
    ("train (no 1/2)", "train_error_no_half", ".4f"), ("test (no 1/2)", "test_error_no_half", ".4f"),
    ("time to target (s)", "time_to_target_s", ".0f"),
]  # fmt: skip
_CLASSIFY_COLUMNS = [
    ("best val CE", "best_val_error", ".4f"), ("train CE", "train_error", ".4f"),
    ("test CE", "test_error", ".4f"), ("test accuracy", "test_accuracy", ".4f"),
    ("time to target (s)", "time_to_target_s", ".0f"),
]  # fmt: skip


def markdown(record: dict[str, Any]) -> str:
    """The comparison table (squared errors on both scales, or cross-entropy and accuracy)."""
    seeds = record.get("seeds") or [record["seed"]]
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))} (means)"
    if record.get("target_from"):
        target = (
            f"target: {record['target_from']}'s best validation error averaged over the seeds, "
            f"{record['target_val_error']:.4f}, reached by validation error"
        )
    else:
        target = f"target test error {record['target_test_error']:.4f}"
    if record.get("task") == "classify":
        head = (
            f"Data: {record['dataset']}, classifier {record['arch']}, {seed_text}, "
            f"budget {record['budget_s']:g} s optimiser time per method; {target} (cross-entropy). "
            "Errors are mean softmax cross-entropy; accuracy and test cross-entropy are at the "
            "best-validation iteration."
        )
        columns, sweep_what = list(_CLASSIFY_COLUMNS), "val cross-entropy"
    else:
        head = (
            f"Data: {record['dataset']}, encoder {'-'.join(map(str, record['encoder']))}, "
            f"{seed_text}, budget {record['budget_s']:g} s optimiser time per method; "
            f"{target} (paper scale). Martens HF trains on {record['hf_loss']}."
        )
        columns, sweep_what = list(_AUTOENCODER_COLUMNS), "val error"
    if record.get("target_from"):
        columns.append((f"time / {record['target_from']}'s", "time_to_target_ratio", ".2f"))
    first = f" (seed {seeds[0]})" if len(seeds) > 1 else ""  # these three are the first seed's run's
    names = [c[0] for c in columns] + [f"examples{first}", f"peak RSS (MB){first}", f"iterations{first}"]
    lines = [head, "", "| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in record["rows"]:
        said = [f"lr {r['lr']:g}"] if r.get("lr") else []
        said += [f"weight decay {r['weight_decay']:g}"] if r.get("weight_decay") else []
        said += [f"on {r['objective']}"] if r.get("objective") else []
        name = r["method"] + (f" ({', '.join(said)})" if said else "")
        cells = [_f(r.get(key), spec) for _, key, spec in columns]
        cells += [f"{r['examples_processed']:,}", _f(r["peak_rss_mb"], ".0f"), str(r["iterations"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if len(seeds) > 1:
        lines.append("")
        for r in record["rows"]:
            ov = r["over_seeds"]
            ci = {
                k: (f"{v['mean']:.4f} ± {v['ci95']:.4f}" if v["ci95"] is not None
                    else f"{v['mean']:.4f} (one seed)")
                for k, v in ov.items()
            }
            extra = f", test accuracy {ci['test_accuracy']}" if "test_accuracy" in ci else ""
            if "test_ratio" in ci and r["method"] != record.get("target_from"):
                extra += f"; per seed, test / {record['target_from']}'s {ci['test_ratio']}"
                if "time_ratio" in ov:
                    k = ov["time_ratio"]["n"]
                    over = "on the one seed" if k == 1 else f"over the {k} seeds"
                    extra += (f", time to the target / {record['target_from']}'s {ci['time_ratio']} "
                              f"({over} both reached it)")
            lines.append(
                f"- {r['method']}: best val {ci['best_val_error']}, test {ci['test_error']}{extra} "
                f"(95% t-intervals), target reached in {r['reached_target']}/{len(r['seeds'])} seeds"
            )
    for m, trial in record.get("lr_sweeps", {}).items():
        lines.append("")
        lines.append(f"{m} sweep ({sweep_what} at the end of each run): " + ", ".join(
            f"{t['loss'] + ' ' if t.get('loss') else ''}lr {t['lr']:g}"
            f"{' weight decay ' + format(t['weight_decay'], 'g') if t.get('weight_decay') else ''}: "
            f"{_f(t['val_error'])}"
            for t in trial))  # fmt: skip
    return "\n".join(lines) + "\n"
