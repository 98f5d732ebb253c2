"""Run one configured experiment into a run directory (shared by ``shf train`` and ``shf reproduce``)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from shf import collectives, runlog
from shf.config import ExperimentConfig, from_dict, restore_infinities
from shf.data.registry import load_dataset
from shf.data.split import Split, check_array
from shf.errors import ConfigError
from shf.experiments.methods import SHF_METHODS, build_method, shf_method
from shf.fit import Evaluate, LoopConfig, LoopState, TrainResult, run_loop
from shf.method import Method
from shf.models.autoencoder import Autoencoder
from shf.optim.settings import STORED_DEFAULTS
from shf.optim.step import SHFConfig

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


def resolve_device(name: str) -> torch.device:
    """``torch.device`` for a config value, with a clear error when CUDA is absent."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"invalid device {name!r}: {e}") from None


def prepare_data(cfg: ExperimentConfig) -> Split:
    """Load the configured data set in the configured dtype and device."""
    dtype = torch.float64 if cfg.run.dtype == "float64" else torch.float32
    labels = cfg.model.task == "classify"
    return load_dataset(cfg.data, labels=labels).to(dtype, resolve_device(cfg.run.device))


def build_network(cfg: ExperimentConfig) -> Autoencoder:
    """The autoencoder the ``[model]`` section describes, in the run's dtype and device (its
    weights are set by the method's own initialisation)."""
    dtype = torch.float64 if cfg.run.dtype == "float64" else torch.float32
    return Autoencoder(
        tuple(cfg.model.encoder),
        linear_code=cfg.model.linear_code,
        loss_name=cfg.model.loss,
        generator=torch.Generator().manual_seed(0),
        dtype=dtype,
        device=resolve_device(cfg.run.device),
    )


def check_data_for(net: Autoencoder, data: Split) -> None:
    """Raise a clear error unless ``data`` fits ``net`` (width, finiteness, [0, 1] range)."""
    if data.dim != net.input_dim:
        raise ConfigError(
            f"the data have {data.dim} features but the network's input layer has {net.input_dim}: "
            f"give an encoder that starts with the data width (e.g. --encoder {data.dim},...)"
        )
    if data.train.shape[0] < 2:
        raise ConfigError(f"need at least 2 training examples, got {data.train.shape[0]}")
    for part, X_part in (("train", data.train), ("validation", data.val), ("test", data.test)):
        check_array(X_part, f"{data.name} {part}")  # NaN/Inf or values outside [0, 1]


