"""An example method and dataset for cxr-grounding-bench; the package folder holds their specs."""
