"""Benchmarks: commands that print figures (run them all with benchmarks/run_all.py)."""
