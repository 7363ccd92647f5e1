# -*- test-case-name: tests.sieve.test_srs -*-
"""SRS0 rewriting of a redirect's envelope sender, and its reversal."""

from __future__ import annotations

import os

from xmail.sieve.srs import MAX_AGE_DAYS, SRS, load_secret


def test_forward_then_reverse_survives_a_change_of_case() -> None:
    now = [1_700_000_000.0]
    srs = SRS(b"s" * 32, clock=lambda: now[0])
    rewritten = srs.forward("Alice@Orig.example", "our.example")
    assert rewritten.startswith("SRS0=") and rewritten.endswith("@our.example")
    assert srs.reverse(rewritten) == "Alice@Orig.example"
    assert srs.reverse(rewritten.lower()) == "alice@orig.example"
    now[0] += (MAX_AGE_DAYS + 1) * 86400
    assert srs.reverse(rewritten) is None  # expired


def test_forged_or_foreign_addresses_are_not_reversed() -> None:
    srs = SRS(b"s" * 32)
    other = SRS(b"t" * 32)
    assert srs.reverse(other.forward("alice@orig.example", "our.example")) is None
    assert srs.reverse("alice@our.example") is None
    assert srs.reverse("SRS0=x@our.example") is None
    assert srs.reverse("SRS0=AAAA=!!=d=l@our.example") is None


def test_null_sender_and_our_own_addresses_stay() -> None:
    srs = SRS(b"s" * 32)
    assert srs.forward("", "our.example") == ""
    assert srs.forward("bob@our.example", "our.example") == "bob@our.example"


def test_the_secret_is_made_once_and_kept(tmp_path) -> None:
    path = str(tmp_path / "srs.key")
    first = load_secret(path)
    assert len(first) >= 32 and load_secret(path) == first
    assert os.stat(path).st_mode & 0o777 == 0o600
