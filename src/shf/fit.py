"""Alg. 1's training loop for any model: :func:`fit`, and :func:`run_loop` that drives any method.

Per HF iteration ``i``: draw ``n`` training examples without replacement, take one SHF
step (:class:`shf.SHF`: the solve, damping, line search, Alg. 2 at the new weights
and the growth rule), read ``f_val,i``. "Not converged" (NOTES item 12) means: the
validation error improved within the last ``patience`` iterations (and, when set, the last
``patience_time`` seconds of optimiser time), fewer than ``max_iters`` iterations, less than
``max_time`` seconds of optimiser time. The
weights with the lowest validation error are kept and restored at the end.

The loop knows nothing of the architecture: it sees weights as lists of tensors, a
:class:`Method` that advances them, and an ``evaluate(w, X, Y)`` function for the
errors it reports. The paper's experiments (``shf train``, ``shf reproduce``) and
:func:`fit` run through the same :func:`run_loop`.

For the paper's autoencoders the errors are also reported on the no-1/2 scale
``(1/N) sum_i ||xhat_i - x_i||^2`` of Martens and Hinton & Salakhutdinov (= ``2 f``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils.data import Dataset

from shf import batch as bt
from shf import tensorlist as tl
from shf.averaging import Averaged
from shf.batch import Inputs
from shf.data.dataset import DatasetRows, is_dataset
from shf.data.dataset import tensors as dataset_tensors
from shf.errors import ConfigError
from shf.method import Method
from shf.optim.shf import SHF, as_pair
from shf.sets import InputSplit

log = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    """When to stop and what to measure (NOTES item 12).

    Attributes:
        max_iters: cap on HF iterations.
        max_time: cap on optimiser wall time in seconds (evaluation of the train and
            test errors for the metrics is not counted; the validation error is, since
            Alg. 1 uses it).
        patience: stop after this many iterations without a new best validation error.
        patience_time: beyond the paper: stop after this many seconds of optimiser time without
            a new best validation error (``inf``: off, the default). Unlike ``patience`` it
            means the same for every method (an HF iteration and an epoch of Adam differ in
            cost by orders of magnitude), so a comparison can give all methods one patience.
            Both apply; the first reached stops the run (reason ``patience``).
        train_eval_size: measure the train error on a fixed random subset of this many
            rows (``None``: the whole training set).
        eval_every: compute train/test errors every this many iterations (and at the
            best-validation iterations, always).
        weight_average: beyond the paper (docs/deviations.md B12): the decay ``beta`` of an
            exponential moving average of the iterates (:class:`shf.averaging.Averaged`),
            which the loop then evaluates, keeps as the best weights and reports, while the
            method continues from its own iterates; 0 (the paper's): the iterates themselves.
    """

    max_iters: int = 1000
    max_time: float = math.inf
    patience: int = 100
    patience_time: float = math.inf
    train_eval_size: int | None = None
    eval_every: int = 1
    weight_average: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.max_iters, int) and self.max_iters >= 1):
            raise ConfigError(f"max_iters must be a positive integer, got {self.max_iters}")
        if not self.max_time > 0:
            raise ConfigError(f"max_time must be > 0 seconds, got {self.max_time}")
        if not (isinstance(self.patience, int) and self.patience >= 1):
            raise ConfigError(f"patience must be a positive integer, got {self.patience}")
        if not self.patience_time > 0:
            raise ConfigError(f"patience_time must be > 0 seconds (inf: off), got {self.patience_time}")
        if self.train_eval_size is not None and self.train_eval_size < 1:
            raise ConfigError(f"train_eval_size must be >= 1, got {self.train_eval_size}")
        if not (isinstance(self.eval_every, int) and self.eval_every >= 1):
            raise ConfigError(f"eval_every must be a positive integer, got {self.eval_every}")
        if not 0.0 <= self.weight_average < 1.0:
            raise ConfigError(f"weight_average must be in [0, 1) (0: off), got {self.weight_average}")


@dataclass
class TrainResult:
    """Best-validation weights, the metrics of every iteration and a summary."""

    weights: list[Tensor]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    initial_weights: list[Tensor] = field(default_factory=list)


@dataclass
class LoopState:
    """Where the loop stands after ``iteration`` iterations: enough to continue bit for bit.

    ``records`` is the number of metric records written so far (a resumed run's metrics
    file is cut back to it: records after the checkpoint are written again). ``best_time``:
    the optimiser time at ``best_iteration`` (for ``patience_time``; None in a checkpoint
    written before it existed, read as the checkpoint's own time).
    """

    iteration: int
    w: list[Tensor]
    w0: list[Tensor]
    best_w: list[Tensor]
    best_val: float
    best_iteration: int
    f_val0: float
    f_test0: float
    opt_time: float
    examples: int
    records: int
    method: dict[str, Any]
    best_time: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Tensors and plain values (for ``torch.save``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        """Inverse of :meth:`as_dict`."""
        return cls(**d)


Evaluate = Callable[[list[Tensor], Any, "Tensor | None"], float]
"""``evaluate(w, X, Y)``: the error the loop reports and tracks (validation: best weights)."""


class SHFMethod:
    """Alg. 1 with :class:`shf.SHF` as a :class:`Method`: per iteration a random batch of
    ``opt.batch_size`` training examples without replacement and one SHF step.

    Args:
        opt: the optimizer (its ``train_size`` should be the training-set size).
        data: the split (targets: ``data.*_targets``, or the inputs).
        init: called once with ``opt`` before the first iteration to set the initial
            weights (e.g. the paper's sparse initialisation from ``opt.generator``);
            ``None`` keeps the model's weights.
        reuse_val: the loop's validation error is ``opt``'s validation loss, so the
            value the step computed (often the merit itself) is reused.
        rows: where the batches are read from when the training set is a dataset
            (:class:`shf.data.dataset.DatasetRows`; ``data.train`` is then only the rows the
            train error is measured on); None: ``data.train``.
    """

    def __init__(
        self,
        opt: SHF,
        data: InputSplit,
        init: Callable[[SHF], None] | None = None,
        *,
        reuse_val: bool = True,
        rows: DatasetRows | None = None,
    ) -> None:
        self.opt, self.data, self.init, self.reuse_val = opt, data, init, reuse_val
        self.rows = rows
        self.N = bt.rows(data.train) if rows is None else len(rows)
        # Data-parallel: the same sets on every rank (each rank takes its rows of every batch).
        opt.check_same_data(data.train, data.train_targets, data.val, data.val_targets, data.test,
                            data.test_targets)  # fmt: skip

    def init_weights(self) -> list[Tensor]:
        # Initialize w (eq. 9 for the paper's networks); d <- 0 (§4.1)
        if self.init is not None:
            self.init(self.opt)
        return [t.clone() for t in self.opt.weights()]

    def step(self, w: list[Tensor], deadline: float | None = None) -> tuple[list[Tensor], dict[str, Any]]:
        opt, data = self.opt, self.data
        opt.set_weights(w)  # a no-op copy unless the caller changed the weights
        n = opt.batch_size
        # S <- draw n instances from {1..N} randomly; X <- X_train[S, :]
        idx = torch.randperm(self.N, generator=opt.generator)[:n].to(bt.device(data.train))
        if self.rows is not None:
            X, Y = self.rows.take(idx)  # read from the dataset
        else:
            X = bt.take(data.train, idx)
            Y = data.train_targets[idx] if data.train_targets is not None else None
        info = opt.step(X, Y, val=(data.val, data.val_targets), deadline=deadline)
        rec = {k: v for k, v in info.as_dict().items() if k != "times"}
        rec.update(examples=n, batch_schedule=opt.config.batch_schedule, times=info.times)
        if self.reuse_val and info.val_loss is not None:
            rec["val_error"] = info.val_loss
        return [t.clone() for t in opt.weights()], rec

    @property
    def collectives(self) -> Any:
        """The optimizer's data-parallel collectives (None: one process)."""
        return getattr(self.opt.problem, "collectives", None)

    def summary(self) -> dict[str, Any]:
        return {"final_batch_size": self.opt.batch_size, "final_lambda": self.opt.lam}

    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["opt"])


def run_loop(
    data: InputSplit,
    method: Method,
    loop: LoopConfig,
    *,
    evaluate: Evaluate,
    seed: int = 0,
    on_iteration: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    no_half: bool = True,
    resume: LoopState | None = None,
    checkpoint: Callable[[LoopState], None] | None = None,
    checkpoint_every: int = 0,
    train_subset: bool = False,
) -> TrainResult:
    """Drive ``method`` until patience, ``max_iters`` or ``max_time``; keep the best-validation weights.

    ``evaluate(w, X, Y)`` gives the validation, train and test errors; ``on_iteration``
    receives each iteration's metrics (for progress bars and metric files); the library
    itself prints nothing. ``no_half`` adds ``*_no_half`` errors (``2 f``, the squared
    error without the 1/2) to the records, as the paper's autoencoder results need.

    Checkpoints: ``checkpoint(state)`` is called after every ``checkpoint_every``-th
    iteration (0: never) and when ``should_stop`` stops the loop; ``resume`` continues from
    such a state (the same data, method configuration, seed and thread count give the
    same iterations, bit for bit, as the uninterrupted run). ``train_subset``: ``data.train``
    is a subset of the training set (the method reads its batches elsewhere), which the
    metrics then say.
    """
    N = bt.rows(data.train)
    if N < 2:
        raise ConfigError(f"need at least 2 training examples, got {N}")
    if loop.weight_average > 0.0:
        # B12 (beyond the paper): the loop sees the EMA of the iterates, the method its iterates.
        method = Averaged(method, loop.weight_average)
    errors = _Errors(data, evaluate, loop.train_eval_size, seed, no_half, train_subset)
    comm = getattr(method, "collectives", None)
    st = _first_state(method, errors, comm) if resume is None else _resumed(method, resume)
    history: list[dict[str, Any]] = []
    stop_reason, wall0, start = "max_iters", time.perf_counter(), st.iteration + 1
    i = st.iteration
    for i in range(start, loop.max_iters + 1):
        rec, time_up, stale, stop_asked = _iterate(method, st, i, loop, errors, comm, should_stop, wall0)
        history.append(rec)
        if on_iteration is not None:
            on_iteration(rec)
        if checkpoint is not None and checkpoint_every > 0 and i % checkpoint_every == 0:
            checkpoint(_snapshot(st, method))
        if i - st.best_iteration >= loop.patience or stale:
            stop_reason = "patience"
            break
        if time_up:
            stop_reason = "max_time"
            break
        if stop_asked is None:
            stop_asked = should_stop is not None and should_stop()
        if stop_asked:
            stop_reason = "interrupted"
            if checkpoint is not None:
                checkpoint(_snapshot(st, method))
            break

    if checkpoint is not None and stop_reason != "interrupted" and i >= start and not (
        checkpoint_every > 0 and i % checkpoint_every == 0
    ):
        checkpoint(_snapshot(st, method))  # the end of the run: an extension continues from here
    summary = {
        # Train and test errors at the best-validation weights (what the paper reports).
        **errors.scales("train_error", errors.train(st.best_w)),
        **errors.scales("val_error", st.best_val),
        **errors.scales("test_error", errors.test(st.best_w)),
        "initial_test_error": st.f_test0,
        "initial_val_error": st.f_val0,
        "best_iteration": st.best_iteration,
        "hf_iterations": i,
        "wall_time_s": time.perf_counter() - wall0,
        "optimizer_time_s": st.opt_time,
        "examples_processed": st.examples,
        "stop_reason": stop_reason,
        "train_error_on_subset": errors.on_subset,
        **method.summary(),
    }
    log.info("finished: %s", summary)
    return TrainResult(weights=st.best_w, history=history, summary=summary, initial_weights=st.w0)


class _Errors:
    """The errors the loop measures: validation, test, and train (on a fixed random subset of
    ``train_eval_size`` rows when asked, drawn with seed ``seed + 1``); ``no_half`` adds the
    ``*_no_half`` doubles; ``on_subset``: the train error is on a subset (or ``data.train`` is
    one: ``train_subset``)."""

    def __init__(
        self, data: InputSplit, evaluate: Evaluate, train_eval_size: int | None, seed: int, no_half: bool,
        train_subset: bool,
    ) -> None:  # fmt: skip
        self.data, self.evaluate, self.no_half = data, evaluate, no_half
        N = bt.rows(data.train)
        # A fixed subset of the training set for the train error, if asked (documented in metrics).
        self.X_train, self.Y_train = data.train, data.train_targets
        if train_eval_size is not None and train_eval_size < N:
            sub = torch.randperm(N, generator=torch.Generator().manual_seed(seed + 1))[:train_eval_size]
            self.X_train = bt.take(data.train, sub)
            self.Y_train = data.train_targets[sub] if data.train_targets is not None else None
        self.on_subset = train_subset or self.X_train is not data.train

    def val(self, w: list[Tensor]) -> float:
        return self.evaluate(w, self.data.val, self.data.val_targets)

    def test(self, w: list[Tensor]) -> float:
        return self.evaluate(w, self.data.test, self.data.test_targets)

    def train(self, w: list[Tensor]) -> float:
        return self.evaluate(w, self.X_train, self.Y_train)

    def scales(self, name: str, value: float) -> dict[str, float]:
        return {name: value, f"{name}_no_half": 2.0 * value} if self.no_half else {name: value}


def _first_state(method: Method, errors: _Errors, comm: Any) -> LoopState:
    """Iteration 0: the method's initial weights and their validation (rank 0's) and test errors."""
    w = method.init_weights()
    f_val0 = errors.val(w)
    if comm is not None:
        f_val0 = comm.broadcast_floats([f_val0])[0]  # rank 0's, on every rank
    return LoopState(
        iteration=0, w=w, w0=cast(list[Tensor], tl.clone(w)), best_w=cast(list[Tensor], tl.clone(w)),
        best_val=f_val0, best_iteration=0, f_val0=f_val0, f_test0=errors.test(w), opt_time=0.0,
        examples=0, records=0, method={}, best_time=0.0,
    )  # fmt: skip


def _resumed(method: Method, resume: LoopState) -> LoopState:
    """The state a checkpoint holds, with its own copies of the weights; the method restored."""
    method.init_weights()
    method.load_state_dict(resume.method)
    return dataclasses.replace(
        resume, w=[t.clone() for t in resume.w], w0=[t.clone() for t in resume.w0],
        best_w=[t.clone() for t in resume.best_w], best_val=float(resume.best_val),
        best_iteration=int(resume.best_iteration),
        best_time=float(resume.opt_time if resume.best_time is None else resume.best_time),
    )  # fmt: skip


def _snapshot(st: LoopState, method: Method) -> LoopState:
    """What a checkpoint keeps of ``st`` (its own copy of the current weights)."""
    return dataclasses.replace(st, w=[t.clone() for t in st.w], method=method.state_dict())


def _iterate(
    method: Method, st: LoopState, i: int, loop: LoopConfig, errors: _Errors, comm: Any,
    should_stop: Callable[[], bool] | None, wall0: float,
) -> tuple[dict[str, Any], bool, bool, bool | None]:  # fmt: skip
    """Iteration ``i``: one step of the method, its validation error, the best weights; returns the
    metrics record, whether the time is up, whether ``patience_time`` ran out (no new best within
    it), and whether a stop was asked (None: not polled yet).

    Data-parallel methods (shf.curvature.sharded): rank 0's validation error and its clock's
    ``patience_time``, and a time limit reached or a stop asked on any rank, decide for all ranks
    (one 32-byte all-reduce)."""
    t_iter = time.perf_counter()
    # The time limit also holds inside an iteration (the solvers stop at the deadline).
    deadline = t_iter + (loop.max_time - st.opt_time) if math.isfinite(loop.max_time) else None
    st.w, info = method.step(st.w, deadline)
    f_val = info.pop("val_error", None)
    if f_val is None:
        f_val = errors.val(st.w)
    st.opt_time += time.perf_counter() - t_iter
    st.examples += int(info.pop("examples"))
    time_up = st.opt_time >= loop.max_time
    # patience_time: no new best validation error within it (a new best restarts the clock)
    stale = not f_val < st.best_val and st.opt_time - (st.best_time or 0.0) >= loop.patience_time
    stop_asked: bool | None = None  # polled by the loop, after the checkpoint (one process)
    if comm is not None:
        stop_asked = should_stop() if should_stop is not None else False
        first, first_stale = (f_val, float(stale)) if comm.rank == 0 else (0.0, 0.0)
        f_val, up, asked, out = comm.sum_floats([first, float(time_up), float(stop_asked), first_stale])
        time_up, stop_asked, stale = up > 0.0, asked > 0.0, out > 0.0
    times = info.pop("times", {})
    rec: dict[str, Any] = {
        "iteration": i, "time_s": st.opt_time, "wall_s": time.perf_counter() - wall0,
        "examples": st.examples, **info, **errors.scales("val_error", f_val), "times": times,
        "train_error_subset": errors.on_subset,
    }  # fmt: skip
    if i % loop.eval_every == 0:
        rec.update(errors.scales("train_error", errors.train(st.w)))
        rec.update(errors.scales("test_error", errors.test(st.w)))
    if f_val < st.best_val:
        st.best_val, st.best_iteration, st.best_time = f_val, i, st.opt_time
        st.best_w = cast(list[Tensor], tl.clone(st.w))
    rec["best_val_error"] = st.best_val
    st.iteration, st.records = i, st.records + 1
    return rec, time_up, stale, stop_asked


@dataclass
class FitResult:
    """What :func:`fit` returns; the model holds the best-validation weights.

    Attributes:
        best_val_loss: the lowest validation loss, at ``best_iteration`` (0: the start).
        test_loss: the loss on ``test`` (or None) at the best-validation weights.
        train_loss: the loss on the training set at those weights.
        iterations, stop_reason, time_s: how the loop ended (``patience``, ``max_iters``,
            ``max_time``, ``interrupted``) and the optimiser time spent.
        history: one record per HF iteration (the :class:`shf.optim.step.StepInfo` fields,
            the validation/train/test losses, times).
        optimizer: the :class:`shf.SHF` used, for a later continuation.
    """

    best_val_loss: float
    best_iteration: int
    train_loss: float
    test_loss: float | None
    initial_val_loss: float
    iterations: int
    stop_reason: str
    time_s: float
    history: list[dict[str, Any]]
    optimizer: SHF


TRAIN_EVAL_ROWS = 10_000
"""Rows of a training *dataset* the train loss is measured on (a fixed random subset)."""

Data = Inputs | tuple[Inputs, Tensor | None] | Dataset[Any]


def fit(
    model: torch.nn.Module,
    train: Data,
    val: Data,
    *,
    loss: Any = None,
    test: Data | None = None,
    optimizer: SHF | None = None,
    max_iters: int = 1000,
    max_time: float = math.inf,
    patience: int = 100,
    patience_time: float = math.inf,
    eval_every: int = 1,
    weight_average: float = 0.0,
    seed: int = 0,
    callback: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int = 0,
    **hyper: Any,
) -> FitResult:
    """Train ``model`` with SHF-LSMR (Alg. 1) and leave the best-validation weights in it.

    Args:
        model: any ``nn.Module`` (:class:`shf.models.Autoencoder`: the hand-written fast path).
        train, val, test: inputs, or ``(inputs, targets)`` (targets ``None``: reconstruct
            the inputs). Examples are rows (the first dimension). Rows with NaN or Inf values
            are refused (:class:`shf.DataError`, naming the set and how many rows). Each may
            also be a map-style ``torch.utils.data.Dataset`` whose items are inputs or
            ``(input, target)`` pairs: the training set is then read a batch at a time (the
            drawn rows only, so it need not fit in memory; the train loss is measured on a
            fixed random subset of :data:`TRAIN_EVAL_ROWS` rows), while a validation or test
            dataset is read into memory once (Alg. 1 and Alg. 6 evaluate the validation set
            many times per HF iteration). Tensors are the fast case. A batch with NaN or Inf
            values is skipped by the step (``solver_stop = "not_finite_batch"``).
        loss: as for :class:`shf.SHF` (``"mse"``, ``"bce"``, ``"cross_entropy"``, a
            :class:`shf.losses.Loss` or a residual function); the validation loss chooses
            the best weights and stops LSMR (Alg. 6).
        optimizer: an :class:`shf.SHF` for ``model`` to continue with (then ``loss``, ``seed``
            and the hyper-parameters are its own); default: a new one.
        max_iters, max_time, patience: stop after this many HF iterations, seconds of
            optimiser time, or iterations without a better validation loss.
        patience_time: beyond the paper: stop after this many seconds of optimiser time
            without a better validation loss (``inf``: off).
        eval_every: compute the train (and test) loss every this many iterations.
        weight_average: beyond the paper (B12): evaluate and keep the exponential moving
            average, with this decay, of the iterates (0: off); the model ends with the best
            average, and an ``optimizer=`` continued later starts from it.
        seed: the random batches and probes.
        callback: called with each iteration's record.
        should_stop: polled after each iteration; True stops with reason ``interrupted``.
        workers: ``DataLoader`` worker processes that read a training dataset's batches (0:
            this process); see :class:`shf.data.dataset.DatasetRows`.
        **hyper: :class:`shf.SHF`'s hyper-parameters (``damping=``, ``solver=``, ``batch=``,
            ``line_search=``, ``warm_start=``, ``preconditioner=``, ``config=``, ``generic=``,
            ``forward_mode=``, ``lr=``).
    """
    like = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype, device = (None, None) if like is None else (like.dtype, like.device)
    rows: DatasetRows | None = None
    if is_dataset(train):
        # Batches are read from the dataset; the train loss is measured on a fixed subset.
        rows = DatasetRows(cast(Dataset[Any], train), "train", workers=workers, dtype=dtype, device=device)
        sub = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + 1))[:TRAIN_EVAL_ROWS]
        X, Y = rows.take(sub)
    else:
        X, Y = as_pair(train, "train")

    def pair(d: Data, what: str) -> tuple[Inputs, Tensor | None]:
        if is_dataset(d):
            return dataset_tensors(cast(Dataset[Any], d), what, dtype=dtype, device=device)
        return as_pair(d, what)

    Xv, Yv = pair(val, "val")
    no_test = (bt.take(Xv, slice(0, 0)), None if Yv is None else Yv[:0])
    Xt, Yt = pair(test, "test") if test is not None else no_test
    N = bt.rows(X) if rows is None else len(rows)
    if optimizer is None:
        opt = SHF(model, loss, train_size=N, seed=seed, **hyper)
    else:
        if hyper or loss is not None:
            raise ConfigError("with optimizer=, give the hyper-parameters and the loss to it, not to fit")
        if optimizer.model is not model:
            raise ConfigError("the optimizer was made for another model")
        opt = optimizer
    sets = [("training", X, Y), ("validation", Xv, Yv)] + ([("test", Xt, Yt)] if test is not None else [])
    for name, inputs, targets in sets:
        # NaN/Inf rows, shapes, dtypes and the loss's targets (one forward pass on two rows)
        opt.check_data(inputs, targets, name)
    data = InputSplit(X, Xv, Xt, "fit", Y, Yv, Yt)
    loop = LoopConfig(
        max_iters=max_iters, max_time=max_time, patience=patience, patience_time=patience_time,
        eval_every=eval_every, weight_average=weight_average,
    )  # fmt: skip

    def evaluate(w: list[Tensor], Xe: Inputs, Ye: Tensor | None) -> float:
        return math.nan if bt.rows(Xe) == 0 else float(opt.problem.loss(w, Xe, Ye))

    res = run_loop(
        data, SHFMethod(opt, data, rows=rows), loop, evaluate=evaluate, seed=seed, on_iteration=callback,
        should_stop=should_stop, no_half=False, train_subset=rows is not None and len(rows) > bt.rows(X),
    )  # fmt: skip
    opt.set_weights(res.weights)  # the best-validation weights
    s = res.summary
    return FitResult(
        best_val_loss=float(s["val_error"]),
        best_iteration=int(s["best_iteration"]),
        train_loss=float(s["train_error"]),
        test_loss=None if test is None else float(s["test_error"]),
        initial_val_loss=float(s["initial_val_error"]),
        iterations=int(s["hf_iterations"]),
        stop_reason=str(s["stop_reason"]),
        time_s=float(s["optimizer_time_s"]),
        history=res.history,
        optimizer=opt,
    )
