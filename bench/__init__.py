"""cxr-grounding-bench: one explicit, reproducible protocol for chest X-ray phrase grounding."""

__version__ = "0.1.0"
