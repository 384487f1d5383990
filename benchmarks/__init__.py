"""Benchmarks: each is ``./scripts/bench NAME`` and prints its numbers next to a baseline."""
