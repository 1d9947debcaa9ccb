"""The dependency goes one way: the CLI imports the library, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import cdn_preheat

PACKAGE = Path(cdn_preheat.__file__).parent
# The entry point ``python -m cdn_preheat`` is the CLI's own.
CLI_SIDE = {PACKAGE / "__main__.py"}


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_library_module_imports_the_cli() -> None:
    library = [
        path
        for path in PACKAGE.rglob("*.py")
        if (PACKAGE / "cli") not in path.parents and path not in CLI_SIDE
    ]
    assert PACKAGE / "demo.py" in library
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name
            for name in _imported(path)
            if name == "cdn_preheat.cli" or name.startswith("cdn_preheat.cli.")
        )
        for path in library
    }
    assert {path: names for path, names in offenders.items() if names} == {}
