"""Benchmarks for the lab: `python -m bench` (see bench/__main__.py)."""
