"""Operator benchmarks: reconcile latency, throughput at 1,000 MLModels, steady-state writes."""
