"""The import rules of docs/architecture.md that a parser can check."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pixelflow"


def _imports(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(), str(module))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def test_the_api_never_imports_the_worker_or_a_concrete_adapter() -> None:
    """serve's embedded worker is composed by the entrypoint (cli.py), and adapters are seen
    through their Protocols: only runtime.py names concrete ones."""
    offending = {
        f"{module.relative_to(PACKAGE)}: {name}"
        for module in (PACKAGE / "api").rglob("*.py")
        for name in _imports(module)
        if name.startswith("pixelflow.worker")
        or (name.startswith("pixelflow.adapters.") and not name.endswith(".protocol"))
    }
    assert not offending


def test_services_see_adapters_only_through_protocols() -> None:
    offending = {
        f"{module.relative_to(PACKAGE)}: {name}"
        for module in (PACKAGE / "services").rglob("*.py")
        for name in _imports(module)
        if name.startswith("pixelflow.adapters.") and not name.endswith(".protocol")
    }
    assert not offending
