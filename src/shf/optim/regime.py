"""The full-batch regime (B17, beyond the paper): Levenberg-Marquardt where the data fit in one batch.

SHF's defaults are made for a stochastic problem: a mini-batch of a large training set, a
weight cost and a damping floor that regularise, a subsample of rows for the curvature, an
inexact solve stopped by a forcing term, Alg. 2's batch statistics. When the whole training set
is one batch, or the loss is a user's residual (a least-squares fit), none of that pays: the
weight cost moves the solution, the floor on ``lambda`` keeps the steps short of Gauss-Newton's
where LM converges fast, a truncated solve loses the directions of small singular values, and
the batch statistics are paid for a decision that cannot change. In the full-batch regime the
HF iteration is a plain, well-damped Levenberg-Marquardt step, solved by LSMR to round-off:

======================  ==========================  =========================================
setting                 full-batch regime           why
======================  ==========================  =========================================
``weight_cost``         0                           the certified solution is of the data loss
``lambda_min``          0                           Nielsen's rule takes ``lambda`` to 0 near
                                                    the solution (quadratic convergence)
``atol``                1e-15                       LSMR to round-off: every digit the data give
``forcing``             ``"none"``                  no truncated solve (a forcing term lost the
                                                    parameters of Lanczos3 and Eckerle4)
``preconditioner``      ``"none"``                  measured: Chapelle-Erhan lost digits on 4 of
                                                    6 NIST problems
``curvature_size``      none (all rows)             the curvature of the whole batch
``n_max_fraction``      none                        the batch is the whole set
``batch_schedule``      ``"fixed"``                 no Alg. 2: the batch cannot grow
``n1``, ``n_max``       ``N`` (when known)          every step sees every example
``roundoff``            1e-10                       B21: near the solution ``rho`` is noise;
                                                    the last Gauss-Newton steps are taken
``solver``              ``"direct"`` (at most 16    B20: the damped problem solved exactly by
                        weights, in one process)    QR where the Jacobian is formed anyway
                                                    (G16): no round-off of LSMR's stopping test
                                                    on an ill-conditioned fit, no iterations
``damping_rule``        ``"trust-region"`` with     B23: ``lambda`` chosen for a radius on the
                        the exact solve, unless a   scaled step, MINPACK's rule: it follows a
                        rule is named (else         Jacobian whose scale changes by orders of
                        Nielsen's, the default)     magnitude, where a rule on ``lambda`` lags
``preconditioner``      ``"column-norms"`` with     B18: the radius on ``||D d||``, ``D`` the
                        the trust region (else      largest column norms of ``J`` seen, so the
                        none)                       steps do not depend on the parameters' units
======================  ==========================  =========================================

A setting the user gave (a group field set to other than its default, or ``preconditioner``)
is kept, and so is any choice whose change would make a given setting ignored. A setting given
at its default value cannot be told from one not given: to keep a default of the stochastic
regime (``weight_cost = 1e-4``, say) in a full-batch fit, pass ``regime="stochastic"`` and set
the rest by hand. The regime is
chosen by :func:`choose`: ``auto`` (the default) is ``full-batch`` when the training set is
known and fits in the first batch, or the loss is a residual function and the user did not
set ``n1`` below ``N``; ``stochastic`` when the settings came as one :class:`SHFConfig` (the
paper's presets stay the paper's). ``StepInfo.regime`` says which one runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from shf.curvature.module import DENSE_WEIGHTS
from shf.errors import ConfigError, require_choice
from shf.optim.hyper import given_fields
from shf.optim.settings import Batch, Damping, Solver
from shf.optim.step import SHFConfig

REGIMES = ("auto", "stochastic", "full-batch")
"""``SHF(regime=...)``: choose by the data (``auto``), or force one."""

FULL_BATCH: dict[str, Any] = {
    "curvature_size": None,  # first: B7's rows need lambda_min > 0
    "weight_cost": 0.0,
    "lambda_min": 0.0,
    "atol": 1e-15,
    "forcing": "none",
    "preconditioner": "none",
    "n_max_fraction": None,
    "batch_schedule": "fixed",
    "roundoff": 1e-10,  # B21
}
"""The :class:`SHFConfig` values of the full-batch regime (besides ``n1 = n_max = N`` and
``solver``, :data:`DIRECT_WEIGHTS`)."""

EXACT: dict[str, Any] = {
    "damping_rule": "trust-region",  # B23
    "preconditioner": "column-norms",  # B18: the trust region on ||D d||, MINPACK's scaling
}
"""The full-batch regime's values with the exact solve (B20): MINPACK's Levenberg-Marquardt, a
trust region on the step scaled by the largest column norms of ``J`` seen (B23 with B18)."""

DIRECT_WEIGHTS = DENSE_WEIGHTS
"""The most weights for which the full-batch regime solves each step exactly (``solver =
"direct"``, B20): where the generic path forms the Jacobian (G16), so that the ``p`` products
forming the damped problem's matrix are matrix-vector products."""


