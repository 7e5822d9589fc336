"""The protocol engine: protocol objects, map-to-image resampling, metrics, scoring and bootstrap statistics.

Imports `bench.core` only: it scores heatmaps and samples, whatever method or dataset made them.
"""
