"""``shf.SHF``: stochastic Hessian-free optimisation with LSMR as a ``torch.optim.Optimizer``.

One call of :meth:`SHF.step` is one HF iteration of Alg. 1 on the batch it is given:
the damped, preconditioned Gauss-Newton system solved by LSMR (Alg. 6, with the
validation merit when ``use_merit`` is on, as in the paper's presets; the defaults turn it
off, B15; :func:`shf.optim.step.shf_step`), the Levenberg-Marquardt update and
Armijo backtracking, the warm start for the next solve, and then Alg. 2's batch-size
prediction at the new weights with the growth rule, so :attr:`SHF.batch_size` is the
size the next batch should have. The optimizer holds all of Alg. 1's state
(``lambda``, ``gamma``, the warm start, ``maxiter``, the batch size and the ``n_hat``
and validation histories, the random generator), and :meth:`SHF.state_dict` round-trips
it so that a resumed run continues bit for bit.

Unlike first-order optimizers, SHF needs the model as a function of its parameters
(Jacobian products, not just a gradient), so it takes the model, not only its
parameters; ``step`` takes the batch instead of a closure.
"""

from __future__ import annotations

import dataclasses
import math
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from shf import batch as bt
from shf import collectives
from shf.batch import Inputs
from shf.curvature.losses import Loss, Residual, get_loss
from shf.curvature.module import curvature_model
from shf.curvature.sharded import ShardedProblem
from shf.errors import ConfigError, DataError, ShfError
from shf.optim.batchsize import BatchPolicy, BatchSchedule, batch_cap
from shf.optim.hyper import GROUPS, to_config
from shf.optim.objective import make_objective
from shf.optim.regime import choose, first_groups, full_batch, given_keys
from shf.optim.settings import (
    PRECONDITIONER,
    STORED_DEFAULTS,
    Batch,
    Damping,
    Init,
    LineSearch,
    Solver,
    WarmStart,
)
from shf.optim.solve import DIRECT_MAX_WEIGHTS
from shf.optim.step import NOT_FINITE_BATCH, SHFConfig, SHFState, StepInfo, shf_step

ValSet = tuple[Inputs, Tensor | None] | list[Any] | Inputs


def as_pair(data: Any, what: str) -> tuple[Inputs, Tensor | None]:
    """``X`` or ``(X, Y)`` (a tuple or list; ``Y = None``: the inputs are the targets) -> ``(X, Y)``.
    ``X``: a tensor or a dict of tensors (:mod:`shf.batch`)."""
    if bt.is_inputs(data):
        return data, None
    if isinstance(data, (tuple, list)) and len(data) == 2 and bt.is_inputs(data[0]):
        if data[1] is not None and not isinstance(data[1], Tensor):
            raise DataError(f"{what} targets must be a torch.Tensor, got {type(data[1]).__name__}")
        return data[0], data[1]
    raise DataError(
        f"{what} must be inputs (a tensor or a dict of tensors) or a pair (inputs, targets), "
        f"got {type(data).__name__} (shf.fit also takes a torch.utils.data.Dataset; "
        "shf.data.dataset.tensors reads one into tensors)"
    )


_CASTS = {torch.float32: "float", torch.float64: "double", torch.float16: "half", torch.bfloat16: "bfloat16"}


def _cast(dtype: torch.dtype) -> str:
    """The method that casts a tensor or a module to ``dtype`` (``float()``, ``to(torch.int8)``)."""
    return f"{_CASTS[dtype]}()" if dtype in _CASTS else f"to({dtype})"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_finite(t: Inputs | None, what: str) -> None:
    """Raise :class:`DataError` if rows of ``t`` (examples first) hold NaN or Inf values.

    ``what`` names the tensor in the message (e.g. ``"training inputs"``). Integer tensors
    (labels) cannot hold either and are not read. Such rows would not fail loudly later: a
    batch with one of them gives a non-finite loss, so every step is refused, and a
    non-finite validation loss is never a new best.
    """
    if t is None:
        return
    if not isinstance(t, Tensor):  # a dict of inputs: each of its tensors
        for name, leaf in bt.leaves(t, what):
            check_finite(leaf, what + name)
        return
    if not (t.is_floating_point() or t.is_complex()):
        return
    rows = t.reshape(t.shape[0], -1) if t.dim() > 0 else t.reshape(1, 1)
    bad = ~torch.isfinite(rows).all(dim=1)
    count = int(bad.sum())
    if count:
        first = int(bad.nonzero()[0, 0])
        raise DataError(
            f"the {what} have {count} row(s) with NaN or Inf values (of {rows.shape[0]}; the first "
            f"is row {first}): remove or impute them"
        )



