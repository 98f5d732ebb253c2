"""Curvature operators: Gauss-Newton products for the hand-written MLP (Alg. 4, 5) and any module."""

from shf.curvature.base import CurvatureModel, JacobianOperator
from shf.curvature.losses import MSE, BCEWithLogits, CrossEntropy, Loss, Residual, get_loss
from shf.curvature.mlp import AutoencoderJacobian, MLPJacobian
from shf.curvature.module import ModuleJacobian, ModuleProblem, check_module

__all__ = [
    "MSE",
    "AutoencoderJacobian",
    "BCEWithLogits",
    "CrossEntropy",
    "CurvatureModel",
    "JacobianOperator",
    "Loss",
    "MLPJacobian",
    "ModuleJacobian",
    "ModuleProblem",
    "Residual",
    "check_module",
    "get_loss",
]
