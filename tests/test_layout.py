"""The package layout: each sub-package imports only the layers below it, as the README's map says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
README = Path(__file__).resolve().parents[1] / "README.md"

# what each sub-package may import from `bench` besides itself (the README's package map)
ALLOWED = {
    "core": set(),
    "datasets": {"core"},
    "methods": {"core", "datasets"},
    "evaluation": {"core"},
    "running": {"core", "datasets", "methods", "evaluation"},
    "reporting": {"core", "datasets", "methods", "evaluation", "running"},
    "viewer": {"core", "datasets", "methods", "evaluation", "running", "reporting"},
    "leaderboard": {"core", "datasets", "methods", "evaluation", "running", "reporting", "viewer"},
    "api": {"core", "datasets", "methods", "evaluation", "running", "reporting", "viewer", "leaderboard"},
    "cli": {"core", "datasets", "methods", "evaluation", "running", "reporting", "viewer", "leaderboard"},
}


def _layer(module: str) -> str:
    """`bench.evaluation.metrics` -> `evaluation`; `bench.cli` -> `cli`; `bench` -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path, root: Path = BENCH.parent) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every `bench` import in one file, relative ones resolved."""
    package = list(path.relative_to(root).parts[:-1])  # a module's package; an __init__'s own package
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "bench" or module.startswith("bench."):
                found.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name == "bench" or a.name.startswith("bench.")]
    return found


MODULES = sorted(p for p in BENCH.rglob("*.py"))


def test_every_module_sits_in_a_known_sub_package() -> None:
    top = {p.relative_to(BENCH).parts[0].removesuffix(".py") for p in MODULES} - {"__init__"}
    assert top == set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(BENCH)))
def test_imports_run_one_way(path: Path) -> None:
    layer = path.relative_to(BENCH).parts[0].removesuffix(".py")
    if layer == "__init__":
        return
    for module, names in _imports(path):
        target = _layer(module)
        if target == "":  # the package root holds only metadata
            assert names == ["__version__"], f"{path.name} imports {names} from the package root"
            continue
        if target in ("core", "datasets", "methods", "evaluation", "running", "reporting", "viewer", "leaderboard") \
                and target == layer:
            continue
        assert target in ALLOWED[layer], f"{path.relative_to(BENCH)} imports {module}: {layer} may not import {target}"


def test_the_readme_maps_every_sub_package() -> None:
    text = README.read_text(encoding="utf-8").split("### Package map")[1].split("\n## ")[0]
    for layer in ALLOWED:
        name = f"bench/{layer}.py" if layer in ("api", "cli") else f"bench/{layer}/"
        assert f"`{name}`" in text, f"README package map lacks {name}"


def test_relative_imports_resolve_to_their_absolute_modules(tmp_path: Path) -> None:
    """The checker itself: relative imports from a module and from a package __init__ resolve as Python does."""
    (tmp_path / "bench" / "evaluation").mkdir(parents=True)
    module = tmp_path / "bench" / "evaluation" / "x.py"
    module.write_text("from ..running.runner import run\nfrom .metrics import cnr\nfrom .. import __version__\n")
    init = tmp_path / "bench" / "evaluation" / "__init__.py"
    init.write_text("from .scoring import score\nimport numpy\n")
    assert _imports(module, tmp_path) == [("bench.running.runner", ["run"]), ("bench.evaluation.metrics", ["cnr"]),
                                          ("bench", ["__version__"])]
    assert _imports(init, tmp_path) == [("bench.evaluation.scoring", ["score"])]
    assert "running" not in ALLOWED["evaluation"]
