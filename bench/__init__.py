"""Fabula's benchmarks: the end-to-end book time, per-service latency and throughput, and the GPU harness.

Run them as scripts from the repository root (`python bench/book.py --latency`); results and their meaning
are written up in docs/benchmarks.md. Nothing in the product imports this package.
"""
