"""The run machinery: a method over a dataset into a run folder, scored under a protocol; shards, resume.

Imports `bench.core`, `bench.datasets`, `bench.methods` and `bench.evaluation`.
"""
