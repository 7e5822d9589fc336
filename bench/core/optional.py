"""The packages of the `models` extra: what a light install (scoring your own maps) leaves out."""

from __future__ import annotations

#: import names of the `models` extra in pyproject.toml (PyTorch and the model libraries)
MODEL_PACKAGES = frozenset({"torch", "torchvision", "diffusers", "transformers", "health_multimodal", "monai"})
INSTALL_HINT = "pip install 'cxr-grounding-bench[models]'"


def missing_model_package(exc: ImportError) -> str | None:
    """The `models` package whose absence raised `exc`, or None for any other import error."""
    root = (getattr(exc, "name", None) or "").split(".")[0]
    return root if root in MODEL_PACKAGES else None


def models_message(package: str, what: str) -> str:
    """One line: what needs the package, and how to install it."""
    return f"{what} needs {package}, which the light install leaves out; install the models extra: {INSTALL_HINT}"
