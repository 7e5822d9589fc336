"""Summaries of finished runs: terminal tables, run comparison, protocol sensitivity, figures, published numbers.

Imports everything below it (`core`, `datasets`, `methods`, `evaluation`, `running`), never `leaderboard` or `cli`.
"""
