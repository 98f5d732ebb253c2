"""Classification beyond the paper (``model.task = "classify"``): an MLP, a small CNN or a
small transformer on USPS or MNIST-t10k digits, softmax cross-entropy, trained by SHF through
the generic products or by Adam/SGD, through the same loop as the paper's experiments.

The validation loss (cross-entropy) picks the best weights; the summary adds the
accuracies at those weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

from shf.config import ExperimentConfig
from shf.curvature.module import ModuleProblem
from shf.data.split import Split
from shf.errors import ConfigError
from shf.fit import Evaluate, SHFMethod
from shf.method import Method
from shf.models.classifier import RowTransformer, SmallCNN, mlp_classifier
from shf.optim.first_order import FirstOrder
from shf.optim.hf import MartensHF
from shf.optim.shf import SHF

METHODS = ("shf-lsmr", "shf-cg", "martens-hf", "adam", "sgd")


def build_classifier(
    cfg: ExperimentConfig, inputs: int, *, dtype: torch.dtype, device: torch.device
) -> nn.Module:
    """The ``[model]`` section's classifier, initialised by torch's defaults from ``run.seed``
    (so every method of a comparison starts from the same weights)."""
    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        model: nn.Module
        if m.arch == "mlp":
            model = mlp_classifier(inputs, m.hidden, m.classes)
        elif m.arch == "cnn":
            model = SmallCNN(inputs, m.classes, tuple(m.channels))
        else:
            model = RowTransformer(inputs, m.classes, m.hidden[0], len(m.hidden), m.heads)
    return model.to(dtype=dtype, device=device)


def classify_method(name: str, model: nn.Module, data: Split, cfg: ExperimentConfig) -> Method:
    """The optimiser ``name`` for a classifier, from the same initial weights for every method."""
    seed = cfg.run.seed

    def init(gen: torch.Generator) -> list[Tensor]:
        return [p.detach().clone() for p in model.parameters()]

    if name in ("shf-lsmr", "shf-cg"):
        opt_cfg = dataclasses.replace(cfg.optimizer, solver=name[4:])
        gen = torch.Generator().manual_seed(seed)
        opt = SHF(model, "cross_entropy", config=opt_cfg, train_size=data.train.shape[0], generator=gen)
        return SHFMethod(opt, data)
    problem = ModuleProblem(model, "cross_entropy")
    if name == "martens-hf":
        # Martens (2010) HF on the classifier's softmax cross-entropy (his CG, damping, backtracking).
        return MartensHF(problem, init, data, cfg.hf, seed)
    if name in ("adam", "sgd"):
        fo = dataclasses.replace(cfg.first_order, optimizer=name)

        def objective(w: list[Tensor], X: Tensor, Y: Tensor | None) -> Tensor:
            assert Y is not None
            return problem.loss_fn.at(problem.output(w, X, Y), Y).per_example().mean()

        return FirstOrder(objective, init, data, fo, seed)
    raise ConfigError(f"method {name!r} does not train classifiers here; choose from {', '.join(METHODS)}")


def cross_entropy_of(model: nn.Module) -> Evaluate:
    """The loop's ``evaluate``: mean softmax cross-entropy of the weights ``w``."""
    problem = ModuleProblem(model, "cross_entropy")
    return lambda w, X, Y: problem.loss(w, X, Y)


def accuracy_of(model: nn.Module) -> Callable[[list[Tensor], Tensor, Tensor], float]:
    """``(w, X, Y) ->`` the fraction of rows whose largest logit is the label."""
    problem = ModuleProblem(model, "cross_entropy")

    def accuracy(w: list[Tensor], X: Tensor, Y: Tensor) -> float:
        with torch.no_grad():
            hits = sum(
                int((problem.output(w, X[i : i + 4096], Y[i : i + 4096]).argmax(1) == Y[i : i + 4096]).sum())
                for i in range(0, X.shape[0], 4096)
            )
        return hits / X.shape[0]

    return accuracy
