"""Apps depend one way: core <- access <- nodes <- pools <- jobs, with the operator console and the project
package on top. A module that imports an app above its own layer (even inside a function) fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each package may import only the packages listed for it (and itself, the standard library, third parties).
ALLOWED = {
    "core": set(),
    "access": {"core"},
    "nodes": {"core", "access"},
    "pools": {"core", "access", "nodes"},
    "jobs": {"core", "access", "nodes", "pools"},
}
PROJECT_PACKAGES = {"core", "access", "nodes", "pools", "jobs", "console", "scheduler", "supervisor"}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT_PACKAGES


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_an_app_imports_only_the_layers_below_it(package: str) -> None:
    allowed = ALLOWED[package] | {package}
    violations = {
        str(path.relative_to(ROOT)): sorted(imported - allowed)
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts and (imported := imported_packages(path)) - allowed
    }
    assert violations == {}


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("def f():\n    from jobs import services\n    import pools.selection\n")
    assert imported_packages(module) == {"jobs", "pools"}
