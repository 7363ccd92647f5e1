# -*- test-case-name: tests.message.test_mutf7 -*-
"""The one modified UTF-7 codec (RFC 3501 §5.1.3), checked against the
examples of the RFC and against twisted.mail's codec as a reference."""

from __future__ import annotations

import pytest
import twisted.mail.imap4  # noqa: F401  (registers "imap4-utf-7", the reference here)
from hypothesis import given
from hypothesis import strategies as st

from xmail.message import mutf7

NAMES = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
# twisted's codec writes control characters wrongly ("\n" -> "&-"), so the
# comparison with it leaves them out; the round trip covers them.
PRINTABLE_NAMES = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), max_size=40)


@pytest.mark.parametrize("text, wire", [
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
    ("&", "&-"), ("a&b", "a&-b"), ("INBOX", "INBOX"), ("归档", "&X1JoYw-"),
])
def test_examples(text: str, wire: str) -> None:
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text


@given(NAMES)
def test_round_trip(text: str) -> None:
    wire = mutf7.encode(text)
    assert wire.isascii() and all(0x20 <= ord(c) <= 0x7E for c in wire)
    assert mutf7.decode(wire) == text


@given(PRINTABLE_NAMES)
def test_agrees_with_the_reference(text: str) -> None:
    assert mutf7.encode(text).encode("ascii") == text.encode("imap4-utf-7")


@pytest.mark.parametrize("wire", [
    "&Jjo", "&U,BTFw", "&AGEAYgBj-",  # no closing "-"; printable ASCII shifted
    "&*-", "a\x01b", "é", "&U,BTF-",
])
def test_non_canonical_or_bad_input_is_refused(wire: str) -> None:
    with pytest.raises(ValueError):
        mutf7.decode(wire)


@given(st.text(max_size=30))
def test_decode_raises_only_value_error(wire: str) -> None:
    try:
        mutf7.decode(wire)
    except ValueError:
        pass
