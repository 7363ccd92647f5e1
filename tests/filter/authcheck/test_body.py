"""Streamed DKIM body canonicalization and hashing: byte-for-byte what
dkimpy computes over the whole body, for any input split anywhere; and
the reactor keeps turning while a big message is verified."""

from __future__ import annotations

import hashlib
import io
import time

from dkim import rfc822_parse
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task

from tests.filter.authcheck.conftest import Env, Key, message, publish, sign
from tests.support.server import in_reactor
from xmail.filter.authcheck.body import BodyCanonicalizer, body_hash, split_header

# Bodies made of the octets that matter to canonicalization, plus a letter.
_BODY = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b"a", b"\x00", b"\xff"]),
                 max_size=60).map(b"".join)


def streamed(body: bytes, relaxed: bool, cuts: list[int]) -> bytes:
    canon = BodyCanonicalizer(relaxed)
    out: list[bytes] = []
    start = 0
    for cut in sorted(set(c % (len(body) + 1) for c in cuts)) + [len(body)]:
        out.extend(canon.feed(body[start:cut]))
        start = cut
    out.extend(canon.finish())
    return b"".join(out)


def dkimpy_body(body: bytes) -> bytes:
    """The body as dkimpy's parser hands it to canonicalization."""
    return rfc822_parse(b"A: b\r\n\r\n" + body)[1]


@settings(max_examples=400)
@given(_BODY, st.lists(st.integers(min_value=0, max_value=100), max_size=6))
def test_streaming_gives_what_dkimpy_gives(body: bytes, cuts: list[int]) -> None:
    whole = dkimpy_body(body)
    assert streamed(body, False, cuts) == Simple.canonicalize_body(whole)
    assert streamed(body, True, cuts) == Relaxed.canonicalize_body(whole)


def test_byte_by_byte() -> None:
    body = b"Hi  there \t\r\n\r\nsecond\tline \n\n  \r\n\r\n\r\n"
    for relaxed, algorithm in ((False, Simple), (True, Relaxed)):
        assert streamed(body, relaxed, list(range(len(body)))) == \
            algorithm.canonicalize_body(dkimpy_body(body))


def test_empty_bodies() -> None:
    # RFC 6376 §3.4.3: an empty body is one CRLF (simple); §3.4.4 with
    # errata 3192: nothing (relaxed)
    for body in (b"", b"\r\n", b"\r\n\r\n", b" \r\n"):
        assert streamed(body, True, []) == b""
    assert streamed(b"", False, []) == b"\r\n"


def test_hash_with_a_length_limit() -> None:
    msg = b"Subject: x\r\n\r\nabc  def\r\nmore\r\n\r\n"
    header, offset = split_header(io.BytesIO(msg))
    assert (header, offset) == (b"Subject: x\r\n\r\n", 14)
    canonical = b"abc def\r\nmore\r\n"
    assert body_hash(lambda: io.BytesIO(msg), offset, True, hashlib.sha256) == \
        hashlib.sha256(canonical).digest()
    assert body_hash(lambda: io.BytesIO(msg), offset, True, hashlib.sha256, limit=5) == \
        hashlib.sha256(canonical[:5]).digest()


def test_split_header_reads_as_dkimpy_does() -> None:
    for msg in (b"A: b\r\n\r\nbody", b"A: b\n\nbody", b"\r\nbody", b"A: b\r\n c\r\n\r\n\r\nx",
                b"A: b\r\n" + b"X: " + b"y" * 200_000 + b"\r\n\r\nbody"):
        header, offset = split_header(io.BytesIO(msg))
        assert rfc822_parse(header)[0] == rfc822_parse(msg)[0]
        assert dkimpy_body(msg[offset:]) == rfc822_parse(msg)[1]


def test_the_reactor_keeps_turning_while_a_big_message_is_verified(env: Env, ed25519: Key) -> None:
    publish(env.zone, ed25519, "example.net")
    signed = message()
    for _ in range(3):  # three signatures: three hash checks over the body
        signed = sign(signed, ed25519, "example.net")
    env.run(signed)  # warm up: first imports and key parsing in the workers
    big = message(body="a line of text  with \t white space   \r\n" * 400_000)  # 16 MB
    for _ in range(3):
        big = sign(big, ed25519, "example.net")
    gaps: list[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    loop = task.LoopingCall(tick)
    in_reactor(lambda: loop.start(0.01) and None)
    try:
        review = env.run(big)
    finally:
        in_reactor(loop.stop)
    assert [d.result for d in review.facts["dkim"]] == ["pass"] * 3
    # dkimpy canonicalizing 16 MB in one regex call held the GIL ~0.3 s
    assert len(gaps) > 5 and max(gaps) < 0.15, gaps
