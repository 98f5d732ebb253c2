"""Optimizers: one HF step of SHF-LSMR (Alg. 1) as a function."""

from shf.optim.step import SHFConfig, SHFState, StepInfo, shf_step

__all__ = ["SHFConfig", "SHFState", "StepInfo", "shf_step"]
