"""Runnable benchmarks: `python -m bench.bench_xxx`; each writes its section into docs/benchmarks.md."""