def given_keys(
    groups: Iterable[tuple[type, Any]], preconditioner: str, default_preconditioner: str
) -> set[str]:
    """The :class:`SHFConfig` keys the user set: a group field given a value other than its
    default (:func:`shf.optim.hyper.given_fields`), and ``preconditioner`` when it is not the
    default."""
    keys = {key for _, _, key, _, _ in given_fields(groups)}
    return keys | {"preconditioner"} if preconditioner != default_preconditioner else keys


def first_groups(
    damping: Damping | None, batch: Batch | None, solver: Solver | None, given: set[str]
) -> tuple[Any, Any, Any]:
    """``damping``, ``batch`` and ``solver`` with the full-batch floor and curvature rows
    (:data:`FULL_BATCH`) where the user did not give them, before the groups are checked: a
    ``lambda1`` below the stochastic floor is the user's to give in this regime; B23's trust
    region, when given, with the exact solve it needs unless a solver was given. A group that is
    not one is returned as it is (:func:`shf.optim.hyper.to_config` refuses it)."""
    if "lambda_min" not in given and (damping is None or isinstance(damping, Damping)):
        damping = dataclasses.replace(damping or Damping(), lambda_min=FULL_BATCH["lambda_min"])
    if "curvature_size" not in given and (batch is None or isinstance(batch, Batch)):
        batch = dataclasses.replace(batch or Batch(), curvature_size=FULL_BATCH["curvature_size"])
    trust = isinstance(damping, Damping) and damping.rule == "trust-region"
    if trust and "solver" not in given and (solver is None or isinstance(solver, Solver)):
        solver = dataclasses.replace(solver or Solver(), kind="direct")
    return damping, batch, solver


def choose(
    regime: str, *, residual: bool, train_size: int | None, n1: int, given: set[str], one_config: bool
) -> str:
    """``stochastic`` or ``full-batch`` for ``SHF(regime=regime)`` (see the module docstring)."""
    require_choice("regime", regime, REGIMES)
    if regime != "auto":
        return regime
    if one_config:
        return "stochastic"
    if train_size is not None and train_size <= n1:
        return "full-batch"
    if residual and (train_size is None or "n1" not in given):
        return "full-batch"
    return "stochastic"


def _replaced(cfg: SHFConfig, values: dict[str, Any], given: set[str]) -> SHFConfig:
    """``cfg`` with each of ``values`` in turn where the key was not given, the result is valid and
    no given key becomes ignored."""
    out = cfg
    for key, value in values.items():
        if key in given:
            continue
        try:
            trial = dataclasses.replace(out, **{key: value})
        except ConfigError:  # e.g. lambda_min = 0 under a curvature_size the user gave
            continue
        if not set(trial.ignored()) & given:
            out = trial
    return out


def full_batch(
    cfg: SHFConfig, given: set[str], train_size: int | None, n_weights: int | None = None
) -> SHFConfig:
    """``cfg`` in the full-batch regime: :data:`FULL_BATCH`'s values for the keys the user did not
    give, and ``solver = "direct"`` with :data:`EXACT`'s trust region for a model of at most
    :data:`DIRECT_WEIGHTS` weights (``n_weights``; None: not known, e.g. data-parallel), unless one
    would make a given key ignored or conflict with one (then that key keeps its value)."""
    values = dict(FULL_BATCH)
    if n_weights is not None and n_weights <= DIRECT_WEIGHTS:
        values["solver"] = "direct"  # B20, after atol and forcing (which it then ignores)
    out = _replaced(cfg, values, given)
    if out.solver == "direct" and "damping_rule" not in given:
        # B23 with B18's scaling: only where the exact solve was chosen (or given)
        trust = _replaced(out, {"damping_rule": EXACT["damping_rule"]}, given)
        if trust.damping_rule == EXACT["damping_rule"]:
            out = _replaced(trust, {"preconditioner": EXACT["preconditioner"]}, given)
    if train_size is not None and not {"n1", "n_max"} & given:
        out = dataclasses.replace(out, n1=train_size, n_max=train_size)
    return out
