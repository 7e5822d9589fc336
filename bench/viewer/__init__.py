"""The run viewer: a static HTML folder of every scored sample of one or more runs (`bench view`).

Imports everything up to `bench.reporting`; `bench.leaderboard`, `bench.api` and `bench.cli` import it.
"""
