# -*- test-case-name: tests.message.test_headers -*-
"""The one header-section reader: what it keeps and what it reports."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from xmail.message import header_fields, mailboxes, scan_header_section


def test_fields_in_order_unfolded_with_the_oddities_reported() -> None:
    block = (b"From : Bob <bob@x.example>\r\nFrom: alice@x.example\r\nSubject: a\r\n b\r\n"
             b"no colon here\r\na b: not a name\r\n\r\nBody: not a header\r\n")
    section = scan_header_section(block)
    assert section.fields == [("from", "Bob <bob@x.example>"), ("from", "alice@x.example"),
                              ("subject", "a b")]
    assert section.spaced == ["from"] and section.broken == 2
    # The store reads the first From, as submission's check now does.
    assert header_fields(block)["from"] == "Bob <bob@x.example>"
    assert mailboxes(section.all("from")[0]) == ["bob@x.example"]


def test_wanted_limits_kept_fields_not_reports() -> None:
    section = scan_header_section("Sender : a@b.c\r\nX: 1\r\njunk\r\n", frozenset(("from",)))
    assert section.fields == [] and section.spaced == ["sender"] and section.broken == 1


def test_mailboxes_flatten_groups_and_skip_bare_names() -> None:
    assert mailboxes('team: "A" <a@b.c>, d@e.f;, x, <g@h.i> (c)') == ["a@b.c", "d@e.f", "g@h.i"]


@given(st.binary(max_size=300))
def test_any_bytes_are_read_without_error(block: bytes) -> None:
    section = scan_header_section(block)
    assert all(name == name.lower() and ":" not in name for name, _value in section.fields)
