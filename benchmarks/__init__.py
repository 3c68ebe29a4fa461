"""Benchmark scripts: each prints its figures (see the README)."""
