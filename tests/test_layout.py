"""The layout's import rules: eercf_core never imports pipelines or bench; bench imports only
eercf_core (and schemas), running the jobs through their command line when it needs them."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT


def _imports(path: Path) -> set[str]:
    """Top-level package names a module imports (at any depth of its code)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("package", "forbidden"), [
    ("eercf_core", {"pipelines", "bench", "tests"}),
    ("bench", {"pipelines", "tests"}),
    ("schemas", {"pipelines", "bench", "eercf_core", "tests"}),
])
def test_no_upward_imports(package, forbidden):
    offenders = {str(path.relative_to(ROOT)): sorted(_imports(path) & forbidden)
                 for path in sorted((ROOT / package).rglob("*.py"))
                 if _imports(path) & forbidden}
    assert not offenders, offenders
