"""Benchmark tasks, harness and leaderboard of hacknip-ase (see benchmarks/tasks/README.md)."""