def _data_error(err: Exception, X: Inputs, param_dtype: torch.dtype | None, what: str) -> DataError:
    """A one-line :class:`DataError` for the torch error ``err`` that running the model on two
    rows of the ``what`` inputs ``X`` raised: a dtype that differs from the parameters', integer
    inputs the model cannot take, or (whatever else, e.g. a feature width) the error's first line."""
    lines = str(err).strip().splitlines()
    first = (lines[0] if lines else type(err).__name__)[:300]
    float_params = param_dtype is not None and param_dtype.is_floating_point
    if not isinstance(X, Tensor):  # a dict of inputs: what each holds, and torch's message
        if isinstance(err, KeyError):
            first = f"it reads the key {err.args[0]!r}, which they do not have"
        return DataError(f"the {what} data ({bt.describe(X)}) do not fit the model: {first}")
    if X.is_floating_point() and float_params and X.dtype != param_dtype:
        return DataError(
            f"the {what} inputs are {_dtype_name(X.dtype)} but the model's parameters are "
            f"{_dtype_name(cast(torch.dtype, param_dtype))}: convert with "
            f"X.{_cast(cast(torch.dtype, param_dtype))} or model.{_cast(X.dtype)}"
        )
    if not (X.is_floating_point() or X.is_complex()):
        to = _cast(cast(torch.dtype, param_dtype)) if float_params else "float()"
        return DataError(
            f"the model fails on the {what} inputs, which are {_dtype_name(X.dtype)} ({first}); integer "
            f"inputs suit models that take indices (e.g. nn.Embedding): if these are features, convert "
            f"with X.{to}"
        )
    return DataError(f"the {what} data (inputs of shape {tuple(X.shape)}) do not fit the model: {first}")


