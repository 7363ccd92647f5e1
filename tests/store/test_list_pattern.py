"""LIST/LSUB wildcard matching (RFC 3501 §6.3.8) without backtracking
(issue 16: a regex built from `*x*x*x*x*x*xy` hung a worker for minutes)."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.store.names import ListPattern, list_pattern


def reference_match(pattern: str, name: str) -> bool:
    """The obvious definition, as a regex: fine on the small inputs below."""
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch))
    return re.fullmatch("".join(out), name, re.DOTALL) is not None


def test_star_and_percent() -> None:
    assert ListPattern("*").matches("a/b/c")
    assert ListPattern("%").matches("abc")
    assert not ListPattern("%").matches("a/b")
    assert ListPattern("a/%").matches("a/b")
    assert not ListPattern("a/%").matches("a/b/c")
    assert ListPattern("a/*").matches("a/b/c")
    assert ListPattern("%/%").matches("a/b")
    assert ListPattern("").matches("")
    assert not ListPattern("").matches("a")
    assert ListPattern("a%b*c").matches("axxb/yc")
    assert not ListPattern("a%b").matches("a/b")
    assert ListPattern("**%%*").matches("x/y")
    assert not ListPattern("%%").matches("x/y")
    assert ListPattern("销售部/*").matches("销售部/华东")


def test_reference_and_inbox_case() -> None:
    assert list_pattern("Sent/", "%").matches("Sent/2024")
    assert list_pattern("Sent/", "/x").matches("/x") is True  # a rooted pattern ignores the reference
    assert list_pattern("", "inbox").matches("INBOX")
    assert list_pattern("", "Inbox/%").matches("INBOX/x")
    assert not list_pattern("", "inboxes").matches("INBOXES")


_ALPHABET = st.text(alphabet="ab/*%", max_size=8)


@settings(max_examples=2000, deadline=None)
@given(pattern=_ALPHABET, name=st.text(alphabet="ab/", max_size=10))
def test_agrees_with_the_reference(pattern: str, name: str) -> None:
    assert ListPattern(pattern).matches(name) == reference_match(pattern, name)


def test_hostile_pattern_is_linear() -> None:
    # The issue-16 pattern and a harder one, against long names: the old
    # regex needed more than 300 s for the first; a linear matcher needs
    # milliseconds, so 10,000 matches fit easily in a generous bound.
    names = ["x" * 250, ("x/" * 125)[:-1], "x" * 249 + "y"]
    patterns = ["*x*x*x*x*x*xy", "*x" * 60 + "y", "%x" * 60 + "y", "*%" * 100 + "y"]
    start = time.process_time()
    for _ in range(1000):
        for p in patterns:
            compiled = ListPattern(p)
            for n in names:
                compiled.matches(n)
    assert time.process_time() - start < 30
    assert ListPattern("*x*x*x*x*x*xy").matches("x" * 249 + "y")
    assert not ListPattern("*x*x*x*x*x*xy").matches("x" * 250)
