# -*- test-case-name: tests.message.test_layers -*-
"""The ground floor stays the ground floor: xmail.message and xmail.addresses
import nothing from xmail except each other (and xmail.config), and no
protocol reaches the old parser path or another copy of the mUTF-7 codec."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "xmail"
GROUND = [ROOT / "addresses.py", *sorted((ROOT / "message").glob("*.py"))]
ALLOWED = ("xmail.message", "xmail.addresses", "xmail.config")


def xmail_imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in out if name == "xmail" or name.startswith("xmail.")]


def test_ground_floor_imports_only_itself() -> None:
    assert len(GROUND) > 5
    for path in GROUND:
        for name in xmail_imports(path):
            assert name.startswith(ALLOWED), f"{path.name} imports {name}"


def test_nobody_uses_the_old_paths() -> None:
    assert not (ROOT / "store" / "parse.py").exists()
    assert not (ROOT / "protocols" / "pop3" / "dotstuff.py").exists()
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "xmail.store.parse" not in text, path
        assert "imap4-utf-7" not in text, path  # one modified UTF-7 codec: xmail.message.mutf7
        assert 'encode("idna")' not in text, path  # IDNA 2003; xmail.addresses is the one rule
