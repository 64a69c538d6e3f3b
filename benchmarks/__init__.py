"""Benchmarks: runnable scripts that print tables with ratios against peers measured in the same run.

Run all with ``make bench`` (``python -m benchmarks``), or one with
``python -m benchmarks.bench_handoff``. Never part of ``make test``.
"""
