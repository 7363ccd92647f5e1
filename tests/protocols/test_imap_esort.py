"""CONTEXT=SORT (RFC 5267 §4) over real sockets: `SORT RETURN (UPDATE)`
keeps a sorted result current with positioned ADDTO / REMOVEFROM
(xmail/protocols/imap/esort.py).  The proof: a client that applies the
updates as they come holds exactly what a fresh SORT returns."""

from __future__ import annotations

import random
import re

import pytest

from tests.protocols.imap_support import Wire, deliver, message

_UPDATE = re.compile(rb'\* ESEARCH \(TAG "([^"]+)"\)( UID)? (ADDTO|REMOVEFROM) \((\d+) ([0-9:,]+)\)\Z')


@pytest.fixture
def alice(server):  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        w.login()
        yield w


def _expand(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.split(b","):
        low, _, high = part.partition(b":")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def _apply(result: list[int], lines: list[bytes], tag: bytes) -> list[int]:
    """What a client does with the updates, in the order received."""
    result = list(result)
    for line in lines:
        m = _UPDATE.match(line)
        if m is None or m.group(1) != tag:
            continue
        position, numbers = int(m.group(4)), _expand(m.group(5))
        if m.group(3) == b"REMOVEFROM":
            assert result[position - 1:position - 1 + len(numbers)] == numbers, (result, line)
            del result[position - 1:position - 1 + len(numbers)]
        else:
            result[position - 1:position - 1] = numbers
    return result


def _start(w: Wire, command: str) -> tuple[bytes, list[int]]:
    tag = w.tag()
    w.send(tag + b" " + command.encode() + b"\r\n")
    status, lines = w.until(tag)
    assert status.startswith(b"OK"), (status, lines)
    [line] = lines
    _, _, tail = line.partition(b" ALL ")
    return tag, _expand(tail) if tail else []


def _sorted(w: Wire, command: str) -> list[int]:
    [line] = w.ok(command)
    return [int(n) for n in line.split()[2:]]


def test_capability_and_hand_checked_updates(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    for subject in ("delta", "alpha", "echo", "charlie"):  # UIDs 1..4
        deliver(server, "alice@example.com", message(subject))
    alice.ok("SELECT INBOX")
    [caps] = alice.ok("CAPABILITY")
    assert b"CONTEXT=SORT" in caps.split()
    tag, result = _start(alice, "UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNSEEN")
    assert result == [2, 4, 1, 3]  # alpha charlie delta echo
    with Wire(server.port("imap")) as other:
        other.login()
        other.ok("SELECT INBOX")
        other.ok("UID STORE 4 +FLAGS (\\Seen)")  # charlie leaves (position 2)
    deliver(server, "alice@example.com", message("bravo"))  # UID 5 enters at position 2
    lines = alice.ok("NOOP")
    assert b"* 5 EXISTS" in lines
    updates = [line for line in lines if b"ESEARCH" in line]
    assert updates == [b'* ESEARCH (TAG "%s") UID REMOVEFROM (2 4)' % tag,
                       b'* ESEARCH (TAG "%s") UID ADDTO (2 5)' % tag], lines
    # A flag change that keeps a message in the result moves nothing.
    with Wire(server.port("imap")) as other:
        other.login()
        other.ok("SELECT INBOX")
        other.ok("UID STORE 1 +FLAGS (\\Flagged)")
    assert [line for line in alice.ok("NOOP") if b"ESEARCH" in line] == []
    alice.ok(b'CANCELUPDATE "%s"' % tag)
    deliver(server, "alice@example.com", message("after cancel"))
    assert [line for line in alice.ok("NOOP") if b"ESEARCH" in line] == []


def test_plain_sort_return_update_and_partial(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    for subject in ("b", "a"):
        deliver(server, "alice@example.com", message(subject))
    alice.ok("SELECT INBOX")
    # Sequence numbers, REVERSE, COUNT alongside UPDATE (no ALL asked: only COUNT).
    tag = alice.tag()
    alice.send(tag + b" SORT RETURN (COUNT UPDATE) (REVERSE SUBJECT) UTF-8 ALL\r\n")
    status, lines = alice.until(tag)
    assert status.startswith(b"OK") and lines == [b'* ESEARCH (TAG "%s") COUNT 2' % tag]
    deliver(server, "alice@example.com", message("c"))
    lines = alice.ok("NOOP")
    assert b'* ESEARCH (TAG "%s") ADDTO (1 3)' % tag in lines, lines
    # RFC 5267 §4.2: updates of a PARTIAL window are declined with NOUPDATE;
    # the result itself is answered.
    tag = alice.tag()
    alice.send(tag + b" SORT RETURN (PARTIAL 1:2 UPDATE) (SUBJECT) UTF-8 ALL\r\n")
    status, lines = alice.until(tag)
    assert status.startswith(b"OK")
    assert lines == [b'* ESEARCH (TAG "%s") PARTIAL (1:2 2,1)' % tag,
                     b'* NO [NOUPDATE "%s"] no updates for a PARTIAL result' % tag], lines
    alice.expect("BAD", "SORT RETURN (PARTIAL 1:2 ALL UPDATE) (SUBJECT) UTF-8 ALL")


@pytest.mark.parametrize("criteria,uid", [("SUBJECT", True), ("REVERSE SUBJECT", False),
                                          ("SIZE SUBJECT", True), ("REVERSE ARRIVAL", True)])
def test_applied_updates_equal_a_fresh_sort(server, alice: Wire, criteria: str, uid: bool
                                            ) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(f"{criteria}{uid}")
    words = ["kiwi", "apple", "fig", "date", "lime", "pear", "plum"]
    for i in range(12):
        deliver(server, "alice@example.com",
                message(rng.choice(words), "x" * rng.randrange(1, 4) + "\r\n"),
                flags=("\\Seen",) if i % 3 == 0 else ())
    alice.ok("SELECT INBOX")
    prefix = "UID " if uid else ""
    command = f"{prefix}SORT RETURN (UPDATE) ({criteria}) UTF-8 UNSEEN"
    tag, result = _start(alice, command)
    plain = f"{prefix}SORT ({criteria}) UTF-8 UNSEEN"
    assert result == _sorted(alice, plain)
    with Wire(server.port("imap")) as other:
        other.login()
        other.ok("SELECT INBOX")
        for step in range(6):
            for _ in range(rng.randrange(1, 4)):
                n = rng.randrange(1, 13)
                other.ok(f"UID STORE {n} {rng.choice('+-')}FLAGS (\\Seen)")
            # Sometimes one new message, once many at once (the batched re-sort).
            arrivals = 25 if step == 3 else rng.randrange(0, 3)
            for _ in range(arrivals):
                deliver(server, "alice@example.com",
                        message(rng.choice(words), "y" * rng.randrange(1, 4) + "\r\n"))
            lines = alice.ok("NOOP")
            result = _apply(result, lines, tag)
            assert result == _sorted(alice, plain), (step, lines)
