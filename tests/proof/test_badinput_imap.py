# -*- test-case-name: tests.proof.test_badinput_imap -*-
"""Bad input over a real socket to a running IMAP server.

Hypothesis generates command lines (valid tags with known commands and
hostile arguments, hostile tags, random byte lines) and literals
(synchronizing `{n}` and non-synchronizing `{n+}`, including absurd sizes
such as `{4294967295}`) in the not-authenticated, authenticated and
selected states.  Each generated command is followed by a `NOOP` with a
fresh tag, and everything up to that NOOP's tagged reply is read.  For
every example:

- no exception escapes the server (twisted.logger observer in this process:
  a command handler that raised would be logged and answered
  `NO [SERVERBUG]`, which also fails the test);
- every response is well formed (RFC 3501 §7, §9): `* ` untagged,
  `+` continuation or `tag SP (OK|NO|BAD) SP text`, the tag made of
  ASTRING-CHARs except "+", status text printable 7-bit, CRLF endings, no
  NUL or bare CR/LF outside literals, `{n}` literals exactly n octets;
- the connection is still usable: the NOOP after the junk gets `OK`, unless
  the server sent `* BYE` first and then closed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PASSWORD
from tests.proof.support import NO_THROTTLE, LineClient, watch_failures

pytestmark = pytest.mark.timeout(300)

ALICE = "alice@example.com"
HYPOTHESIS = settings(max_examples=200, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# RFC 3501 §9: tag = 1*<any ASTRING-CHAR except "+">.
TAG = rb"[^\x00-\x20\x7f-\xff(){%*\"\\+]+"
TAGGED = re.compile(rb"^(" + TAG + rb") (OK|NO|BAD)(?: (.*))?\Z", re.DOTALL)
UNTAGGED = re.compile(rb"^\* (?:(OK|NO|BAD|BYE|PREAUTH)(?: (.*))?|[A-Z]+(?: .*)?|\d+ [A-Z]+(?: .*)?)\Z",
                      re.DOTALL)
CONTINUATION = re.compile(rb"^\+(?: .*)?\Z", re.DOTALL)
LITERAL_AT_END = re.compile(rb"~?\{(\d+)\}\Z")
STATUS_TEXT = re.compile(rb"^[\x20-\x7e]*\Z")
# Commands that change the framing (raw lines, TLS) or end the session; a
# generated line must not start one by accident.
FRAMING = re.compile(rb"^\S* +(AUTHENTICATE|IDLE|STARTTLS|LOGOUT|COMPRESS)\b", re.IGNORECASE)


class ByeClosed(Exception):
    """The server said BYE and closed."""


def response(client: LineClient) -> bytes | None:
    """One response with its literals replaced by "{n}", syntax checked;
    None when the server closed."""
    parts: list[bytes] = []
    while True:
        line = client.line()
        if not line:
            assert not parts, f"closed inside a response {parts!r}"
            return None
        assert line.endswith(b"\r\n"), f"response without CRLF {line!r}"
        body = line[:-2]
        assert b"\r" not in body and b"\0" not in body, f"bare CR or NUL in {line!r}"
        parts.append(body)
        m = LITERAL_AT_END.search(body)
        if m is None:
            break
        size = int(m.group(1))
        data = client.read_exact(size)
        assert len(data) == size, "short literal"
    text = b"".join(parts)
    if text.startswith(b"* "):
        m = UNTAGGED.match(text)
        assert m, f"malformed untagged response {text[:300]!r}"
        if m.group(1):
            assert STATUS_TEXT.match(m.group(2) or b""), f"status text not printable 7-bit: {text[:300]!r}"
    elif text.startswith(b"+"):
        assert CONTINUATION.match(text), f"malformed continuation {text!r}"
    else:
        m = TAGGED.match(text)
        assert m, f"malformed tagged response {text[:300]!r}"
        assert STATUS_TEXT.match(m.group(3) or b""), f"status text not printable 7-bit: {text[:300]!r}"
    return text


class Session:
    def __init__(self, port: int):
        self.client = LineClient(port)
        self.counter = 0
        self.bye = False
        greeting = self.read()
        assert greeting is not None and greeting.startswith(b"* OK"), greeting

    def read(self) -> bytes | None:
        text = response(self.client)
        if text is None:
            assert self.bye, "connection closed without * BYE"
            raise ByeClosed()
        if text.startswith(b"* BYE"):
            self.bye = True
        return text

    def until_tagged(self, tag: bytes, stop_at_continuation: bool = False) -> bytes:
        while True:
            text = self.read()
            if stop_at_continuation and text.startswith(b"+"):
                return text
            if text.startswith(tag + b" "):
                return text

    def command(self, line: bytes) -> bytes:
        self.counter += 1
        tag = b"zq%d" % self.counter
        self.client.send(tag + b" " + line + b"\r\n")
        return self.until_tagged(tag)

    def sentinel(self) -> None:
        reply = self.command(b"NOOP")
        assert reply.split(b" ")[1] == b"OK", reply


# -- generated input -------------------------------------------------------------------------------

no_crlf = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
ATOMS = [b"INBOX", b"inbox", b"Sent", b"1", b"1:*", b"*", b"0", b"0:0", b"4294967295", b"4294967296",
         b"1,2,3", b"2:1", b"$", b"NIL", b"()", b"(", b")", b"((((((((((((((((((((", b"BODY[]",
         b"BODY.PEEK[HEADER.FIELDS", b"(FROM)]", b"BODY[1.2.3.MIME]<0.10>", b"BODY[]<4294967295.1>",
         b"RFC822.SIZE", b"(FLAGS ENVELOPE BODYSTRUCTURE)", b"+FLAGS", b"(\\Seen \\Deleted)", b"\\Recent",
         b"UID", b"CHARSET", b"UTF-8", b"ALL", b"OR", b"NOT", b"HEADER", b"SINCE", b"1-Jan-2024",
         b"32-Foo-99999", b"(UNCHANGEDSINCE 1)", b"RETURN", b"(MIN MAX ALL)", b"REFERENCES", b"\"\"",
         b"\"a b\"", b"\"unterminated", b"\"esc\\\"aped\\\\\"", b"\"\\x\"", b"\"\xff\xfe\"", b"&Jjo-",
         b"&-", b"&AAA", b"../../x", b"a/../b", b"%", b"*/*", b"~", b"{5}", b"{}", b"{-1}", b"\x00",
         b"\x7f", b"\xc3\xa9", b"(\"name\" \"x\" \"version\" NIL)", b"(CONDSTORE)", b"MESSAGES",
         b"(MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ SIZE)"]
VERBS = [b"CAPABILITY", b"NOOP", b"LOGIN", b"SELECT", b"EXAMINE", b"CREATE", b"DELETE", b"RENAME",
         b"SUBSCRIBE", b"UNSUBSCRIBE", b"LIST", b"LSUB", b"STATUS", b"APPEND", b"CHECK", b"CLOSE",
         b"EXPUNGE", b"SEARCH", b"FETCH", b"STORE", b"COPY", b"MOVE", b"UID", b"ENABLE", b"ID",
         b"NAMESPACE", b"UNSELECT", b"SORT", b"THREAD", b"GETQUOTAROOT", b"GETQUOTA", b"SETQUOTA",
         b"ESEARCH", b"XLIST", b"select", b"uid fetch", b"UID STORE", b"UID SEARCH", b"UID EXPUNGE",
         b"UID MOVE", b"uid copy", b"FOO"]
args = st.lists(st.one_of(st.sampled_from(ATOMS), no_crlf), max_size=6).map(b" ".join)


def safe(line: bytes) -> bytes:
    """No accidental literal announcement at the end of a generated line."""
    return line + b"x" if re.search(rb"\{\d+\+?\}\Z", line) else line


@st.composite
def plain_command(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["verb", "verb", "verb", "badtag", "raw", "long"]))
    if kind == "verb":
        separator = draw(st.sampled_from([b" ", b"", b"  "]))
        return safe(b"g1 " + draw(st.sampled_from(VERBS)) + separator + draw(args))
    if kind == "badtag":
        tag = draw(st.sampled_from([b"", b"+", b"*", b"(", b"a{", b"\xff", b"%", b"a\"b", b"\x01", b"]"]))
        return safe(tag + b" " + draw(st.sampled_from(VERBS)) + b" " + draw(args))
    if kind == "long":
        return b"g1 " + draw(st.sampled_from([b"LOGIN ", b"SELECT ", b"FETCH 1 ", b""])) + b"a" * draw(
            st.sampled_from([1000, 65535, 65537, 200000]))
    return safe(draw(no_crlf))


@st.composite
def literal_command(draw: Any) -> tuple[bytes, bytes, bool, bytes]:
    """(prefix up to and without the literal, literal data, non-sync, rest)."""
    verb = draw(st.sampled_from([b"LOGIN", b"APPEND INBOX", b"APPEND INBOX (\\Seen)", b"APPEND Nope",
                                 b"SELECT", b"CREATE", b"SEARCH CHARSET UTF-8 TEXT", b"ID (\"name\"",
                                 b"LIST \"\"", b"FETCH 1", b"STATUS", b"RENAME INBOX"]))
    data = draw(st.one_of(st.binary(max_size=200), st.sampled_from([
        b"", b"\r\n", b"..", b"a/../../b", b"\0", b"Subject: x\r\n\r\nbody\r\n", b"\r\n.\r\n"])))
    nonsync = draw(st.booleans())
    rest = draw(st.sampled_from([b"", b" x", b" {3}", b")", b" (", b" \"pw\""]))
    return b"g2 " + verb + b" ", data, nonsync, safe(rest)


HUGE = [b"{4294967295}", b"{4294967296}", b"{99999999999999999999}", b"{70000}", b"{41943041}",
        b"{18446744073709551615}", b"{0000000000000000000001}"]


HUGE_VERBS = [b"APPEND INBOX", b"LOGIN", b"SELECT", b"APPEND INBOX (\\Seen) \"1-Jan-2024 00:00:00 +0000\""]


def send_plain(session: Session, line: bytes) -> None:
    if FRAMING.match(line):
        return
    session.client.send(line + b"\r\n")


def send_literal(session: Session, item: tuple[bytes, bytes, bool, bytes]) -> None:
    prefix, data, nonsync, rest = item
    if nonsync:
        # RFC 7888: no continuation; the data follows at once.
        session.client.send(prefix + b"{%d+}\r\n" % len(data) + data + rest + b"\r\n")
        return
    session.client.send(prefix + b"{%d}\r\n" % len(data))
    reply = session.until_tagged(b"g2", stop_at_continuation=True)
    if reply.startswith(b"+"):
        session.client.send(data + rest + b"\r\n")


def send_huge(session: Session, announcement: bytes, verb: bytes, logged_in: bool) -> None:
    """An absurd synchronizing literal must be refused with a tagged reply,
    never a "+" (the client would then have to send gigabytes); before login
    any literal over the pre-login cap (8 kB) is refused that way."""
    session.client.send(b"g3 " + verb + b" " + announcement + b"\r\n")
    reply = session.until_tagged(b"g3", stop_at_continuation=True)
    if announcement in (b"{0000000000000000000001}",):
        if reply.startswith(b"+"):
            session.client.send(b"x\r\n")
        return
    if announcement == b"{70000}" and verb.startswith(b"APPEND") and logged_in:
        # Within APPENDLIMIT: a legitimate message size.
        assert reply.startswith(b"+"), reply
        session.client.send(b"Subject: big\r\n\r\n" + b"x" * (70000 - 19) + b"\r\n" + b"\r\n")
        return
    assert not reply.startswith(b"+"), f"{verb!r} {announcement!r} was accepted"
    assert reply.split(b" ")[1] in (b"NO", b"BAD"), reply


item = st.one_of(plain_command().map(lambda line: ("plain", line)),
                 literal_command().map(lambda lit: ("literal", lit)),
                 st.tuples(st.sampled_from(HUGE), st.sampled_from(HUGE_VERBS)).map(lambda h: ("huge", h)))


def run_session(port: int, items: list[tuple[str, Any]], state: str) -> None:
    session = Session(port)
    try:
        if state != "none":
            assert b" OK" in session.command(b'LOGIN "%s" "%s"' % (ALICE.encode(), PASSWORD.encode()))
        if state == "selected":
            assert b" OK" in session.command(b"SELECT INBOX")
        for kind, value in items:
            if kind == "plain":
                send_plain(session, value)
            elif kind == "literal":
                send_literal(session, value)
            else:
                send_huge(session, *value, logged_in=state != "none")
            session.sentinel()
    except ByeClosed:
        pass
    finally:
        session.client.close()


@pytest.fixture
def imap_server(make_server: Any) -> Any:
    srv = make_server(NO_THROTTLE)
    srv.add_domain("example.com")
    srv.add_user(ALICE)
    for i in range(3):
        srv.call(srv.ctx.store.deliver, ALICE,
                 f"From: x@remote.test\r\nSubject: m{i}\r\nMessage-ID: <m{i}@x>\r\n\r\nbody {i}\r\n".encode())
    return srv


def test_generated_commands_and_literals(imap_server: Any) -> None:
    port = imap_server.port("imap")
    with watch_failures() as watch:

        @HYPOTHESIS
        @given(items=st.lists(item, min_size=1, max_size=5),
               state=st.sampled_from(["none", "authenticated", "selected"]))
        def check(items: list[tuple[str, Any]], state: str) -> None:
            run_session(port, items, state)

        check()
        watch.check()


def test_many_bad_commands_end_with_bye(imap_server: Any) -> None:
    """Too many BADs in a row: `* BYE`, then a close -- not a reset."""
    session = Session(imap_server.port("imap"))
    try:
        with pytest.raises(ByeClosed):
            for _ in range(200):
                session.client.send(b"x FROB\r\n")
                session.until_tagged(b"x")
        assert session.bye
    finally:
        session.client.close()


def test_8bit_tag_is_refused(imap_server: Any) -> None:
    session = Session(imap_server.port("imap"))
    try:
        session.client.send(b"\x80 NOOP\r\n")
        reply = session.read()
        assert reply.startswith(b"* BAD"), reply
    finally:
        session.client.close()


def test_bad_argument_echo_is_7bit(imap_server: Any) -> None:
    session = Session(imap_server.port("imap"))
    try:
        session.command(b'LOGIN "%s" "%s"' % (ALICE.encode(), PASSWORD.encode()))
        for line in (b'APPEND INBOX "\xc3\xa9" {1+}\r\nx', b"FROB\xc3\xa9"):
            reply = session.command(line)
            assert reply.split(b" ")[1] == b"BAD"
            assert STATUS_TEXT.match(reply), reply
    finally:
        session.client.close()
