"""Curvature operators for any ``torch.nn.Module``, built with ``torch.func``.

For a model ``g(w; x)``, a loss in least-squares form (:mod:`shf.curvature.losses`)
and a batch ``(X, Y)`` of ``n`` examples, :class:`ModuleJacobian` is the operator

    A = (1/sqrt(n)) B^T J,     J = d g(w; X) / d w,

with ``A^T A`` the Gauss-Newton matrix of ``f(w) = (1/n) sum_i l(g(w; x_i), y_i)``, the
residual ``R`` (``A^T R = grad f``), the loss and the gradient: the same protocol as the
hand-written autoencoder operator (:mod:`shf.curvature.mlp`), so the solvers, the
preconditioners and the HF step work on any model.

* forward mode ``A d``: ``torch.func.jvp`` of the model in its parameters, which
  recomputes the forward pass with every tangent. From the :data:`LINEARIZE_AFTER`-th
  product of an HF iteration on (when the solve is long enough to pay for a trace),
  ``torch.func.linearize`` traces the tangent map once and replays it without the
  forward pass (2-3x faster per product). Its replay is wrong for in-place activations
  such as ``sigmoid_`` from the second call on, so the trace is used only after two
  replays equal ``jvp``'s result for the same tangent; otherwise (or if tracing fails)
  ``jvp`` stays (deviation G5 in docs/deviations.md);
* reverse mode ``A^T u``: the ``torch.func.vjp`` closure of one forward pass per HF
  iteration, reused by every product;
* per-example quantities (Chapelle-Erhan's ``sum_i (J_i^T B_i u_i)^2``, the per-example
  gradients' sum of squares for Martens' preconditioner and Alg. 2):
  ``torch.func.vmap`` over ``torch.func.grad`` of one example's output, in chunks of
  examples so that at most :data:`PER_EXAMPLE_BUDGET` numbers are held at once.

What it cannot handle, refused with a clear error by :func:`check_module`: layers whose
output for one example depends on the others (BatchNorm in training mode) and random
layers in training mode (Dropout), since a Gauss-Newton product must be the same linear
map at every call. Put the model in ``eval()`` mode or replace those layers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from shf import batch as bt
from shf import tensorlist as tl
from shf.batch import Inputs
from shf.curvature import chain
from shf.curvature import per_example as layer_rules
from shf.curvature.losses import Loss, LossPoint, Residual, chunked_mean, finite_or_inf, get_loss
from shf.errors import ConfigError, DataError
from shf.tensorlist import Vec

log = logging.getLogger(__name__)

PER_EXAMPLE_BUDGET = 1 << 24
"""Numbers of per-example gradients held at once (64 MiB in float32): the chunk of
examples processed by one ``vmap`` call is ``max(1, PER_EXAMPLE_BUDGET // n_params)``."""

FORWARD_MODES = ("auto", "layers", "jvp", "linearize", "double-backward", "dense")
"""How ``A d`` is made (:attr:`ModuleProblem.forward_mode`): ``layers``, per-layer rules on the
activations of the HF iteration's one forward pass (:mod:`shf.curvature.chain`; a chain of known
layers only); ``jvp``, ``torch.func.jvp`` per product (a forward pass each), switching to a
checked ``linearize`` trace after :data:`LINEARIZE_AFTER` products; ``linearize``, the trace from
the first product; ``double-backward``, the graph of ``J^T u`` built once per HF iteration and
differentiated in ``u`` per product (the fastest on a transformer, the slowest on a CNN:
``docs/results/bench/forward-modes.md``); ``dense`` (beyond the paper, G16), the Jacobian ``J``
formed once per HF iteration by ``torch.func.jacfwd`` (or ``jacrev`` where the outputs are fewer
than the weights), every product then a matrix-vector product and the per-example statistics
read from its rows: for models with a handful of weights, where each ``jvp`` costs
milliseconds of overhead and LSMR needs few iterations; ``auto``: ``layers`` where the model has
a plan, ``dense`` where the model has at most :data:`DENSE_WEIGHTS` weights, else ``jvp``."""

DENSE_WEIGHTS = 16
"""The most trained weights for which ``auto`` forms ``J`` (``dense``): a parametric model
(``docs/results/least-squares``); above it a network's products stay matrix-free."""

DENSE_BUDGET = 1 << 22
"""The most entries ``J`` may have for ``dense`` (32 MiB in float64); a larger batch uses ``jvp``."""

DENSE_REVERSE_ROWS = 256
"""``dense`` forms ``J`` in reverse mode (``jacrev``: a ``vmap`` of ``vjp`` over the outputs) where
the model has at most this many outputs, else in forward mode (``jacfwd``, over the weights)
unless the weights outnumber the outputs. Measured on NIST's models (one thread, float64): with
2-9 weights and 14-168 outputs ``jacrev`` took 0.84-3.3 ms against ``jacfwd``'s 1.4-7.1 ms
(forward-mode derivatives of ``exp``, ``pow`` and division go through slower decompositions),
but with 1,680 outputs 237 ms against 11 ms (its cost grows with the outputs squared)."""

LINEARIZE_AFTER = 8
"""Forward-mode products per HF iteration made by ``jvp`` before ``linearize`` is tried:
a trace costs about as much as 5-10 products, so short solves never pay for it."""

EVAL_CHUNK = 8192
"""Rows per forward pass when a loss is evaluated over a large set (validation merit)."""


@contextlib.contextmanager
def math_kernels(rnn: bool) -> Iterator[None]:
    """Fused kernels that have no forward-mode derivative (or no ``vmap`` rule) switched to
    their math paths while shf's products run: scaled dot-product attention's math backend
    (the flash kernel for CPU has no forward AD), no ``nn.MultiheadAttention`` /
    ``nn.TransformerEncoderLayer`` fast path (``aten::_transformer_encoder_layer_fwd`` has
    none), and with ``rnn`` (the model holds an ``nn.LSTM``/``nn.GRU``/``nn.RNN``) no oneDNN
    (its ``mkldnn_rnn_layer`` has none; off only then, since it also speeds up convolutions).
    The same numbers up to round-off: these are other kernels for the same functions.

    Entered again inside itself (``jacrev`` calling the model), it does nothing: the switches
    cost about as much as a tiny model's forward pass, and an HF iteration enters it several
    times."""
    if _KERNELS.depth > 0 and (_KERNELS.rnn or not rnn):
        yield  # already switched (the outer entry restores them)
        return
    outer_rnn = _KERNELS.rnn
    _KERNELS.depth, _KERNELS.rnn = _KERNELS.depth + 1, rnn
    try:
        with _math_switches(rnn):
            yield
    finally:
        _KERNELS.depth, _KERNELS.rnn = _KERNELS.depth - 1, outer_rnn


class _KernelDepth(threading.local):
    """How deep :func:`math_kernels` is entered in this thread, and whether with ``rnn``."""

    depth = 0
    rnn = False


_KERNELS = _KernelDepth()


@contextlib.contextmanager
def _math_switches(rnn: bool) -> Iterator[None]:
    """:func:`math_kernels`' switches, set and restored."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
            if rnn:
                stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def _not_one_tensor(z: object) -> ConfigError:
    """The error for a model whose output is not one tensor while the loss needs one."""
    return ConfigError(
        f"the model returns a {type(z).__name__}, not one tensor: give a residual function "
        "loss=lambda out, y: ... that picks the output to fit (e.g. out[0] - y), or return one tensor"
    )


def check_module(model: nn.Module) -> None:
    """Raise :class:`ConfigError` for layers the Gauss-Newton products cannot treat."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"SHF needs a torch.nn.Module, got {type(model).__name__}")
    for name, m in model.named_modules():
        where = f"layer {name!r} ({type(m).__name__})" if name else type(m).__name__
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats):
            raise ConfigError(
                f"{where} is in training mode or keeps no running statistics: its output for one "
                "example depends on the whole batch, which per-example curvature cannot represent; "
                "call model.eval() to use its running statistics, or use GroupNorm/LayerNorm"
            )
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise ConfigError(
                f"{where} is in training mode: a random layer changes the Jacobian at every product; "
                "call model.eval() or remove it"
            )


