"""Losses in least-squares form for :class:`shf.SHF` (defined in :mod:`shf.curvature.losses`)."""

from shf.curvature.losses import MSE, BCEWithLogits, CrossEntropy, Loss, LossPoint, Residual, get_loss

__all__ = ["MSE", "BCEWithLogits", "CrossEntropy", "Loss", "LossPoint", "Residual", "get_loss"]
