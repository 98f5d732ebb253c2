"""Curvature operators: Jacobian products of the residual (Alg. 4, 5)."""

from shf.curvature.base import JacobianOperator
from shf.curvature.mlp import AutoencoderJacobian

__all__ = ["AutoencoderJacobian", "JacobianOperator"]
