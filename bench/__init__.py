"""cxr-grounding-bench: one explicit, reproducible protocol for chest X-ray phrase grounding.

The public Python API is importable from here (`bench.score_maps`, `bench.Scorer`, `bench.load_run`,
`bench.compare_runs`, `bench.rescore`, `bench.load_protocol`, ...). Names are imported on first use
(PEP 562), so `import bench` and the command line stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "score_maps": "bench.api",
    "Scorer": "bench.api",
    "Scores": "bench.api",
    "load_protocol": "bench.api",
    "load_dataset": "bench.api",
    "protocol_samples": "bench.api",
    "load_run": "bench.api",
    "compare_runs": "bench.api",
    "Comparison": "bench.api",
    "rescore": "bench.api",
    "Rescoring": "bench.api",
    "BenchError": "bench.core.errors",
    "Geometry": "bench.core.geometry",
    "Heatmap": "bench.core.heatmap",
    "BoxPrediction": "bench.core.predictions",
    "Param": "bench.core.params",
    "Sample": "bench.core.samples",
    "Dataset": "bench.datasets.base",
    "Protocol": "bench.evaluation.protocols",
    "Method": "bench.methods.base",
    "RunContext": "bench.methods.base",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
