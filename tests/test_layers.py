# -*- test-case-name: tests.test_layers -*-
"""Issue 14 "Done when": the import check.

Every module under xmail/ is parsed with `ast` and every import in it (top
level, function-local, under TYPE_CHECKING, relative ones resolved) is
checked against the layer map below, which README's layout section and
docs/decisions.md describe in words.  A failure prints one line per
violation: `module -> imported (rule)`.

Also checked: every `# -*- test-case-name: ... -*-` header in xmail/ and
tests/ names modules that import, so a reader (or `trial`) following it
finds real tests.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xmail"

# The floors, lowest first.  A module may import its own floor and any floor
# below it, never one above (longest prefix decides a module's floor).
GROUND, STORE_AUTH, CONTEXT, PROTOCOLS_FEATURES, TOP = range(5)
FLOORS: dict[str, int] = {
    "xmail": GROUND,              # the package __init__ itself
    "xmail.config": GROUND,
    "xmail.db": GROUND,
    "xmail.message": GROUND,
    "xmail.addresses": GROUND,
    "xmail.dns": GROUND,          # the one resolver factory ([dns] servers)
    "xmail.limits": GROUND,       # connection caps and deadlines every protocol uses
    "xmail.tls": GROUND,          # certificates: config in, context factories out
    "xmail.metrics": GROUND,      # Prometheus counters; imports nothing from xmail
    "xmail.store": STORE_AUTH,
    "xmail.auth": STORE_AUTH,
    "xmail.context": CONTEXT,     # the bundle of interfaces protocols are handed
    "xmail.protocols": PROTOCOLS_FEATURES,
    "xmail.queue": PROTOCOLS_FEATURES,
    # The queue's interface (IOutboundQueue, the recipient type) is what the
    # context hands protocols, like store's and auth's interfaces: it sits on
    # their floor and imports nothing of the queue.
    "xmail.queue.interfaces": STORE_AUTH,
    "xmail.sendsave": PROTOCOLS_FEATURES,
    "xmail.filter": PROTOCOLS_FEATURES,  # the delivery pipeline and its stages (issue 17)
    # What SMTP hands the pipeline and reads back (Transaction, Review):
    # the queue interface's floor, for the same reason.
    "xmail.filter.interfaces": STORE_AUTH,
    "xmail.sieve": PROTOCOLS_FEATURES,   # filter rules: engine, stage, storage (issue 18)
    # What ManageSieve and the context reach of scripts: the filter
    # interfaces' floor, for the same reason.
    "xmail.sieve.interfaces": STORE_AUTH,
    "xmail.autoconfig": PROTOCOLS_FEATURES,
    "xmail.ops": PROTOCOLS_FEATURES,
    "xmail.service": TOP,
    "xmail.daemon": TOP,
    "xmail.workers": TOP,
    "xmail.preflight": TOP,
    "xmail.cli": TOP,
}
FLOOR_NAMES = ["ground floor", "store/auth", "context", "protocols/features", "service/workers"]

# Every package under xmail/protocols/ is a protocol (a new one is covered
# the day it appears), except the shared skeleton; plain modules directly in
# xmail/protocols/ are shared by all protocols.
SHARED_PROTOCOL_PACKAGES = ("xmail.protocols.skeleton",)
PROTOCOL_PACKAGES = tuple(
    f"xmail.protocols.{d.name}" for d in sorted((PACKAGE / "protocols").iterdir())
    if (d / "__init__.py").exists() and f"xmail.protocols.{d.name}" not in SHARED_PROTOCOL_PACKAGES
)

# What a protocol may reach above the ground floor: the store's and auth's
# interfaces (the one login path and the sans-IO SASL machine are auth's
# interface to protocols; store.names is the folder-name contract: the
# hierarchy delimiter, valid names, LIST patterns), the queue's recipient
# type, and the context that carries the implementations.
PROTOCOL_SURFACE = (
    "xmail.store.interfaces",
    "xmail.store.names",
    "xmail.auth.interfaces",
    "xmail.auth.login",
    "xmail.auth.sasl",
    "xmail.queue.interfaces",
    "xmail.filter.interfaces",
    "xmail.sieve.interfaces",
    "xmail.context",
)
# The context is built from interfaces only, so handing it to a protocol
# hands over no implementation.
CONTEXT_SURFACE = ("xmail.store.interfaces", "xmail.auth.interfaces", "xmail.queue.interfaces",
                   "xmail.filter.interfaces", "xmail.sieve.interfaces")


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports_of(path: Path) -> list[str]:
    """Every xmail module `path` imports; `from a import b` counts as a.b
    when b is a module, else as a."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.append(sub if _is_module(sub) else source)
    return [m for m in found if _within(m, "xmail")]


def floor_of(name: str) -> int:
    best = max((p for p in FLOORS if _within(name, p)), key=len)
    return FLOORS[best]


def protocol_of(name: str) -> str | None:
    return next((p for p in PROTOCOL_PACKAGES if _within(name, p)), None)


