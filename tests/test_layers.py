"""Dependencies point inwards: the core imports no I/O and none of the outer layers.

Checked on the source text (every import statement of every core module), so that a forbidden
import fails here even when it sits in a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ampshare

PKG = Path(ampshare.__file__).parent

FORBIDDEN_IN_CORE = {
    "asyncio", "socket", "time", "datetime", "threading", "subprocess", "os", "pathlib",
    "sqlite3", "websockets", "ocpp", "pymodbus", "aiomqtt", "fastapi", "uvicorn", "typer",
    "rich", "ruamel", "yaml", "pydantic",
}
OUTER = {"ampshare.control", "ampshare.adapters", "ampshare.store", "ampshare.web",
         "ampshare.sim", "ampshare.cli", "ampshare.app", "ampshare.config"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violations(layer: str, forbidden_roots: set[str], forbidden_pkgs: set[str]) -> list[str]:
    bad = []
    for path in sorted((PKG / layer).rglob("*.py")):
        for name in _imports(path):
            if name.split(".")[0] in forbidden_roots or any(
                name == p or name.startswith(p + ".") for p in forbidden_pkgs
            ):
                bad.append(f"{path.relative_to(PKG)} imports {name}")
    return bad


def test_core_is_pure() -> None:
    assert (PKG / "core").is_dir()
    assert _violations("core", FORBIDDEN_IN_CORE, OUTER) == []


def test_control_imports_only_core() -> None:
    if not (PKG / "control").is_dir():
        pytest.skip("no control layer yet")
    outer = OUTER - {"ampshare.control"}
    assert _violations("control", {"asyncio", "socket", "sqlite3", "websockets", "ocpp",
                                   "pymodbus", "aiomqtt", "fastapi"}, outer) == []
