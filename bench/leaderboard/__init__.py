"""The leaderboard build: committed results and published numbers into `leaderboards/` pages and figures.

Imports everything below it; only `bench.cli` imports it.
"""