def violations(module: str, imported: str) -> list[str]:
    """The rules `module -> imported` breaks, in words."""
    broken = []
    if _within(imported, "xmail.cli") and not _within(module, "xmail.cli"):
        broken.append("nothing imports xmail.cli: it is the top of the stack")
    if floor_of(imported) > floor_of(module):
        below, above = FLOOR_NAMES[floor_of(module)], FLOOR_NAMES[floor_of(imported)]
        broken.append(f"{below} imports {above}, a floor above")
    for a, b in (("xmail.auth", "xmail.store"), ("xmail.store", "xmail.auth")):
        if _within(module, a) and _within(imported, b):
            broken.append(f"{a} and {b} are siblings: shared code goes to the ground floor")
    if _within(module, "xmail.context") and floor_of(imported) != GROUND \
            and not any(_within(imported, s) for s in CONTEXT_SURFACE):
        broken.append("the context holds interfaces, not implementations")
    own = protocol_of(module)
    if own is not None and floor_of(imported) != GROUND and not _within(imported, own):
        other = protocol_of(imported)
        if other is not None:
            broken.append("a protocol never imports another protocol")
        elif _within(imported, "xmail.protocols"):
            pass  # the shared skeleton: xmail/protocols/*.py and SHARED_PROTOCOL_PACKAGES
        elif not any(_within(imported, s) for s in PROTOCOL_SURFACE):
            broken.append("a protocol imports only the ground floor, store/auth interfaces and the context")
    if floor_of(module) == PROTOCOLS_FEATURES and own is None and protocol_of(imported) is not None:
        broken.append("features do not import protocols")
    return broken


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@functools.cache
def graph() -> list[tuple[str, str]]:
    return [(module_name(p), m) for p in all_modules() for m in imports_of(p)]


def test_no_module_imports_against_the_layer_map() -> None:
    found = [f"{module} -> {imported} ({rule})"
             for module, imported in sorted(set(graph())) for rule in violations(module, imported)]
    assert found == [], "layer violations:\n" + "\n".join(found)


def test_no_plugin_loading() -> None:
    # Issue 14 §1: plain imports only; a name in a string hides a dependency
    # from this check and from every reader.
    found = []
    for path in all_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import) and any(_within(a.name, "importlib") for a in node.names):
                found.append(f"{module_name(path)} -> importlib")
            elif isinstance(node, ast.ImportFrom) and node.module and _within(node.module, "importlib"):
                found.append(f"{module_name(path)} -> importlib")
            elif isinstance(node, ast.Name) and node.id == "__import__":
                found.append(f"{module_name(path)} -> __import__")
    assert found == []


def test_the_checker_sees_the_real_graph() -> None:
    # A wrong ROOT, a broken resolver or an empty walk would pass vacuously.
    edges = set(graph())
    assert len(all_modules()) > 100
    assert ("xmail.store.index", "xmail.db.formats") in edges or ("xmail.store.index", "xmail.db") in edges
    assert ("xmail.protocols.pop3.session", "xmail.auth.sasl") in edges  # `from xmail.auth import sasl`
    assert ("xmail.service", "xmail.protocols.imap.server") in edges
    assert any(m == "xmail.protocols.imap.commands" for m, _ in edges)


def test_the_rules_catch_what_issue_14_removed() -> None:
    # Each edge that existed before issue 14 is still named a violation.
    assert violations("xmail.auth.directory", "xmail.store.index")
    assert violations("xmail.limits", "xmail.auth.throttle")
    assert violations("xmail.auth.login", "xmail.ops.audit")
    assert violations("xmail.store.mailstore", "xmail.cli.main")
    assert violations("xmail.protocols.imap.session", "xmail.protocols.smtp.replies")
    assert violations("xmail.protocols.smtp.delivery", "xmail.sendsave")
    assert violations("xmail.protocols.imap.server", "xmail.ops.metrics")
    assert violations("xmail.protocols.http.server", "xmail.autoconfig.page")
    assert violations("xmail.protocols.imap.session", "xmail.store.mailstore")
    assert not violations("xmail.protocols.imap.session", "xmail.store.interfaces")
    assert not violations("xmail.protocols.imap.server", "xmail.protocols.skeleton")
    assert not violations("xmail.protocols.pop3.server", "xmail.protocols.skeleton.dispatch")
    assert set(PROTOCOL_PACKAGES) >= {"xmail.protocols.smtp", "xmail.protocols.pop3",
                                      "xmail.protocols.imap", "xmail.protocols.http"}
    assert not violations("xmail.service", "xmail.protocols.imap.server")


HEADER = re.compile(r"test-case-name:\s*(.*?)\s*-\*-")


def test_case_name_headers_name_modules_that_import() -> None:
    named: dict[str, list[str]] = {}
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]):
        with path.open(encoding="utf-8") as f:
            head = [f.readline() for _ in range(3)]
        for line in head:
            match = HEADER.search(line)
            if match:
                for name in match.group(1).split(","):
                    named.setdefault(name.strip(), []).append(str(path.relative_to(ROOT)))
    assert len(named) > 50
    broken = []
    for name, sources in sorted(named.items()):
        try:
            importlib.import_module(name)
        except ImportError as e:
            broken.append(f"{', '.join(sources)}: {name} ({e})")
    assert broken == [], "\n".join(broken)