class SHF(torch.optim.Optimizer):
    """SHF-LSMR (Emirahmetoglu & Stewart 2025) over a model's parameters.

    Args:
        model: any ``nn.Module``. :class:`shf.models.Autoencoder` with its own loss uses
            the hand-written products (Alg. 4, 5); every other module the ``torch.func``
            ones (:mod:`shf.curvature.module`).
        loss: ``"mse"`` (``(1/n) sum_i 1/2 ||z_i - y_i||^2``, the paper's), ``"bce"``
            (binary cross-entropy on logits), ``"cross_entropy"`` (softmax on logits,
            integer labels), a :class:`shf.losses.Loss`, or a residual function
            ``(outputs, targets) -> r`` for ``1/2 ||r||^2``. ``None``: the model's own loss
            (fast path) or ``"mse"``.
        params: the parameters to train, or param groups as ``torch.optim`` takes them
            (default: all of the model's parameters that require grad). One system is
            solved for all of them, so groups may not set options of their own (but ``lr``,
            the same in every group).
        lr: beyond the paper (docs/deviations.md G9), ``torch.optim``'s learning rate as a
            scale of the step: the weights move to ``w + lr s d`` with ``d`` the solver's
            direction and ``s`` the line search's step length (``rho``, the damping and the
            warm start are unchanged). It is each param group's ``"lr"``, so LR schedulers
            (``torch.optim.lr_scheduler``) set it. 1.0 (the default): the paper's step, bit for
            bit; it must be finite and >= 0.
        damping, warm_start, solver, batch, line_search: the hyper-parameter groups of
            :mod:`shf.optim.settings`, shf's one set of defaults (the paper's CURVES settings with
            the measured-best ones beyond the paper, ``shf.optim.hyper.TUNED``, on top). A field
            set to a value that the chosen parts ignore is refused, naming the part
            (``Damping(drop=0.9)`` under Nielsen's rule).
        preconditioner: ``chapelle-erhan`` (Alg. 3), ``martens``, ``column-norms`` (MINPACK's
            scaling, B18), ``kfac`` (B19: Kronecker-factored per layer, LSMR's right
            preconditioner on the same damped problem; hand-written autoencoder only) or ``none``.
        config: all hyper-parameters as one flat :class:`SHFConfig` instead of the groups;
            ``shf.PAPER`` (``SHFConfig.paper()``) is the paper's settings.
        train_size: ``N``, the training-set size, for Alg. 2's finite-population factor
            (``None``: an unbounded stream). The batch size is capped at it.
        seed, generator: the random numbers of the batches (drawn by :func:`shf.fit`) and of
            the preconditioner's probes; ``generator`` (a CPU generator) wins over ``seed``.
        generic: use the ``torch.func`` products even where hand-written ones exist.
        forward_mode: how the generic path makes ``A d``: ``"auto"`` (per-layer rules for a
            chain of known layers, the Jacobian formed for a model of at most 16 weights, else
            ``jvp`` and a checked trace), ``"layers"``, ``"jvp"``, ``"linearize"``,
            ``"double-backward"`` (differentiating the graph of ``J^T u``: the fastest on a
            transformer, ``docs/results/bench/forward-modes.md``) or ``"dense"`` (``J`` formed
            once per HF iteration, G16).
        regime: beyond the paper (B17, :mod:`shf.optim.regime`): ``"auto"`` (the default) runs
            a plain, well-damped Levenberg-Marquardt step (no weight cost, no damping floor,
            LSMR to round-off, the whole batch for the curvature, no preconditioner, no Alg. 2)
            where the training set fits in the first batch or the loss is a residual function,
            for the settings the user did not give; ``"stochastic"`` or ``"full-batch"`` force
            one. A flat ``config=`` is never changed by ``auto``. ``StepInfo.regime`` says which.
        distributed: data-parallel over the processes of ``torch.distributed`` (launched by
            ``torchrun``): each rank computes on its rows of every batch, which must be the same
            batch on every rank (:mod:`shf.curvature.sharded`, ``docs/distributed.md``). ``None``
            (default): when ``torch.distributed`` runs more than one process; ``False``: never.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: str | Loss | Any | None = None,
        *,
        params: Iterable[Tensor] | Iterable[dict[str, Any]] | None = None,
        damping: Damping | None = None,
        warm_start: WarmStart | None = None,
        solver: Solver | None = None,
        batch: Batch | None = None,
        line_search: LineSearch | None = None,
        preconditioner: str = PRECONDITIONER,
        config: SHFConfig | None = None,
        train_size: int | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        generic: bool = False,
        forward_mode: str = "auto",
        distributed: bool | None = None,
        lr: float = 1.0,
        regime: str = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"SHF needs the model (a torch.nn.Module), got {type(model).__name__}")
        if train_size is not None and (isinstance(train_size, bool) or int(train_size) < 2):
            raise ConfigError(f"train_size must be an integer >= 2, got {train_size}")
        groups = (damping, warm_start, solver, batch, line_search)
        if config is not None:
            if any(g is not None for g in groups) or preconditioner != PRECONDITIONER:
                raise ConfigError("give SHF either config= or the hyper-parameter groups, not both")
            if not isinstance(config, SHFConfig):
                raise ConfigError(f"config must be a shf.SHFConfig, got {type(config).__name__}")
        # B17: the full-batch regime (a plain, well-damped LM) where the data fit in one batch
        given = given_keys(zip(GROUPS, groups), preconditioner, PRECONDITIONER) if config is None else set()
        n1 = config.n1 if config is not None else (batch if isinstance(batch, Batch) else Batch()).n1
        residual = loss is not None and isinstance(get_loss(loss), Residual)
        N = None if train_size is None else int(train_size)
        self.regime = choose(regime, residual=residual, train_size=N, n1=n1, given=given,
                             one_config=config is not None)  # fmt: skip
        if config is not None:
            cfg = dataclasses.replace(config)  # validated copy
        else:
            if self.regime == "full-batch":  # its floor and curvature rows before the groups' checks
                damping, batch, solver = first_groups(damping, batch, solver, given)
            cfg = to_config(
                damping=damping, warm_start=warm_start, solver=solver, batch=batch,
                line_search=line_search, init=Init(), preconditioner=preconditioner,
            )  # fmt: skip
        if params is None:
            params = [p for p in model.parameters() if p.requires_grad]
            if not params:
                raise ConfigError(
                    "the model has no parameter that requires grad: nothing to train "
                    "(set requires_grad=True on the parameters SHF should optimise)"
                )
        super().__init__(params, {"lr": lr})
        for g in self.param_groups:
            extra = sorted(k for k in g if k not in ("params", "lr"))
            if extra:
                raise ConfigError(
                    "SHF solves one system for all parameters: param groups cannot set options "
                    f"({', '.join(extra)})"
                )
        self._group_lr()  # refuses a bad one now
        self._params: list[Tensor] = [p for g in self.param_groups for p in g["params"]]
        self.model = model
        self._local_problem = curvature_model(
            model, loss, self._params, generic=generic, forward_mode=forward_mode
        )
        self.problem = self._local_problem
        comm = None if distributed is False else collectives.current(self._params[0].device)
        if distributed is True and comm is None:
            raise ConfigError(
                "distributed=True needs torch.distributed initialised with more than one process "
                "(launch with torchrun --nproc_per_node=P)"
            )
        self.world_size = 1 if comm is None else comm.world_size
        self._comm = comm
        n_weights = self._n_weights()
        if self.regime == "full-batch":
            # B20's exact solve for a handful of weights, in one process
            cfg = full_batch(cfg, given, N, n_weights if comm is None else None)
        if cfg.solver == "direct":
            if comm is not None:
                raise ConfigError("solver 'direct' (B20) runs in one process; data-parallel runs use 'lsmr'")
            if n_weights > DIRECT_MAX_WEIGHTS:
                raise ConfigError(
                    f"solver 'direct' (B20) forms a matrix with a column per weight: at most "
                    f"{DIRECT_MAX_WEIGHTS} weights, this model trains {n_weights} (use 'lsmr')"
                )
        self.config = cfg
        self.train_size = None if train_size is None else int(train_size)
        if generator is not None and generator.device.type != "cpu":
            raise ConfigError("the generator must be a CPU torch.Generator (batches are drawn on the CPU)")
        self.generator = generator if generator is not None else torch.Generator().manual_seed(int(seed))
        if comm is not None:
            # Data-parallel (shf.curvature.sharded): the same decisions on every rank. Every rank
            # starts from rank 0's weights and random state, so the batches drawn from the
            # generator and the probes agree whatever each process seeded.
            self.problem = ShardedProblem(self._local_problem, comm)
            with torch.no_grad():
                for p in self._params:
                    comm.broadcast_(p.data)
            self.generator.set_state(comm.broadcast_(self.generator.get_state()))
        # lambda <- lambda1; gamma <- gamma1; maxiter <- maxiter1; d <- 0  (Alg. 1)
        self.hf_state = SHFState.initial(cfg, self._n_weights(), self.train_size)
        N = self.train_size
        n1 = cfg.n1 if N is None else min(cfg.n1, N)
        # n <- n1 (Alg. 1), and the growth rule's window
        self.schedule = BatchSchedule(
            n=n1,
            maxiter=cfg.maxiter1 if cfg.maxiter_max is None else min(cfg.maxiter1, cfg.maxiter_max),
            n_max=batch_cap(cfg.n_max, cfg.n1, N, cfg.n_max_fraction),  # B13's cap too
            window=cfg.window,
            growth=cfg.batch_growth,
            rrel_tol=cfg.rrel_tol,
        )
        # Alg. 2 and the growth rule after each step (the fixed schedule: the ablation), B4's cap
        self.batch_policy = BatchPolicy(
            self.schedule, dynamic=cfg.batch_schedule == "dynamic", theta=cfg.theta,
            squared=cfg.batch_test == "squared", merit_cap=cfg.maxiter_rule == "merit",
            first_check=cfg.first_check, maxiter_max=cfg.maxiter_max,
        )  # fmt: skip
        self.iterations = 0

    def _n_weights(self) -> int:
        """The number of weights trained (``P``, which B16's weight-cost rule reads)."""
        return sum(p.numel() for p in self._params)

    def check_same_data(self, *sets: Inputs | None) -> None:
        """Data-parallel runs: raise :class:`ConfigError` unless every rank was given the same data
        (shapes and float64 sums compared with rank 0's); shf splits each batch itself."""
        if self._comm is None:
            return
        sig: list[float] = []
        tensors = [t for x in sets for t in ([None] if x is None else [leaf for _, leaf in bt.leaves(x)])]
        for t in tensors:
            if t is None:
                sig += [math.nan] * 4  # the same length on every rank, whatever it was given
                continue
            rows = t.flatten(1).sum(dim=1, dtype=torch.float64) if t.dim() > 1 else t.double().reshape(-1)
            # sum of the row sums weighted by position: reordered rows differ too
            pos = torch.arange(1, rows.numel() + 1, dtype=torch.float64, device=rows.device)
            sig += [float(rows.numel()), float(t.numel()), float(rows.sum()), float((rows * pos).sum())]
        if not self._comm.same_on_all_ranks(sig):
            raise ConfigError(
                "the processes were given different data: every rank must pass the whole training and "
                "validation sets (the same on all ranks); shf gives each rank its rows of every batch"
            )

    _checked_batch: _DataKey | None = None
    """The batch :meth:`step` checked last (:func:`_data_key`): a full-batch fit passes the same
    tensors at every step, and their check (a forward pass on two rows) is paid once."""

    def check_data(
        self, inputs: Inputs, targets: Tensor | None, what: str, *, forward: bool = True, finite: bool = True
    ) -> None:
        """Raise a one-line :class:`shf.errors.ShfError` unless ``(inputs, targets)`` fit the model.

        The model's own checks (shapes, rows, devices, the loss's targets) run first; with
        ``forward`` the loss is then evaluated on two rows. Whatever torch raises on the way (a
        feature width or dtype the model cannot take) becomes a :class:`DataError` that names
        the data set ``what`` (``"training"``, ``"validation"``, ...) and, for a dtype, the fix.
        Nothing is assumed about the architecture: integer inputs that the model takes (e.g.
        ``nn.Embedding`` indices) pass.
        """
        if finite:
            # A NaN or Inf row makes every loss non-finite: each step would be rejected (or the
            # validation merit meaningless) without a word. One pass over the data, one host sync.
            check_finite(inputs, f"{what} inputs")
            check_finite(targets, f"{what} targets")
        w = self.weights()
        try:
            # The single-process problem: a data-parallel one would reduce the loss over ranks.
            self._local_problem.check_batch(w, inputs, targets)
            if forward:
                with torch.no_grad():
                    two = bt.take(inputs, slice(0, 2))
                    self._local_problem.loss(w, two, None if targets is None else targets[:2])
        except ShfError:
            raise
        except (RuntimeError, TypeError, ValueError, IndexError, KeyError, NotImplementedError) as err:
            param_dtype = w[0].dtype if w else None
            raise _data_error(err, inputs, param_dtype, what) from err

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Refused once the optimizer exists: SHF solves one system for the parameters it was
        built with (the curvature operator is made for them)."""
        if hasattr(self, "problem"):
            raise ConfigError("SHF's parameters are fixed when it is made; make a new SHF to train others")
        super().add_param_group(param_group)

    @property
    def fast_path(self) -> bool:
        """True when the hand-written products are used (the model is its own curvature model)."""
        return self._local_problem is self.model

    @property
    def batch_size(self) -> int:
        """``n``: the size the next batch should have (Alg. 1's growth rule)."""
        return self.schedule.n

    @property
    def lam(self) -> float:
        """The current damping ``lambda``."""
        return self.hf_state.lam

    def weights(self) -> list[Tensor]:
        """The trained parameters (the live tensors, detached), in the optimizer's order."""
        return [p.detach() for p in self._params]

    @torch.no_grad()
    def set_weights(self, w: Sequence[Tensor]) -> None:
        """Copy ``w`` into the trained parameters."""
        for p, t in zip(self._params, w):
            p.copy_(t)

    def loss(self, inputs: Inputs, targets: Tensor | None = None) -> float:
        """The training loss ``f`` of the current weights on ``(inputs, targets)``."""
        self.check_data(inputs, targets, "given")
        return float(self.problem.loss(self.weights(), inputs, targets))

    def step(  # type: ignore[override]
        self,
        inputs: Inputs,
        targets: Tensor | None = None,
        *,
        val: ValSet | None = None,
        deadline: float | None = None,
    ) -> StepInfo:
        """One HF iteration of Alg. 1 on the batch ``(inputs, targets)``; returns what happened.

        Args:
            inputs, targets: the mini-batch (``targets=None``: reconstruct the inputs). The
                inputs are a tensor, or a dict of tensors for a model that takes named inputs
                (``model(inputs)`` receives the dict; every tensor holds one row per example).
            val: ``(inputs, targets)`` (or just inputs) of the validation set: the loss the
                growth rule watches and, with ``use_merit``, the merit that stops LSMR
                (Alg. 6). Without it the batch size stays, and LSMR stops on its other tests.
            deadline: a ``time.perf_counter()`` value past which the solver stops (with the
                best iterate so far), so that a time limit holds within one solver iteration.
        """
        X, Y = inputs, targets
        X_val, Y_val = as_pair(val, "val") if val is not None else (None, None)
        w = self.weights()
        # The model's checks run a forward pass on two rows for every model but the hand-written
        # fast path, which checks widths only: its two rows are run here.
        # A non-finite batch is not refused: the step is skipped (solver_stop "not_finite_batch")
        # and the weights kept, so a stream with a corrupt batch goes on with the next one.
        key = _data_key(X, Y, w)
        if key is None or key != self._checked_batch:
            self.check_data(X, Y, "batch", forward=self.fast_path, finite=False)
            self._checked_batch = key  # the same tensors, unchanged, are not checked again
        if bt.rows(X) < 2:
            raise ConfigError(f"an SHF step needs a batch of at least 2 examples, got {bt.rows(X)}")
        if X_val is not None:
            self.check_data(X_val, Y_val, "validation", forward=self.fast_path)
        cfg, state = self.config, self.hf_state
        lr = self._group_lr()
        state.maxiter = self.schedule.maxiter
        w_new, info = shf_step(
            self.problem, w, X, state, cfg, X_val=X_val, generator=self.generator, Y=Y, Y_val=Y_val,
            deadline=deadline, lr=lr,
        )  # fmt: skip
        self.set_weights(w_new)
        w = self.weights()
        # Keep the warm start where torch keeps per-parameter state (moved with the params).
        for i, p in enumerate(self._params):
            if state.d is None:
                self.state[p].pop("warm_start", None)
            else:
                self.state[p]["warm_start"] = state.d[i]
        t_val = time.perf_counter()
        if X_val is not None:
            # f_val,i <- f(w; X_val); after a full step the merit already computed exactly this.
            f_val = info.val_loss_new if info.val_loss_new is not None else self.problem.loss(w, X_val, Y_val)
            info.val_loss = f_val
        t_bs = time.perf_counter()
        usable = info.solver_best is not None and info.solver_stop != NOT_FINITE_BATCH
        n_hat, info.r_rel = self.batch_policy.update(
            info.val_loss, lambda: self.problem.jacobian(w, X, Y).per_example_gradient_stats(), bt.rows(X),
            self.train_size, info.solver_best if usable else None,
        )  # fmt: skip
        if n_hat is not None:
            info.n_hat = n_hat
        if info.val_loss is not None:
            # Beyond the paper (B11): the next curvature batch, grown after curvature_patience
            # iterations in which the validation loss stalled
            state.sampler.observe(info.val_loss, self.schedule.n_max)
        info.n_next, info.maxiter_next = self.schedule.n, self.schedule.maxiter
        if self._comm is not None:
            # The ranks replicate the scalar work; should it differ in a bit somewhere (processes on
            # different hardware or thread counts), say so now rather than hang in a collective.
            rows = state.sampler.size or 0
            decided = [info.solver_iterations, float(info.accepted), info.step, info.lam_next, info.n_next,
                       info.maxiter_next, float(rows)]  # fmt: skip
            if not self._comm.same_on_all_ranks(decided):
                raise ConfigError(
                    "the processes took different decisions in this HF iteration (the replicated "
                    "arithmetic differed): run every process on the same kind of hardware with the "
                    "same number of threads"
                )
        info.times["validation"] = t_bs - t_val
        info.times["batch_stats"] = time.perf_counter() - t_bs
        local = self._local_problem
        info.per_example = "hand-written" if self.fast_path else getattr(local, "per_example_path", None)
        info.regime = self.regime
        self.iterations += 1
        return info

    def _group_lr(self) -> float:
        """The step's scale ``lr`` (G9): the param groups' ``"lr"``, which must be one finite
        value >= 0 (SHF takes one step for all parameters; an LR scheduler sets every group)."""
        lrs = sorted({float(g.get("lr", 1.0)) for g in self.param_groups})
        if len(lrs) != 1:
            raise ConfigError(
                f"SHF takes one step for all parameters: the param groups' lr must be equal, got {lrs}"
            )
        if not (math.isfinite(lrs[0]) and lrs[0] >= 0.0):
            raise ConfigError(f"lr (the scale of SHF's step) must be finite and >= 0, got {lrs[0]}")
        return lrs[0]

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state dict (the warm start per parameter) plus Alg. 1's state
        under ``"shf"``: ``lambda``, ``gamma``, ``maxiter``, the batch schedule, the
        generator's state and the configuration."""
        sd = super().state_dict()
        sd["shf"] = {
            **self.hf_state.state_dict(warm_start=False),  # d: per parameter, in sd["state"]
            "schedule": self.schedule.state_dict(),
            "n_max": self.schedule.n_max,
            "generator": self.generator.get_state(),
            "train_size": self.train_size,
            "iterations": self.iterations,
            "config": dataclasses.asdict(self.config),
            "world_size": self.world_size,
            # the trained parameters' shapes and dtypes: a state for another architecture is refused
            "params": [[list(p.shape), _dtype_name(p.dtype)] for p in self._params],
        }
        return sd

    def _check_parameters(self, state_dict: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` unless the state dict was saved for parameters of the same
        number, shapes and dtypes as this optimizer's (else LSMR would fail deep inside the next
        step, on a warm start of another shape)."""
        saved: list[tuple[tuple[int, ...], str] | None]
        if "params" in state_dict["shf"]:
            saved = [
                (tuple(int(k) for k in shape), str(dtype)) for shape, dtype in state_dict["shf"]["params"]
            ]
        else:
            # Saved before shf recorded them: the number of parameters, and the warm starts' shapes.
            ids = [i for g in state_dict.get("param_groups", []) for i in g.get("params", [])]
            starts = [state_dict.get("state", {}).get(i, {}).get("warm_start") for i in ids]
            saved = [None if t is None else (tuple(t.shape), _dtype_name(t.dtype)) for t in starts]
        if len(saved) != len(self._params):
            raise ConfigError(
                f"the state dict is for {len(saved)} parameters but this model has {len(self._params)} "
                "(it was saved for another architecture)"
            )
        names = {id(p): n for n, p in self.model.named_parameters()}
        for i, (entry, p) in enumerate(zip(saved, self._params)):
            if entry is None:
                continue
            name = f"parameter {i}" + (f" ({names[id(p)]})" if id(p) in names else "")
            shape, dtype = entry
            if shape != tuple(p.shape):
                raise ConfigError(
                    f"{name} has shape {shape} in the state dict but {tuple(p.shape)} in this model "
                    "(it was saved for another architecture)"
                )
            if dtype != _dtype_name(p.dtype):
                saved_dtype = getattr(torch, dtype, None)
                fix = (
                    f": cast the model with model.{_cast(saved_dtype)} before loading"
                    if isinstance(saved_dtype, torch.dtype)
                    else ""
                )
                raise ConfigError(
                    f"{name} is {dtype} in the state dict but {_dtype_name(p.dtype)} in this model{fix}"
                )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the configuration must be the same, and the parameters
        of the same number, shapes and dtypes)."""
        if "shf" not in state_dict:
            raise ConfigError("not an SHF state dict (no 'shf' entry)")
        s = state_dict["shf"]
        saved_ranks = int(s.get("world_size", 1))
        if saved_ranks != self.world_size:
            raise ConfigError(
                f"the state was saved by a run on {saved_ranks} process(es) and this one has "
                f"{self.world_size}: resume with torchrun --nproc_per_node={saved_ranks}"
                if saved_ranks > 1
                else f"the state was saved by a single-process run and this one has {self.world_size} "
                "processes: resume it without torchrun"
            )
        self._check_parameters(state_dict)
        mine = dataclasses.asdict(self.config)
        # A hyper-parameter the saved state lacks was added to shf after it was saved: that run
        # behaved as the paper's setting (each option kept shf's behaviour when it was added).
        defaults = dataclasses.asdict(SHFConfig(**STORED_DEFAULTS))
        saved = {k: s["config"].get(k, defaults.get(k)) for k in set(mine) | set(s["config"])}
        if saved != mine:
            diff = sorted(k for k, v in saved.items() if mine.get(k) != v)
            raise ConfigError(f"the state dict was saved with other hyper-parameters ({', '.join(diff)})")
        super().load_state_dict(state_dict)
        for g in self.param_groups:
            g.setdefault("lr", 1.0)  # saved before SHF had an lr: the unscaled step
        self.schedule.load_state_dict(s["schedule"])
        self.schedule.n_max = int(s["n_max"])  # set by the training-set size it was saved with
        self.generator.set_state(cast(Tensor, s["generator"]).clone())
        self.train_size = s["train_size"]
        self.iterations = int(s["iterations"])
        # B16's weight cost reads the training-set size the state was saved with
        self.hf_state.objective = make_objective(
            self.config.weight_cost_rule, self.config.weight_cost, self._n_weights(), self.train_size
        )
        d = [self.state[p].get("warm_start") for p in self._params]
        warm = None if any(t is None for t in d) else cast(list[Tensor], d)
        self.hf_state.load_state_dict({**s, "d": warm})  # Alg. 1's state: one reader for it


class _DataKey:
    """The identity of a batch for :meth:`SHF.step`'s check: its tensors (weak references, so that
    a freed tensor's reused ``id`` never matches), their in-place versions, and the weights' dtype
    and device. Equal only for the same tensor objects, not written to since."""

    def __init__(self, tensors: list[Tensor], w: Sequence[Tensor]) -> None:
        self.refs = [weakref.ref(t) for t in tensors]
        self.versions = [t._version for t in tensors]
        self.weights = (w[0].dtype, w[0].device) if len(w) else None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _DataKey)
            and len(self.refs) == len(other.refs)
            and all(a() is not None and a() is b() for a, b in zip(self.refs, other.refs))
            and self.versions == other.versions
            and self.weights == other.weights
        )

    __hash__ = None  # type: ignore[assignment]


def _data_key(inputs: Inputs, targets: Tensor | None, w: Sequence[Tensor]) -> _DataKey | None:
    """:class:`_DataKey` of ``(inputs, targets)``, or None where they are not tensors (then the
    check runs, and raises its one-line error)."""
    if not bt.is_inputs(inputs) or not (targets is None or isinstance(targets, Tensor)):
        return None
    try:
        leaves = bt.leaves(inputs)
    except DataError:
        return None
    return _DataKey([t for _, t in leaves] + ([] if targets is None else [targets]), w)
