"""Benchmarks: scripts that train, time and compare (never imported by the library itself)."""
