"""Benchmarks behind ``shf bench``: kernels, a whole HF iteration, and memory.

Benchmarks print and record numbers; nothing here asserts a timing. Every throughput
is reported next to a baseline measured in the same run (the matrix-product ceiling
on the same shapes, or the competing method), because the machine is shared and noisy.
"""
