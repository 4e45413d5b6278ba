"""Benchmarks: never part of `make test`; run with `make bench`."""
