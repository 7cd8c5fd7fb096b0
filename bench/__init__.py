"""Benchmarks (not timed tests): `make bench` runs bench.run and records results."""
