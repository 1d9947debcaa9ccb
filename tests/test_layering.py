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


def _imports_from(path: Path) -> set[tuple[str, str]]:
    """(module, name) of every ``from cdn_preheat... import name`` in the file."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update((alias.name, "") for alias in node.names)
    return {(module, name) for module, name in found if module.startswith("cdn_preheat")}


# What the CLI's targets side may use: the public API, what renders it, and the
# CLI's own signal handling and helpers. Building units, opening the ledger or a
# provider, walking the ledger, probing: all behind ``TargetsPreheater``.
TARGETS_CLI_MAY_IMPORT = {"cdn_preheat", "cdn_preheat.ui", "cdn_preheat.render",
                          "cdn_preheat.stopping", "cdn_preheat.source"}  # fmt: skip
CLI_HELPERS_NOT_FOR_TARGETS = {"open_ledger", "open_provider", "preheater"}


def test_the_targets_cli_calls_the_public_api_only() -> None:
    path = PACKAGE / "cli" / "_targets.py"
    offenders = sorted(
        f"{module}.{name}" if name else module
        for module, name in _imports_from(path)
        if not (
            module in TARGETS_CLI_MAY_IMPORT
            or (module == "cdn_preheat.cli._common" and name not in CLI_HELPERS_NOT_FOR_TARGETS)
        )
    )
    assert offenders == []
    public = set(cdn_preheat.__all__)
    beyond = {
        name
        for module, name in _imports_from(path)
        if module == "cdn_preheat"
        and name not in public
        and f"cdn_preheat.{name}" not in TARGETS_CLI_MAY_IMPORT  # ``from cdn_preheat import ui``
    }
    assert beyond == set()


def test_no_front_door_reaches_into_targets_past_its_public_names() -> None:
    """The CLI and the demos use targets through ``TargetsPreheater`` and its results.

    Nor do they reach into the package's modules (``cdn_preheat.targets.units``
    and the like), which this check would otherwise not see.
    """
    public = set(cdn_preheat.__all__)
    doors = [*(PACKAGE / "cli").rglob("*.py"), PACKAGE / "demo.py", PACKAGE / "demo_targets.py"]
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            f"{module}.{name}"
            for module, name in _imports_from(path)
            if (module == "cdn_preheat.targets" and name not in public)
            or module.startswith("cdn_preheat.targets.")
        )
        for path in doors
    }
    assert {path: names for path, names in offenders.items() if names} == {}
