# -*- test-case-name: tests.db.test_layers -*-
"""Issue 14 structure 1: the ground floor imports nothing above it, and
`auth` reaches the LMDB environment through xmail.db, not xmail.store.

Read from the source with ast (every import statement, function-level
ones included), so a lazy import cannot hide a dependency."""

from __future__ import annotations

import ast
import os

import xmail

ROOT = os.path.dirname(xmail.__file__)


def _imports(package: str) -> set[tuple[str, str]]:
    """(file, imported module) of every xmail import in a package."""
    found = set()
    for dirpath, _dirs, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                found.update((os.path.relpath(path, ROOT), m) for m in modules if m.startswith("xmail"))
    return found


def test_db_imports_no_other_xmail_package() -> None:
    assert {(f, m) for f, m in _imports("db") if not m.startswith("xmail.db")} == set()


def test_auth_does_not_import_store() -> None:
    assert {(f, m) for f, m in _imports("auth") if m.startswith("xmail.store")} == set()


def test_the_layers_seen_by_the_checker_are_not_empty() -> None:
    # The walk really reads the packages (a wrong ROOT would pass vacuously).
    assert ("store/index.py", "xmail.store.interfaces") in _imports("store")
    assert any(m == "xmail.db.environment" for _f, m in _imports("auth"))
