"""Krylov solvers on the weight space: LSMR (Alg. 6) and CG."""
