"""What is rendered from result files: the leaderboard, its figures, the efficiency figures, the depth analysis.

Reads result files through :mod:`benchmarks.harness.results`; nothing below imports from here.
"""
