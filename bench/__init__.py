"""Benchmarks, run from the repository root as modules (``python -m bench.bench_throughput``,
``python -m bench.bench_kmod``) so that they import ``lab`` and ``vnet`` from this checkout;
see README.md.  Not installed."""
