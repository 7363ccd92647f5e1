# -*- test-case-name: tests.store.test_upgrade, tests.db.test_environment -*-
"""Format tags: which encoding the values of a group of databases use.

Values in the index are `marshal` dumps (the fastest decoder the standard
library has for plain tuples), and marshal's format belongs to the Python
that wrote it ("not guaranteed to be compatible across Python versions",
the marshal documentation).  So each owner of databases records the format
it wrote under a name in `db.formats`, and on open compares it with what
it writes: equal -> nothing to do; different -> convert, or rebuild what
can be rebuilt (xmail.store.upgrade does this for the store).
"""

from __future__ import annotations

import marshal
import sys
from typing import Any

FORMATS_DB = "db.formats"


def codec_tag() -> str:
    """The marshal format of this interpreter: "marshal4/py3.11"."""
    return f"marshal{marshal.version}/py{sys.version_info[0]}.{sys.version_info[1]}"


def read_tag(env: Any, txn: Any, name: str) -> str | None:
    raw = txn.get(name.encode("utf-8"), db=env.db(FORMATS_DB))
    return None if raw is None else bytes(raw).decode("utf-8", "replace")


def write_tag(env: Any, txn: Any, name: str, tag: str) -> None:
    txn.put(name.encode("utf-8"), tag.encode("utf-8"), db=env.db(FORMATS_DB))