def squared_error(net: Autoencoder) -> Evaluate:
    """The error the paper reports, ``(1/N) sum_i 1/2 ||xhat_i - x_i||^2``, as the loop's ``evaluate``
    (on the cross-entropy, B9, it shares the validation forward pass with SHF's ``f_val,i``:
    :class:`shf.models.autoencoder.OutputMemo`)."""
    return net.squared_error


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    data: Split | None = None,
    on_iteration: Progress | None = None,
    method: str = "shf-lsmr",
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train as configured, writing ``config.json``, ``env.json``, ``metrics.jsonl``,
    ``weights.pt`` and ``summary.json`` into ``out_dir`` (and ``checkpoint.pt`` every
    ``run.checkpoint_every`` iterations and when ``should_stop`` stops the run); return the
    summary. ``resume``: continue the run in ``out_dir`` from its checkpoint (its metrics file
    is cut back to the checkpoint's records first), which gives the same iterations as the
    uninterrupted run with the same seed and thread count."""
    if cfg.run.threads is not None:
        torch.set_num_threads(cfg.run.threads)
    # Data-parallel (torchrun): every rank trains, rank 0 alone writes the run directory.
    comm = collectives.current()
    ranks = 1 if comm is None else comm.world_size
    if comm is not None and method not in DATA_PARALLEL_METHODS:
        raise ConfigError(
            f"{method} runs on one process; data-parallel runs (torchrun) support "
            f"{', '.join(DATA_PARALLEL_METHODS)}"
        )
    lead = comm is None or comm.rank == 0
    out = runlog.RunDir(out_dir, append=resume) if lead else runlog.NullRunDir(out_dir, append=resume)
    state: LoopState | None = None
    if resume:
        # rank 0's checkpoint (or its error) on every rank: only rank 0 needs checkpoint.pt
        ck = out.load_checkpoint() if comm is None else comm.on_rank0(out.load_checkpoint)
        saved = int(ck.get("world_size", 1))
        if saved != ranks:
            raise ConfigError(
                f"the checkpoint in {out_dir} was written by a run on {saved} process(es); this one has "
                f"{ranks}: resume with the same number (torchrun --nproc_per_node={saved}"
                f"{'' if saved > 1 else ', or without torchrun'})"
            )
        if ck.get("method") != method:
            raise ConfigError(f"the checkpoint in {out_dir} was made by {ck.get('method')!r}, not {method!r}")
        state = LoopState.from_dict(ck["loop"])
        if lead:
            check_extension(cfg, Path(out_dir), state)
        out.truncate_metrics(state.records)
        out.write_json("config.json", cfg.to_dict())  # the limits it now runs to (all else is as stored)
    else:
        out.write_json("config.json", cfg.to_dict())
        out.write_json("run.json", {"method": method})
        out.write_json("env.json", runlog.environment())
    if data is None:
        data = prepare_data(cfg)

    def record(rec: dict[str, Any]) -> None:
        out.log_metrics(rec)
        if on_iteration is not None:
            on_iteration(rec)

    def checkpoint(s: LoopState) -> None:
        out.save_checkpoint(
            {"loop": s.as_dict(), "method": method, "config": cfg.to_dict(), "world_size": ranks}
        )

    try:
        opt, evaluate, finish = _method_for(cfg, data, method)
        result = run_loop(
            data, opt, cfg.run.loop(), evaluate=evaluate, seed=cfg.run.seed, on_iteration=record,
            should_stop=should_stop, no_half=cfg.model.task != "classify", resume=state,
            checkpoint=checkpoint, checkpoint_every=cfg.run.checkpoint_every,
        )  # fmt: skip
    finally:
        out.close()
    out.save_weights(
        result.weights,
        {
            "task": cfg.model.task,
            "encoder": cfg.model.encoder,
            "linear_code": cfg.model.linear_code,
            "best_iteration": result.summary["best_iteration"],
        },
    )
    summary = {
        "name": cfg.name,
        "method": method,
        "dataset": data.name,
        "seed": cfg.run.seed,
        "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        **result.summary,
        **finish(result),
    }
    if ranks > 1:
        summary["processes"] = ranks
    if resume:
        summary["resumed_from_iteration"] = state.iteration if state is not None else None
    out.write_json("summary.json", summary)
    log.info("run %s finished: test error %.4f", Path(out_dir), summary["test_error"])
    return summary


def check_extension(cfg: ExperimentConfig, out: Path, state: LoopState) -> None:
    """Refuse (:class:`ConfigError`, one line) to resume the run in ``out`` from ``state`` with
    ``cfg``'s limits when that would shorten it or redo a finished run: a resume extends a run,
    it never cuts its metrics or replaces its best weights with earlier ones.

    A finished run (a summary whose stop reason is not ``interrupted``) continues only past the
    limit that stopped it (``max_iters``: more iterations; ``max_time``: a longer budget); one that
    stopped on patience has nothing left to do. Any run: the limits must lie beyond the
    checkpoint's ``state`` (its iterations and optimiser time are already spent)."""
    summary_path = out / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.is_file():
        with contextlib.suppress(OSError, ValueError):
            summary = json.loads(summary_path.read_text())
    reason = summary.get("stop_reason") if isinstance(summary, dict) else None
    done, spent = state.iteration, state.opt_time
    if reason not in (None, "interrupted"):
        done = max(done, int(summary.get("hf_iterations", done)))
        spent = max(spent, float(summary.get("optimizer_time_s", spent)))
        if reason not in ("max_iters", "max_time"):
            raise ConfigError(
                f"{out} is a finished run (it stopped on {reason} after {done} iterations): "
                "resuming it would repeat the same iterations; start a new run instead"
            )
        if reason == "max_iters" and cfg.run.max_iters <= done:
            raise ConfigError(
                f"{out} finished its {done} iterations (max_iters): give --max-iters above {done} "
                "to continue it (a resume never shortens a run)"
            )
        if reason == "max_time" and cfg.run.max_time <= spent:
            raise ConfigError(
                f"{out} finished its time budget ({spent:.1f} s of optimiser time): give --max-time "
                f"above {spent:.1f} to continue it (a resume never shortens a run)"
            )
    if cfg.run.max_iters < done:
        raise ConfigError(
            f"{out} has run {done} iterations; --max-iters {cfg.run.max_iters} would shorten it "
            f"(give at least {done})"
        )
    if cfg.run.max_time <= spent:
        raise ConfigError(
            f"{out} has spent {spent:.1f} s of optimiser time; --max-time {cfg.run.max_time:g} would "
            f"shorten it (give more than {spent:.1f})"
        )


DATA_PARALLEL_METHODS = SHF_METHODS
"""The methods ``shf train`` runs data-parallel under ``torchrun``: SHF's."""

Finish = Callable[[TrainResult], dict[str, Any]]
"""Extra summary entries computed from the loop's result (e.g. accuracies)."""


def _method_for(cfg: ExperimentConfig, data: Split, method: str) -> tuple[Method, Evaluate, Finish]:
    """The configured task's method, the error the loop tracks, and its extra summary entries."""
    if cfg.model.task == "classify":
        return _classify(cfg, data, method)
    net = build_network(cfg)
    check_data_for(net, data)
    refs = reference_errors(data)
    return build_method(method, net, data, cfg), squared_error(net), lambda result: refs


def reference_errors(data: Split) -> dict[str, float]:
    """What trivial reconstructions score on the test set (paper scale, ``1/2`` mean squared
    error per case), to judge a trained autoencoder against: every image blank (all zeros),
    and every image the mean training image."""
    X = data.test.double()
    mean = data.train.double().mean(dim=0, keepdim=True)
    return {
        "blank_test_error": 0.5 * float((X * X).sum(dim=1).mean()),
        "mean_image_test_error": 0.5 * float(((X - mean) ** 2).sum(dim=1).mean()),
    }


def _classify(cfg: ExperimentConfig, data: Split, method: str) -> tuple[Method, Evaluate, Finish]:
    """The classifier's method, its cross-entropy, and the accuracies for the summary."""
    from shf.experiments.classify import accuracy_of, build_classifier, classify_method, cross_entropy_of

    if data.train_targets is None or data.val_targets is None or data.test_targets is None:
        raise ConfigError(f"{data.name} has no labels to classify")
    model = build_classifier(cfg, data.dim, dtype=data.train.dtype, device=data.train.device)
    acc = accuracy_of(model)
    Yv, Yt = data.val_targets, data.test_targets

    def finish(result: TrainResult) -> dict[str, Any]:
        return {
            "task": "classify",
            "arch": cfg.model.arch,
            "n_params": sum(p.numel() for p in model.parameters()),
            "val_accuracy": acc(result.weights, data.val, Yv),
            "test_accuracy": acc(result.weights, data.test, Yt),
            "initial_test_accuracy": acc(result.initial_weights, data.test, Yt),
        }

    return classify_method(method, model, data, cfg), cross_entropy_of(model), finish


def describe(summary: dict[str, Any]) -> str:
    """The human-readable report ``shf train`` prints."""
    s = summary
    if s.get("task") == "classify":
        return (
            f"best validation at iteration {s['best_iteration']}/{s['hf_iterations']} ({s['stop_reason']}), "
            f"{s['optimizer_time_s']:.0f}s optimiser / {s['wall_time_s']:.0f}s wall\n"
            f"  cross-entropy: train {s['train_error']:.4f}  val {s['val_error']:.4f}  "
            f"test {s['test_error']:.4f}\n"
            f"  accuracy: val {s['val_accuracy']:.4f}  test {s['test_accuracy']:.4f}  "
            f"(initial test {s['initial_test_accuracy']:.4f})"
        )
    return (
        f"best validation at HF iteration {s['best_iteration']}/{s['hf_iterations']} ({s['stop_reason']}), "
        f"{s['optimizer_time_s']:.0f}s optimiser / {s['wall_time_s']:.0f}s wall\n"
        f"  errors (paper scale, 1/2 mean squared error per case): "
        f"train {s['train_error']:.4f}  val {s['val_error']:.4f}  test {s['test_error']:.4f}  "
        f"(initial test {s['initial_test_error']:.4f})\n"
        f"  errors (no-1/2 scale, Martens / Hinton & Salakhutdinov): "
        f"train {s['train_error_no_half']:.4f}  val {s['val_error_no_half']:.4f}  "
        f"test {s['test_error_no_half']:.4f}"
        + (
            f"\n  to judge the test error {s['test_error']:.4f}: every image blank scores "
            f"{s['blank_test_error']:.4f}, every image the mean training image "
            f"{s['mean_image_test_error']:.4f}"
            if "blank_test_error" in s
            else ""
        )
    )


def train(
    net: Autoencoder,
    data: Split,
    cfg: SHFConfig,
    loop: LoopConfig,
    *,
    seed: int = 0,
    on_iteration: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Run Alg. 1 (SHF-LSMR) on the autoencoder as the paper does: sparse initialisation from
    ``seed``, squared errors reported; return the best-validation weights and metrics."""
    check_data_for(net, data)
    return run_loop(
        data, shf_method(net, data, cfg, seed), loop, evaluate=squared_error(net), seed=seed,
        on_iteration=on_iteration, should_stop=should_stop,
    )  # fmt: skip


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


BASELINE_OPTIMIZER_KEYS = ("m0", "sigma")
"""The ``[optimizer]`` keys that a method other than SHF's reads: eq. (9)'s sparse initialisation,
the initial weights every method of a comparison starts from (:func:`shf.experiments.methods.shared_init`)."""


def config_differences(stored: dict[str, Any], cfg: ExperimentConfig, method: str | None = None) -> list[str]:
    """The ``section.key`` names whose stored value (a run's ``config.json``) differs from ``cfg``'s,
    less those that cannot change the run.

    A key the stored configuration lacks was added to shf after that run was made; the run then
    behaved as the key's value at its introduction (the paper's, for an ``[optimizer]`` key:
    :data:`shf.optim.settings.STORED_DEFAULTS`), so it differs only if ``cfg``
    sets another value. An ``[optimizer]`` key that both configurations' parts ignore
    (:meth:`SHFConfig.ignored`: B24's rule without a weight cost, the merit's constants without
    the merit) is no difference; nor, for a ``method`` other than SHF's
    (:data:`shf.experiments.methods.SHF_METHODS`), is an ``[optimizer]`` key other than
    :data:`BASELINE_OPTIMIZER_KEYS` (Adam does not read SHF's damping)."""
    a, b = _flat(runlog.jsonable(stored)), _flat(runlog.jsonable(cfg.to_dict()))
    # what shf did before a key existed: the paper's setting for an [optimizer] key
    defaults = _flat(runlog.jsonable(ExperimentConfig(optimizer=SHFConfig(**STORED_DEFAULTS)).to_dict()))
    for k in set(b) - set(a):
        if k in defaults:
            a[k] = defaults[k]
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if not any(k.startswith("optimizer.") for k in diff):
        return diff
    if method is not None and method not in SHF_METHODS:
        keep = {f"optimizer.{k}" for k in BASELINE_OPTIMIZER_KEYS}
        return [k for k in diff if not k.startswith("optimizer.") or k in keep]
    try:
        theirs = from_dict(restore_infinities(stored)).optimizer.ignored()
    except ConfigError:  # a stored configuration that does not load: every key counts
        return diff
    ignored = {f"optimizer.{k}" for k in set(theirs) & set(cfg.optimizer.ignored())}
    return [k for k in diff if k not in ignored]


REUSE = "reuse"
EXTEND = "extend"


def budget_change(
    diff: list[str], stored: dict[str, Any], summary: dict[str, Any], cfg: ExperimentConfig, out: Path
) -> str | None:
    """What a stored run that differs from ``cfg`` only in ``run.max_time`` is worth to ``cfg``:
    :data:`REUSE` when it stopped for another reason (patience, ``max_iters``) before ``cfg``'s
    budget (a longer budget gives the same run); :data:`EXTEND` when it stopped on its shorter
    budget and has a checkpoint (it continues from there to ``cfg``'s budget); else None."""
    if diff != ["run.max_time"] or not summary:
        return None
    reason = summary.get("stop_reason")
    old = float(stored.get("run", {}).get("max_time", math.inf))
    spent = float(summary.get("optimizer_time_s", math.inf))
    if reason in ("patience", "max_iters") and spent <= cfg.run.max_time:
        return REUSE
    if reason == "max_time" and old < cfg.run.max_time and (out / runlog.CHECKPOINT).is_file():
        return EXTEND
    return None


def is_finished(summary: dict[str, Any], cfg: ExperimentConfig) -> bool:
    """Whether ``summary`` (a stored run's, of ``cfg``'s configuration) is that of a finished run.

    Not finished: no summary, one marked ``interrupted``, or one that stopped on a time budget
    well below ``cfg``'s: a run being extended to a longer budget (:data:`EXTEND`) that was
    killed before it wrote its new summary (its ``config.json`` already names the longer budget).
    A finished time-budget run stops at the budget or just after it, hence the 1% margin."""
    if not summary or summary.get("stop_reason") == "interrupted":
        return False
    spent = float(summary.get("optimizer_time_s", math.inf))
    return not (summary.get("stop_reason") == "max_time" and spent < 0.99 * cfg.run.max_time)


def stored_run(
    cfg: ExperimentConfig, out: Path, method: str, overwrite: bool
) -> tuple[list[str], dict[str, Any], str | None]:
    """The keys in which the run stored in ``out`` differs from ``cfg`` and ``method`` (a
    :class:`ConfigError` naming them unless ``overwrite`` or the run can be extended), its summary
    (``{}`` if none), and :func:`budget_change`'s verdict (a reusable run has no differences)."""
    summary_path = out / "summary.json"
    summary = runlog.read_json(summary_path, "run's summary") if summary_path.is_file() else {}
    run_json = out / "run.json"
    stored_method = runlog.read_json(run_json, "run's record").get("method") if run_json.is_file() else None
    stored_method = stored_method or summary.get("method")
    stored = restore_infinities(runlog.read_json(out / "config.json", "run's configuration"))
    diff = config_differences(stored, cfg, method) + ([] if stored_method == method else ["method"])
    change = budget_change(diff, stored, summary, cfg, out)
    if change == REUSE:
        return [], summary, change  # it stopped before the old budget: the longer one changes nothing
    if diff and not overwrite and change is None:
        raise ConfigError(
            f"{out} holds a run of another configuration ({', '.join(diff)} differ): "
            "remove it or rerun with --overwrite"
        )
    return diff, summary, change


def run_or_reuse(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    method: str = "shf-lsmr",
    on_iteration: Progress | None = None,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """The summary of the run of ``cfg`` in ``out_dir``: reused when it finished with this very
    configuration and method, resumed from its checkpoint when it was interrupted, run when
    there is none. A directory holding a run of another configuration is refused, naming the
    keys that differ, unless ``overwrite`` (then it is replaced). ``should_stop``: as in
    :func:`run_experiment` (a stopped run's summary says ``"interrupted"``)."""
    out = Path(out_dir)
    resume = False
    if (out / "config.json").is_file():
        diff, summary, change = stored_run(cfg, out, method, overwrite)
        if change == EXTEND:
            # a longer budget: continue from the last checkpoint (its iterations are the run's own)
            runlog.RunDir(out).write_json("config.json", cfg.to_dict())
            # the old budget's summary is not this run's (is_finished also tells, if killed here)
            (out / "summary.json").unlink(missing_ok=True)
            with runlog.RunLock(out):
                return run_experiment(
                    cfg, out, on_iteration=on_iteration, method=method, resume=True, should_stop=should_stop
                )
        if diff:
            runlog.clear_run_dir(out)  # --overwrite: shf's run files only, never foreign ones
        elif is_finished(summary, cfg):
            return summary  # finished with this configuration
        else:
            resume = (out / runlog.CHECKPOINT).is_file()
            if not resume:  # killed before its first checkpoint: start it over
                runlog.clear_run_dir(out)
    with runlog.RunLock(out):
        return run_experiment(
            cfg, out, on_iteration=on_iteration, method=method, resume=resume, should_stop=should_stop
        )
