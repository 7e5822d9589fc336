"""Foundations every layer shares: errors, atomic writes, geometry, samples, heatmaps, spec files, registries.

Imports nothing else from `bench`.
"""
