"""Benchmarks: `make bench`. They print tables; results are recorded in docs/benchmarks.md."""
