# -*- test-case-name: tests.message.test_address -*-
"""Comments in the one address grammar (xmail.message.address).

RFC 5322 §3.4: a comment is CFWS, not a phrase.  An addr-spec without a
display name takes a comment that follows it as its name, as Dovecot's
message-address.c does (`c@x (Carol)` -> "Carol"); a comment before it does
not name it (`(Carol) c@x` -> NIL; Dovecot forgets the comments it skipped
before the addr-spec).  The old tokenizer took a comment and the white
space after it as one token and cut its last character, so `(Carol) c@x`
was named `Carol)`.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmail.message import mailboxes, parse_address_list, parse_message, searchable


@pytest.mark.parametrize("value, expected", [
    # The reported case: a comment before the address is no name.
    ("(Carol) carol@example.com", [[None, None, "carol", "example.com"]]),
    ("(Carol)carol@example.com", [[None, None, "carol", "example.com"]]),
    ("(a) (b)\r\n c@x", [[None, None, "c", "x"]]),
    ("(Carol (nested)) carol@example.com", [[None, None, "carol", "example.com"]]),
    ("a@b (A), (B) b@c", [["A", None, "a", "b"], [None, None, "b", "c"]]),
    # A comment after it is its name: the last one, from the addr-spec on.
    ("carol@example.com (Carol)", [["Carol", None, "carol", "example.com"]]),
    ("carol@example.com(Carol)", [["Carol", None, "carol", "example.com"]]),
    ("(x) c (y) @ (z) example.com (Carol)", [["Carol", None, "c", "example.com"]]),
    ("c@x (a) (b)", [["b", None, "c", "x"]]),
    ("c@x (Carol (the boss))", [["Carol (the boss)", None, "c", "x"]]),
    ("c@x (Carol\\) x)", [["Carol) x", None, "c", "x"]]),  # a quoted-pair is its character
    ("c@x ( )", [[None, None, "c", "x"]]),
    ("c@x (Carol", [["Carol", None, "c", "x"]]),  # unclosed: to the end
    # With angle brackets only a phrase names the address.
    ("(Carol) <carol@example.com>", [[None, None, "carol", "example.com"]]),
    ("<carol@example.com> (Carol)", [[None, None, "carol", "example.com"]]),
    ("Carol (work) <carol@example.com>", [["Carol", None, "carol", "example.com"]]),
])
def test_comment_names(value: str, expected: list[list[str | None]]) -> None:
    assert parse_address_list(value) == expected


def test_comments_never_change_the_mailbox() -> None:
    for value in ("(Carol) carol@example.com", "carol@example.com (Carol)",
                  "(bob@evil.example) carol@example.com"):
        assert mailboxes(value) == ["carol@example.com"]
        assert "carol)" not in searchable(value) and "bob@evil" not in searchable(value)


def test_envelope_and_display_key_of_a_leading_comment() -> None:
    meta = parse_message(b"From: (Zoe) alice@example.com\r\nTo: bob@example.com (Bob)\r\n\r\nx\r\n")
    assert meta.structure["env"]["from"] == [[None, None, "alice", "example.com"]]
    assert meta.structure["env"]["to"] == [["Bob", None, "bob", "example.com"]]
    # RFC 5957 §3: no display name -> the address is the DISPLAYFROM key.
    assert meta.headers[":display-from"] == "alice@example.com"
    assert meta.headers[":display-to"] == "Bob"


_WORD = st.text(alphabet="abcXYZ09 .-", min_size=1, max_size=12).filter(lambda w: w.strip())


@given(name=_WORD)
def test_comment_before_is_nil_after_is_the_name(name: str) -> None:
    assert parse_address_list(f"({name}) c@x") == [[None, None, "c", "x"]]
    assert parse_address_list(f"c@x ({name})") == [[name.strip(), None, "c", "x"]]