class ModuleProblem:
    """A model, a loss and the parameters SHF trains: what the HF step needs, for any module.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs (first dimension = examples)
            to outputs.
        loss: a :class:`~shf.curvature.losses.Loss`, its name, or a residual function.
        params: the parameters to train (default: all that require grad), each a
            parameter of ``model``; the others are held fixed.
        forward_mode: how the products ``A d`` are made, one of :data:`FORWARD_MODES`
            (``layers`` on a model without a plan falls back to ``jvp``).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: str | Loss | Any = "mse",
        params: Sequence[Tensor] | None = None,
        *,
        forward_mode: str = "auto",
    ) -> None:
        check_module(model)
        if forward_mode not in FORWARD_MODES:
            raise ConfigError(f"forward_mode must be one of {', '.join(FORWARD_MODES)}, got {forward_mode!r}")
        self.model = model
        self.loss_fn = get_loss(loss)
        named = list(model.named_parameters())
        by_id = {id(p): name for name, p in named}
        chosen = list(params) if params is not None else [p for _, p in named if p.requires_grad]
        if not chosen:
            raise ConfigError(
                "the model has no parameter to train (none requires grad); "
                "set requires_grad=True on the parameters SHF should optimise"
            )
        for p in chosen:
            if id(p) not in by_id:
                raise ConfigError("a parameter given to SHF is not a parameter of the model")
        self.names = [by_id[id(p)] for p in chosen]
        if len(set(self.names)) != len(self.names):
            raise ConfigError("a parameter was given to SHF twice")
        self._trained = set(self.names)
        self.n_params = sum(p.numel() for p in chosen)
        # Per-example statistics from the layers' rules where every trained parameter has one
        # (shf.curvature.per_example), else vmap; per_example_path says which ran last.
        self.layer_plan = layer_rules.plan(model, self.names)
        self._rnn = any(isinstance(m, nn.RNNBase) for m in model.modules())
        self.per_example_path: str | None = None
        # Forward-mode products by per-layer rules where the model is a chain of known layers
        # and the loss reads the output as it is (shf.curvature.chain).
        self.chain_plan = None if isinstance(self.loss_fn, Residual) else chain.plan(model, self.names)
        self.forward_mode = forward_mode
        self.dense_failed = False  # set when J could not be formed (dense falls back to jvp)

    def _state(self, w: Sequence[Tensor]) -> dict[str, Tensor]:
        # The parameters not trained are read from the model at every call (it may have
        # been moved or cast since), the trained ones are w.
        state = {n: p.detach() for n, p in self.model.named_parameters() if n not in self._trained}
        state.update(zip(self.names, w))
        state.update(dict(self.model.named_buffers()))
        return state

    def output(self, w: Sequence[Tensor], X: Inputs, Y: Tensor) -> Tensor:
        """What the loss sees: ``transform(g(w; X), Y)`` (the model output for built-in losses)."""
        with math_kernels(self._rnn):
            z = torch.func.functional_call(self.model, self._state(w), (X,))
        if not isinstance(z, Tensor) and not isinstance(self.loss_fn, Residual):
            raise _not_one_tensor(z)
        return self.loss_fn.transform(z, Y)

    def jacobian(self, w: list[Tensor], X: Inputs, Y: Tensor | None = None) -> ModuleJacobian:
        """``A = B^T J / sqrt(n)`` at ``(w, X, Y)`` (``Y = None``: reconstruct ``X``)."""
        return ModuleJacobian(self, w, X, _targets(X, Y))

    def loss(self, w: Sequence[Tensor], X: Inputs, Y: Tensor | None = None) -> float:
        """``f(w; X, Y) = (1/n) sum_i l_i`` in chunks of rows, float64 sums; ``inf`` on overflow."""

        def term(Xc: Inputs, Yc: Tensor) -> float:
            return self.loss_fn.at(self.output(w, Xc, Yc), Yc).total()

        return chunked_mean(term, X, _targets(X, Y), EVAL_CHUNK)

    def check_batch(self, w: Sequence[Tensor], X: Inputs, Y: Tensor | None) -> None:
        """Raise a clear error unless ``(X, Y)`` fits the model and the loss.

        The model runs on two rows to learn its output shape; the targets are checked
        whole (shape, dtype, label range). ``X`` is a tensor or a dict of tensors
        (:mod:`shf.batch`), whose rows are the examples.
        """
        if not bt.is_inputs(X):
            raise DataError(f"inputs must be a torch.Tensor or a dict of tensors, got {type(X).__name__}")
        Y = _targets(X, Y)
        if not isinstance(Y, Tensor):
            raise DataError(f"targets must be a torch.Tensor, got {type(Y).__name__}")
        named = [*(("inputs" + k, t) for k, t in bt.leaves(X)), ("targets", Y)]
        for name, t in named:
            if t.dim() == 0 or t.shape[0] == 0:
                raise DataError(
                    f"{name} must have at least one row (examples first), got shape {tuple(t.shape)}"
                )
        n = bt.rows(X)
        if n != Y.shape[0]:
            raise DataError(f"inputs have {n} rows but targets have {Y.shape[0]}")
        device = w[0].device if len(w) else bt.device(X)
        for name, t in named:
            if t.device != device:
                raise DataError(f"{name} are on {t.device} but the model's parameters on {device}")
        with torch.no_grad(), math_kernels(self._rnn):
            z = torch.func.functional_call(self.model, self._state(w), (bt.take(X, slice(0, 2)),))
            if isinstance(self.loss_fn, Residual):  # any output the residual function takes
                self.loss_fn.transform(z, Y[:2])
                return
            if not isinstance(z, Tensor):
                raise _not_one_tensor(z)
            if z.dim() == 0 or z.shape[0] != min(2, n):
                raise ConfigError(
                    "the model must return a tensor with one row per input row, got "
                    f"{getattr(z, 'shape', type(z).__name__)}"
                )
            self.loss_fn.check(tuple(z.shape[1:]), Y)
            self.loss_fn.transform(z, Y[:2])

    def per_example_products(
        self, w: Sequence[Tensor], X: Inputs, Y: Tensor, V: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """``(sum_i J_i^T v_i, sum_i (J_i^T v_i)^2)`` for output-space cotangents ``V`` (row ``i`` = ``v_i``).

        ``J_i^T v_i`` is the gradient of ``<g(w; x_i), v_i>`` for one example, batched
        with ``vmap`` over chunks of examples (no Python loop over examples).
        """
        w = [t.detach() for t in w]
        if self.layer_plan is not None:
            wr = [t.detach().requires_grad_(True) for t in w]
            with torch.enable_grad():
                got = layer_rules.products(self.model, self.layer_plan, lambda: self.output(wr, X, Y), V, w)
            if got is not None:
                self.per_example_path = "layers"
                return got
            self.layer_plan = None  # a layer did not run once per forward pass: vmap from now on
        if self.per_example_path != "loop":
            self.per_example_path = "vmap"

        def one(ws: tuple[Tensor, ...], x: Inputs, y: Tensor, v: Tensor) -> Tensor:
            out = self.output(ws, bt.apply(lambda t: t.unsqueeze(0), x), y.unsqueeze(0))
            return (out * v.unsqueeze(0)).sum()

        n = bt.rows(X)
        total = [torch.zeros_like(t) for t in w]
        sumsq = [torch.zeros_like(t) for t in w]
        if self.per_example_path == "vmap":
            per_example = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0, 0))
            chunk = max(1, min(n, PER_EXAMPLE_BUDGET // max(1, self.n_params)))
            try:
                for start in range(0, n, chunk):
                    sl = slice(start, start + chunk)
                    grads = per_example(tuple(w), bt.take(X, sl), Y[sl], V[sl])
                    for t, s, g in zip(total, sumsq, grads):
                        t.add_(g.sum(dim=0))
                        s.add_((g * g).sum(dim=0))
                return total, sumsq
            except (RuntimeError, NotImplementedError) as e:
                # e.g. nn.LSTM/nn.GRU, whose in-place hidden-state updates have no batching rule
                log.warning("per-example statistics: vmap failed (%s); one example at a time from now on",
                            str(e).splitlines()[0])
                for t, s in zip(total, sumsq):
                    t.zero_()
                    s.zero_()
        # The last resort, for any model whose examples are independent: one example at a time.
        self.per_example_path = "loop"
        gradient = torch.func.grad(one)
        for i in range(n):
            for t, s, g in zip(total, sumsq, gradient(tuple(w), bt.take(X, i), Y[i], V[i])):
                t.add_(g)
                s.add_(g * g)
        return total, sumsq


def _targets(X: Inputs, Y: Tensor | None) -> Tensor:
    """``Y``, or ``X`` itself when ``Y`` is None (reconstruct the inputs; a tensor only)."""
    if Y is not None:
        return Y
    if not isinstance(X, Tensor):
        raise DataError("the inputs are a dict, which a model cannot reconstruct: give the targets")
    return X


def _autograd_vjp(z: Tensor, w: list[Tensor]) -> Callable[[Tensor], tuple[Tensor, ...]]:
    """``v -> J^T v`` of the graph from the leaves ``w`` to ``z`` (kept for every call); a
    parameter the output does not depend on gets zeros."""

    def vjp(v: Tensor) -> tuple[Tensor, ...]:
        if not z.requires_grad:  # no trained parameter reaches the output
            return tuple(torch.zeros_like(t) for t in w)
        grads = torch.autograd.grad(z, w, v, retain_graph=True, allow_unused=True)
        return tuple(torch.zeros_like(t) if g is None else g for t, g in zip(w, grads))

    return vjp


class ModuleJacobian:
    """``A = B^T J / sqrt(n)`` of a module at fixed ``(w, X, Y)``, with ``R``, ``f`` and ``grad f``.

    Implements :class:`shf.curvature.base.JacobianOperator` and the per-example
    statistics the preconditioners and Alg. 2 use.
    """

    def __init__(self, problem: ModuleProblem, w: Sequence[Tensor], X: Inputs, Y: Tensor) -> None:
        self.problem = problem
        self.w = [t.detach() for t in w]
        self.X, self.Y = X, Y
        self.n = bt.rows(X)
        self.scale = 1.0 / math.sqrt(self.n)
        # One forward pass with its reverse-mode closure per HF iteration.
        self._chain: chain.ChainForward | None = None
        self._calls: layer_rules.Calls | None = None
        plan = problem.chain_plan
        if plan is not None and problem.forward_mode in ("auto", "layers"):
            # The layers keep what their forward-mode rules need during this same pass, and what
            # the per-example rules need (so the preconditioner and Alg. 2 run no forward pass).
            wr = [t.detach().requires_grad_(True) for t in self.w]
            layer_plan = problem.layer_plan
            recorder = layer_rules.Recorder(problem.model, layer_plan) if layer_plan is not None else None
            with torch.enable_grad(), recorder or contextlib.nullcontext():
                self._chain = chain.ChainForward(plan, lambda: problem.output(wr, X, Y))
            self._calls = recorder.calls() if recorder is not None else None
            z = self._z = self._chain.output
            self._vjp = _autograd_vjp(z, wr)
        elif self._dense_wanted(problem):
            # J once per HF iteration (G16): every product a matrix-vector product
            z = self._fn(*self.w)
            self._J = self._dense_jacobian(z)
            if self._J is None:  # jacfwd/jacrev failed on this model: matrix-free from now on
                problem.forward_mode = "jvp" if problem.forward_mode == "dense" else problem.forward_mode
                problem.dense_failed = True
                z, self._vjp = torch.func.vjp(self._fn, *self.w)[:2]
            else:
                self._vjp = self._dense_vjp
        elif problem.forward_mode == "double-backward":
            # J^T u as a differentiable graph in u, built once per HF iteration; J d is its
            # derivative in u, one backward pass of that graph per product (docs/results/bench/
            # forward-modes.md: the fastest where no per-layer rule applies, on a transformer)
            wr = [t.detach().requires_grad_(True) for t in self.w]
            with torch.enable_grad():
                z = problem.output(wr, X, Y)
                self._vjp = _autograd_vjp(z, wr)
                self._u0 = torch.zeros_like(z, requires_grad=z.requires_grad)
                grads: Sequence[Tensor | None] = [None] * len(wr)  # no trained parameter is used
                if z.requires_grad:
                    grads = torch.autograd.grad(z, wr, self._u0, create_graph=True, allow_unused=True)
            # a parameter the output does not depend on has a zero column of J: left out
            self._used = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            self._jtu = [cast(Tensor, grads[i]) for i in self._used]
        else:
            z, self._vjp = torch.func.vjp(self._fn, *self.w)[:2]
        self._zshape = z.shape
        self.point: LossPoint = problem.loss_fn.at(z.detach(), Y)
        # R = r / sqrt(n) with B r = dl/dz, so A^T R = J^T dl/dz / n = grad f
        self._R = self.point.residual * self.scale
        self._loss = finite_or_inf(self.point.total() / self.n)
        self._matvecs = 0
        self._linear: Callable[..., Tensor] | None = None  # the checked linearize trace, if any

    _J: Tensor | None = None  # the dense Jacobian (rows: output entries, columns: weights)
    _A: Tensor | None = None  # A = B^T J / sqrt(n) from it (dense(), formed when first asked)

    def _dense_wanted(self, problem: ModuleProblem) -> bool:
        """Whether this operator forms ``J`` (``dense``, or ``auto`` on a small model)."""
        if problem.dense_failed:
            return False
        if problem.forward_mode == "dense":
            return True
        return problem.forward_mode == "auto" and problem.n_params <= DENSE_WEIGHTS

    def _dense_jacobian(self, z: Tensor) -> Tensor | None:
        """``J`` as a ``(z.numel(), n_params)`` matrix, or None where the model cannot be
        differentiated under ``vmap`` or ``J`` would exceed :data:`DENSE_BUDGET` entries."""
        if z.numel() * self.problem.n_params > DENSE_BUDGET:
            return None
        argnums = tuple(range(len(self.w)))
        # reverse mode for few outputs (measured, DENSE_REVERSE_ROWS), else the cheaper side
        reverse = z.numel() <= DENSE_REVERSE_ROWS or self.problem.n_params > z.numel()
        jac = torch.func.jacrev if reverse else torch.func.jacfwd
        try:
            with math_kernels(self.problem._rnn):
                blocks = jac(self._fn, argnums=argnums)(*self.w)
        except Exception as e:  # any vmap or tracing failure: the matrix-free products are right
            log.info("dense Jacobian not used (%s); matrix-free products from now on", str(e).splitlines()[0])
            return None
        return torch.cat([b.reshape(z.numel(), -1) for b in blocks], dim=1)

    def _dense_vjp(self, v: Tensor) -> tuple[Tensor, ...]:
        """``J^T v`` from the dense Jacobian, as one tensor per weight tensor."""
        assert self._J is not None
        return tuple(tl.unflatten(self._J.T @ v.reshape(-1), self.w))

    def _fn(self, *w: Tensor) -> Tensor:
        return self.problem.output(w, self.X, self.Y)

    @property
    def residual(self) -> Tensor:
        """``R`` with ``A^T R = grad f``."""
        return self._R

    @property
    def loss(self) -> float:
        """``f(w; X, Y) = (1/n) sum_i l_i``."""
        return self._loss

    def matvec(self, d: Vec) -> Vec:
        """Forward mode ``d -> B^T (J d) / sqrt(n)``; a new tensor."""
        assert isinstance(d, list)
        self._matvecs += 1
        if self._chain is not None:
            jd = self._chain(self.w, d)
        elif self._J is not None:
            jd = (self._J @ tl.flatten(d)).reshape(self._zshape)
        elif self.problem.forward_mode == "double-backward":
            jd = self._double_backward(d)
        elif self._linear is not None:
            jd = self._linear(*d)
        else:
            jd = torch.func.jvp(self._fn, tuple(self.w), tuple(d))[1]
            first = 1 if self.problem.forward_mode == "linearize" else LINEARIZE_AFTER
            if self._matvecs == first:
                self._linear = self._checked_linearization(d, jd)
        return self.point.bt(jd).mul_(self.scale)  # bt returns jd itself or a new tensor

    def dense(self) -> Tensor | None:
        """``A`` as a matrix (rows: the entries of ``R``, columns: the weights, flattened) where
        the Jacobian is formed (G16), else None: ``B^T J / sqrt(n)``, column by column."""
        if self._J is None:
            return None
        if self._A is None:  # formed once per operator (the exact solve, B23 and B18 read it)
            J = self._J
            cols = [self.point.bt(J[:, j].reshape(self._zshape)).reshape(-1) for j in range(J.shape[1])]
            self._A = torch.stack(cols, dim=1).mul_(self.scale)
        return self._A

    def second_derivative(self, d: list[Tensor]) -> Tensor:
        """``B^T z''[d, d] / sqrt(n)``: the output's second derivative along ``d``,
        ``d^2/dt^2 z(w + t d)`` at ``t = 0``, in the range of ``A`` (forward over forward mode);
        for a least-squares residual, the residuals' (B22's geodesic acceleration)."""
        dd = tuple(d)

        def along(*ws: Tensor) -> Tensor:
            jd: Tensor = torch.func.jvp(self._fn, ws, dd)[1]  # J(ws) d
            return jd

        zdd: Tensor = torch.func.jvp(along, tuple(self.w), dd)[1]  # d/dt J(w + t d) d = z''[d, d]
        out: Tensor = self.point.bt(zdd).mul_(self.scale)
        return out

    def _double_backward(self, d: list[Tensor]) -> Tensor:
        """``J d = d/du <J^T u, d>``: the derivative of the graph of ``J^T u`` in ``u``."""
        if not self._used:
            return torch.zeros_like(self._u0)
        with torch.enable_grad():
            (jd,) = torch.autograd.grad(
                self._jtu, self._u0, [d[i] for i in self._used], retain_graph=True, allow_unused=True
            )
        return torch.zeros_like(self._u0) if jd is None else jd.detach()

    @property
    def linearized(self) -> bool:
        """Whether forward mode now replays a checked ``linearize`` trace."""
        return self._linear is not None

    @property
    def forward_path(self) -> str:
        """How the last ``A d`` was made: ``layers``, ``linearize``, ``jvp`` or ``double-backward``."""
        if self._chain is not None:
            return "layers"
        if self._J is not None:
            return "dense"
        if self.problem.forward_mode == "double-backward":
            return "double-backward"
        return "linearize" if self._linear is not None else "jvp"

    def _checked_linearization(self, d: list[Tensor], jd: Tensor) -> Callable[..., Tensor] | None:
        """``torch.func.linearize``'s tangent map if two of its replays equal ``jd`` (``jvp``'s
        ``J d``) to round-off, else None (with a debug log line saying why)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # const folding warns about its own graph
                linear = torch.func.linearize(self._fn, *self.w)[1]
                first, second = linear(*d), linear(*d)
        except Exception as e:  # any tracing failure: keep jvp, which is always right
            log.debug("linearize not used: %s", e)
            return None
        # Same operations in another order: equal to a few ulps of the largest entry.
        tol = 100 * torch.finfo(jd.dtype).eps * max(float(jd.abs().max()), 1e-30)
        for replay in (first, second):
            if replay.shape != jd.shape or float((replay - jd).abs().max()) > tol:
                log.debug("linearize not used: its replay differs from jvp (in-place operations?)")
                return None
        return linear

    def rmatvec(self, U: Vec) -> Vec:
        """Reverse mode ``U -> J^T (B U) / sqrt(n)``; new tensors."""
        assert isinstance(U, Tensor)
        v = self.point.b(U)
        v = v * self.scale  # a new tensor: U is the caller's
        return list(self._vjp(v))

    def gradient(self) -> list[Tensor]:
        """``grad f = J^T (dl/dz) / n`` (eq. 6), from the loss derivative directly."""
        return list(self._vjp(self.point.grad_z / self.n))

    def range_norm(self, U: Vec) -> float:
        """``||U||_F`` (a single process holds the whole batch)."""
        return tl.norm(U)

    def _per_example(self, V: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``(sum_i J_i^T v_i, sum_i (J_i^T v_i)^2)``: from this operator's own forward pass where
        it recorded the layers' inputs and outputs, else by :meth:`ModuleProblem.per_example_products`."""
        plan = self.problem.layer_plan
        if self._J is not None:
            # each example's rows of J: J_i^T v_i for all examples at once
            self.problem.per_example_path = "dense"
            rows = self._J.reshape(self.n, -1, self._J.shape[1])
            per = torch.einsum("nkp,nk->np", rows, V.reshape(self.n, -1))
            return tl.unflatten(per.sum(dim=0), self.w), tl.unflatten((per * per).sum(dim=0), self.w)
        if self._calls is not None and plan is not None:
            self.problem.per_example_path = "layers"
            model = self.problem.model
            return layer_rules.sums(model, plan, self._z, self._calls, V, self.w, retain_graph=True)
        return self.problem.per_example_products(self.w, self.X, self.Y, V)

    def per_example_sumsq(self, U: Tensor) -> list[Tensor]:
        """``sum_i (J_i^T B_i u_i)^2`` for range-space rows ``u_i`` (no ``1/n``)."""
        return self._per_example(self.point.b(U))[1]

    def per_example_gradient_stats(self) -> tuple[list[Tensor], list[Tensor]]:
        """``(grad f_S, sum_i (grad l_i)^2)`` with ``grad l_i = J_i^T dl/dz_i`` (Alg. 2, Martens)."""
        total, sumsq = self._per_example(self.point.grad_z)
        return [t.div_(self.n) for t in total], sumsq


def curvature_model(
    model: nn.Module,
    loss: str | Loss | Any | None = None,
    params: Sequence[Tensor] | None = None,
    *,
    generic: bool = False,
    forward_mode: str = "auto",
) -> Any:
    """What SHF trains ``model`` through: the model itself when it provides hand-written
    products for this loss and these parameters (the fast path, e.g.
    :class:`shf.models.Autoencoder` with its own loss), else a :class:`ModuleProblem`
    (``torch.func``, any module). ``generic=True`` forces the ``torch.func`` path.
    ``forward_mode``: :attr:`ModuleProblem.forward_mode` (one of :data:`FORWARD_MODES`); a mode
    other than ``auto`` is refused on the hand-written path, which has its own products.

    ``loss=None`` means the model's own loss (its ``loss_name``) where the model has one,
    else ``mse``. A generic loss applies to the module's output: for the autoencoder that is
    the logistic reconstruction, not logits, so ``"bce"`` there would apply the sigmoid twice.
    """
    check_module(model)
    own = getattr(model, "loss_name", None)
    fast = (
        not generic
        and callable(getattr(model, "jacobian", None))
        and callable(getattr(model, "check_batch", None))
        and (loss is None or (isinstance(loss, str) and get_loss(loss).name == _FAST_LOSS.get(str(own))))
    )
    if fast:
        mine = list(model.parameters())
        chosen = mine if params is None else list(params)
        same = len(chosen) == len(mine) and all(a is b for a, b in zip(chosen, mine))
        if same and all(p.requires_grad for p in mine):
            if forward_mode != "auto":
                raise ConfigError(
                    f"forward_mode={forward_mode!r} is for the generic products, but this model uses its "
                    "hand-written ones: leave forward_mode at 'auto', or pass generic=True"
                )
            return model
    if loss is None and own is not None:
        generic_loss = _FAST_LOSS.get(str(own))
        if generic_loss is None:
            raise ConfigError(
                f"the model's own loss {own!r} has only hand-written products, which need all of the "
                "model's parameters (trainable) and generic=False; give another loss explicitly"
            )
        loss = generic_loss
    return ModuleProblem(model, "mse" if loss is None else loss, params, forward_mode=forward_mode)


_FAST_LOSS = {"squared": "mse"}
"""The generic loss name that a fast-path model's own loss equals."""
