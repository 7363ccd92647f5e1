# -*- test-case-name: tests.protocols.test_imap_fetch_model -*-
"""xmail.protocols.imap.fetch: ENVELOPE / BODYSTRUCTURE against the RFC 3501
grammar, the RFC's own examples, and byte-exact section extraction."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmail.message import parse_message
from xmail.protocols.imap.fetch import (
    FileRange,
    HeaderSelection,
    filter_header,
    iter_selection,
    nstring,
    read_selection,
    render_body,
    render_envelope,
    resolve_section,
    select_body,
    sets_seen,
    structure_of,
)
from xmail.protocols.imap.model import FetchAtt, Section
from xmail.store.interfaces import MessageMeta

CORPUS = Path(__file__).parent.parent / "data" / "mime"
CORPUS_FILES = sorted(CORPUS.glob("*.eml"))


# --- a strict reader of RFC 3501 response values -------------------------------------------------


class Lst(list):
    """A parenthesised list; seps[i] is what stood between items i and i+1."""

    def __init__(self) -> None:
        super().__init__()
        self.seps: list[bytes] = []


class Reader:
    """Reads one value: NIL -> None, number -> int, quoted/literal -> Str,
    list -> Lst.  Anything outside RFC 3501 §9 raises AssertionError."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def value(self) -> Any:
        data, pos = self.data, self.pos
        c = data[pos:pos + 1]
        if c == b"(":
            self.pos += 1
            out = Lst()
            while True:
                if self.data[self.pos:self.pos + 1] == b")":
                    self.pos += 1
                    assert out, "empty list is not in the grammar here"
                    return out
                if out:
                    if self.data[self.pos:self.pos + 1] == b" ":
                        out.seps.append(b" ")
                        self.pos += 1
                    else:
                        out.seps.append(b"")
                out.append(self.value())
        if c == b'"':
            end = pos + 1
            chars = bytearray()
            while True:
                ch = data[end:end + 1]
                assert ch, "unterminated quoted string"
                if ch == b"\\":
                    nxt = data[end + 1:end + 2]
                    assert nxt in (b'"', b"\\"), "only quoted-specials may be escaped"
                    chars += nxt
                    end += 2
                    continue
                if ch == b'"':
                    break
                assert ch not in (b"\r", b"\n") and ch[0] < 0x80 and ch != b"\x00", "bad QUOTED-CHAR"
                chars += ch
                end += 1
            self.pos = end + 1
            return Str(bytes(chars))
        if c == b"{":
            close = data.index(b"}\r\n", pos)
            length = int(data[pos + 1:close])
            start = close + 3
            self.pos = start + length
            assert self.pos <= len(data)
            body = data[start:self.pos]
            assert b"\x00" not in body
            return Str(body)
        if data.startswith(b"NIL", pos):
            self.pos += 3
            return None
        end = pos
        while end < len(data) and data[end:end + 1].isdigit():
            end += 1
        assert end > pos, f"unexpected {data[pos:pos + 20]!r}"
        self.pos = end
        return int(data[pos:end])


class Str(bytes):
    pass


def read(data: bytes) -> Any:
    reader = Reader(data)
    value = reader.value()
    assert reader.pos == len(data), "trailing bytes"
    return value


# --- RFC 3501 §9 productions ----------------------------------------------------------------------


def is_string(x: Any) -> bool:
    return isinstance(x, Str)


def is_nstring(x: Any) -> bool:
    return x is None or is_string(x)


def spaced(x: Lst) -> bool:
    return all(sep == b" " for sep in x.seps)


def check_param(x: Any) -> None:
    # body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
    if x is None:
        return
    assert isinstance(x, Lst) and spaced(x) and len(x) % 2 == 0
    assert all(is_string(item) for item in x)


def check_dsp(x: Any) -> None:
    # body-fld-dsp = "(" string SP body-fld-param ")" / nil
    if x is None:
        return
    assert isinstance(x, Lst) and spaced(x) and len(x) == 2 and is_string(x[0])
    check_param(x[1])


def check_lang(x: Any) -> None:
    # body-fld-lang = nstring / "(" string *(SP string) ")"
    if isinstance(x, Lst):
        assert spaced(x) and all(is_string(item) for item in x)
    else:
        assert is_nstring(x)


def check_addresses(x: Any) -> None:
    # env-from etc. = "(" 1*address ")" / nil ; addresses follow each other without SP
    if x is None:
        return
    assert isinstance(x, Lst) and all(sep == b"" for sep in x.seps)
    open_groups = 0
    for address in x:
        # address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
        assert isinstance(address, Lst) and spaced(address) and len(address) == 4
        assert all(is_nstring(item) for item in address)
        name, adl, mailbox, host = address
        if host is None:
            if mailbox is None:  # end of group
                assert name is None and adl is None and open_groups == 1
                open_groups -= 1
            else:  # start of group
                assert open_groups == 0
                open_groups += 1
        else:
            assert mailbox is not None
    assert open_groups == 0


def check_envelope(x: Any) -> None:
    # envelope = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP env-to SP
    #            env-cc SP env-bcc SP env-in-reply-to SP env-message-id ")"
    assert isinstance(x, Lst) and spaced(x) and len(x) == 10
    assert is_nstring(x[0]) and is_nstring(x[1]) and is_nstring(x[8]) and is_nstring(x[9])
    for addresses in x[2:8]:
        check_addresses(addresses)


def check_body(x: Any, extended: bool) -> None:
    # body = "(" (body-type-1part / body-type-mpart) ")"
    assert isinstance(x, Lst)
    if isinstance(x[0], Lst):
        # body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
        count = 0
        while isinstance(x[count], Lst):
            check_body(x[count], extended)
            count += 1
        assert all(sep == b"" for sep in x.seps[:count - 1]), "bodies follow each other without SP"
        assert spaced_from(x, count - 1)
        assert is_string(x[count])
        rest = x[count + 1:]
        if extended:
            # body-ext-mpart = body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc ...]]]
            assert len(rest) == 4
            check_param(rest[0])
            check_dsp(rest[1])
            check_lang(rest[2])
            assert is_nstring(rest[3])
        else:
            assert rest == []
        return
    assert spaced(x)
    media, subtype = x[0], x[1]
    assert is_string(media) and is_string(subtype)
    # body-fields = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP body-fld-octets
    check_param(x[2])
    assert is_nstring(x[3]) and is_nstring(x[4]) and is_string(x[5]) and isinstance(x[6], int)
    i = 7
    if media.upper() == b"MESSAGE" and subtype.upper() == b"RFC822":
        # body-type-msg = media-message SP body-fields SP envelope SP body SP body-fld-lines
        check_envelope(x[7])
        check_body(x[8], extended)
        assert isinstance(x[9], int)
        i = 10
    elif media.upper() == b"TEXT":
        assert isinstance(x[7], int)  # body-type-text: body-fld-lines
        i = 8
    rest = x[i:]
    if extended:
        # body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc ...]]]
        assert len(rest) == 4
        assert is_nstring(rest[0])
        check_dsp(rest[1])
        check_lang(rest[2])
        assert is_nstring(rest[3])
    else:
        assert rest == []


def spaced_from(x: Lst, index: int) -> bool:
    return all(sep == b" " for sep in x.seps[index:])


def test_reader_rejects_what_the_grammar_does_not_allow() -> None:
    for bad in (b'"a\rb"', b'"a\\nb"', b'"\xc3\xa9"', b"()", b"(NIL NIL", b"NILX", b"{3}\r\nab"):
        with pytest.raises((AssertionError, ValueError, IndexError)):
            read(bad)


# --- the corpus against the grammar -------------------------------------------------------------------


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_matches_the_grammar(path: Path) -> None:
    structure = parse_message(path.read_bytes()).structure
    check_envelope(read(render_envelope(structure)))
    check_body(read(render_body(structure, extended=True)), extended=True)
    check_body(read(render_body(structure, extended=False)), extended=False)


# --- RFC 3501's own examples -----------------------------------------------------------------------


def rfc3501_example() -> bytes:
    """A message with the ENVELOPE of RFC 3501 §8 and the BODY of §7.4.2."""
    text = b"".join(b"%-48s\r\n" % (b"line %d" % i) for i in range(22)) + b"x" * 52  # 23 lines, 1152 B
    diff = b"".join(b"A" * 60 + b"\r\n" for _ in range(72)) + b"B" * 90  # 73 lines, 4554 B
    assert len(text) == 1152 and len(diff) == 4554
    return (
        b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
        b"From: Terry Gray <gray@cac.washington.edu>\r\n"
        b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
        b"To: imap@cac.washington.edu\r\n"
        b"cc: minutes@CNRI.Reston.VA.US,\r\n"
        b"    John Klensin <KLENSIN@MIT.EDU>\r\n"
        b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: MULTIPART/MIXED; BOUNDARY=\"--=_xyz\"\r\n"
        b"\r\n"
        b"----=_xyz\r\n"
        b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
        b"\r\n" + text + b"\r\n"
        b"----=_xyz\r\n"
        b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n"
        b"Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
        b"Content-Description: Compiler diff\r\n"
        b"Content-Transfer-Encoding: BASE64\r\n"
        b"\r\n" + diff + b"\r\n"
        b"----=_xyz--\r\n"
    )


def test_rfc3501_example_envelope() -> None:
    # RFC 3501 §8, "S: * 12 FETCH (FLAGS (\Seen) INTERNALDATE ... ENVELOPE (...)"
    expected = (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
        b'"<B27397-0100000@cac.washington.edu>")'
    )
    assert render_envelope(parse_message(rfc3501_example()).structure) == expected


def test_rfc3501_example_body() -> None:
    # RFC 3501 §7.4.2 BODYSTRUCTURE example (names in upper case there and here)
    expected = (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
    )
    structure = parse_message(rfc3501_example()).structure
    assert render_body(structure, extended=False) == expected
    # the extended form adds md5, dsp, lang, loc per part and param, dsp, lang, loc after MIXED
    extended = render_body(structure, extended=True)
    assert extended.endswith(b'"MIXED" ("BOUNDARY" "--=_xyz") NIL NIL NIL)')
    assert b'"7BIT" 1152 23 NIL NIL NIL NIL)' in extended
    check_body(read(extended), extended=True)


# --- hand-checked corpus renderings -----------------------------------------------------------------


def corpus_structure(name: str) -> dict[str, Any]:
    return parse_message((CORPUS / name).read_bytes()).structure


def test_groups_envelope() -> None:
    env = render_envelope(corpus_structure("10-groups-and-odd-addresses.eml"))
    assert env == (
        b'("26 Aug 76 14:30 EDT" "\\"quoted\\" subject with \\\\ backslash" '
        b'(("Smith, John" NIL "john.smith" "example.com")) '
        b'(("Jane Secretary" NIL "secretary" "example.com")) '
        b'((NIL "@relay1.example,@relay2.example" "replies" "example.com")) '
        b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
        b'((NIL NIL "Friends" NIL)(NIL NIL "anna" "example.com")("Ben \\"B\\" Bo" NIL "ben" "example.com")'
        b'(NIL NIL NIL NIL)(NIL NIL "localonly" ".MISSING-HOST-NAME.")) '
        b'((NIL NIL "\\"quoted local\\"" "example.com")) '
        b'"<parent@example.com>" "<odd-1@example.com>")'
    )


def test_eightbit_header_goes_as_literal() -> None:
    env = render_envelope(corpus_structure("08-eightbit-charsets.eml"))
    subject = "Grüße aus Köln".encode()
    assert b"{%d}\r\n%s" % (len(subject), subject) in env
    check_envelope(read(env))


def test_message_rfc822_bodystructure() -> None:
    body = render_body(corpus_structure("05-toplevel-rfc822.eml"), extended=False)
    inner = b"From: inner@example.org\r\nSubject: inner message\r\n\r\nInner text.\r\n"
    assert body == (
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" %d '
        b'(NIL "inner message" ((NIL NIL "inner" "example.org")) ((NIL NIL "inner" "example.org")) '
        b'((NIL NIL "inner" "example.org")) NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1) 4)' % len(inner)
    )


def test_extension_data() -> None:
    body = render_body(corpus_structure("13-extension-fields.eml"), extended=True)
    assert body == (
        b'(("TEXT" "HTML" ("CHARSET" "utf-8") "<part1@example.com>" "The document" "7BIT" 32 1 '
        b'"Q2hlY2sgSW50ZWdyaXR5IQ==" ("INLINE" NIL) "en" "doc.html")'
        b'("IMAGE" "PNG" NIL "<img1@example.com>" NIL "BASE64" 12 NIL '
        b'("INLINE" ("FILENAME" "img.png")) NIL NIL)'
        b' "RELATED" ("BOUNDARY" "rel" "TYPE" "text/html") NIL ("en" "de") "http://example.com/doc")'
    )


@pytest.mark.parametrize("value, wire", [
    (None, b"NIL"),
    ("", b'""'),
    ("plain", b'"plain"'),
    ('a "b" \\c', b'"a \\"b\\" \\\\c"'),
    ("line\r\nbreak", b"{11}\r\nline\r\nbreak"),
    ("é", b"{2}\r\n\xc3\xa9"),
    ("x" * 1001, b"{1001}\r\n" + b"x" * 1001),
    ("nul\x00byte", b'"nulbyte"'),
])
def test_nstring(value: Any, wire: bytes) -> None:
    assert nstring(value) == wire


# --- sections ---------------------------------------------------------------------------------------------


def fetch(name: str, att: FetchAtt) -> bytes | None:
    data = (CORPUS / name).read_bytes()
    selection = select_body(att, parse_message(data).structure)
    if selection is None:
        return None
    file = io.BytesIO(data)
    whole = read_selection(selection, file)
    assert b"".join(iter_selection(selection, file, chunk_size=7)) == whole
    if isinstance(selection, FileRange):
        assert len(selection) == len(whole)
    return whole


def body(section: str = "", partial: tuple[int, int] | None = None, peek: bool = False) -> FetchAtt:
    parts: list[int] = []
    pieces = section.split(".") if section else []
    while pieces and pieces[0].isdigit():
        parts.append(int(pieces.pop(0)))
    text, fields = ".".join(pieces), ()
    if " " in text:
        text, names = text.split(" ", 1)
        fields = tuple(names.strip("()").upper().split())
    return FetchAtt("BODY[]", Section(tuple(parts), text, fields), partial, peek)


FORWARD = "04-message-rfc822.eml"
FORWARDED = (
    b"From: Original Sender <orig@example.org>\r\n"
    b"To: forwarder@example.com\r\n"
    b"Subject: Original\r\n"
    b"Date: Thu, 5 Nov 2026 17:00:00 +0000\r\n"
    b"Message-ID: <orig-1@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n'
    b"\r\n"
)
FORWARDED_TEXT = (
    b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nInner plain body.\r\n"
    b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Inner html body.</p>\r\n--alt--"
)


@pytest.mark.parametrize("section, expected", [
    ("1", b"See below."),
    ("1.MIME", b"Content-Type: text/plain\r\n\r\n"),
    ("2", FORWARDED + FORWARDED_TEXT),  # the whole encapsulated message
    ("2.MIME", b"Content-Type: message/rfc822\r\nContent-Description: forwarded message\r\n\r\n"),
    ("2.HEADER", FORWARDED),
    ("2.TEXT", FORWARDED_TEXT),
    ("2.1", b"Inner plain body."),  # sub-parts of message/rfc822 are the inner message's parts
    ("2.2", b"<p>Inner html body.</p>"),
    ("2.2.MIME", b"Content-Type: text/html; charset=utf-8\r\n\r\n"),
    ("2.HEADER.FIELDS (Subject FROM)",
     b"From: Original Sender <orig@example.org>\r\nSubject: Original\r\n\r\n"),
    ("2.HEADER.FIELDS.NOT (FROM TO DATE MESSAGE-ID MIME-VERSION CONTENT-TYPE)",
     b"Subject: Original\r\n\r\n"),
    ("HEADER.FIELDS (X-NOT-THERE)", b"\r\n"),
    ("3", None),
    ("0", None),
    ("1.1", None),  # a text part has no sub-parts
    ("1.HEADER", None),  # HEADER only of message/rfc822 parts
    ("2.3", None),
])
def test_sections_of_a_forwarded_message(section: str, expected: bytes | None) -> None:
    assert fetch(FORWARD, body(section)) == expected


def test_whole_message_header_and_text() -> None:
    data = (CORPUS / FORWARD).read_bytes()
    header_end = data.index(b"\r\n\r\n") + 4
    assert fetch(FORWARD, body("")) == data
    assert fetch(FORWARD, body("HEADER")) == data[:header_end]
    assert fetch(FORWARD, body("TEXT")) == data[header_end:]
    assert fetch(FORWARD, FetchAtt("RFC822")) == data
    assert fetch(FORWARD, FetchAtt("RFC822.HEADER")) == data[:header_end]
    assert fetch(FORWARD, FetchAtt("RFC822.TEXT")) == data[header_end:]


def test_sections_of_a_single_part_message() -> None:
    name = "01-plain-no-mime.eml"
    data = (CORPUS / name).read_bytes()
    text = b"Are we still on for lunch tomorrow?\r\nAlice\r\n"
    # RFC 3501 §6.4.5: a non-multipart message has only part 1, its body
    assert fetch(name, body("1")) == text
    assert fetch(name, body("TEXT")) == text
    assert fetch(name, body("2")) is None
    assert fetch(name, body("1.1")) is None
    assert fetch(name, body("1.MIME")) == data[: len(data) - len(text)]


def test_sections_of_a_top_level_message_rfc822() -> None:
    name = "05-toplevel-rfc822.eml"
    inner_header = b"From: inner@example.org\r\nSubject: inner message\r\n\r\n"
    assert fetch(name, body("1")) == inner_header + b"Inner text.\r\n"
    assert fetch(name, body("1.HEADER")) == inner_header
    assert fetch(name, body("1.TEXT")) == b"Inner text.\r\n"
    assert fetch(name, body("1.1")) == b"Inner text.\r\n"
    assert fetch(name, body("1.2")) is None


def test_nested_multipart_numbers() -> None:
    name = "02-nested-multipart.eml"
    assert fetch(name, body("1.1")) == b"Please find the quarterly report attached."
    assert fetch(name, body("1.2")).startswith(b"<html>")
    assert fetch(name, body("2")).startswith(b"JVBERi0xLjQK")
    assert fetch(name, body("1")).startswith(b"--inner\r\n")
    assert fetch(name, body("1.3")) is None


@pytest.mark.parametrize("partial, expected", [
    ((0, 10), b"Are we sti"),
    ((4, 5), b"we st"),
    ((40, 100), b"ce\r\n"),  # count past the end: what there is
    ((44, 10), b""),  # origin at the end
    ((1000, 10), b""),  # RFC 3501 §6.4.5: origin past the end -> empty string
])
def test_partial(partial: tuple[int, int], expected: bytes) -> None:
    assert fetch("01-plain-no-mime.eml", body("TEXT", partial)) == expected


def test_partial_of_header_fields() -> None:
    assert fetch(FORWARD, body("2.HEADER.FIELDS (SUBJECT)", (3, 6))) == b"ject: "
    assert fetch(FORWARD, body("HEADER.FIELDS (SUBJECT)", (100, 6))) == b""


def test_header_fields_keep_folded_lines_and_order() -> None:
    block = (b"Subject: one\r\nX-A: first\r\n  continued\r\nsubject: two\r\nX-B: b\r\nno colon here\r\n\r\n")
    assert filter_header(block, frozenset({"SUBJECT", "X-A"}), False) == (
        b"Subject: one\r\nX-A: first\r\n  continued\r\nsubject: two\r\n\r\n")
    assert filter_header(block, frozenset({"SUBJECT", "X-A"}), True) == b"X-B: b\r\nno colon here\r\n\r\n"
    # a header that has no blank line (message with no body)
    assert filter_header(b"A: 1\r\nB: 2", frozenset({"B"}), False) == b"B: 2\r\n\r\n"


def test_header_selection_type() -> None:
    structure = corpus_structure(FORWARD)
    selection = resolve_section(structure, Section((), "HEADER.FIELDS", ("FROM",)))
    assert isinstance(selection, HeaderSelection) and not selection.exclude
    assert selection.start == 0 and selection.fields == frozenset({"FROM"})


def test_sets_seen() -> None:
    assert sets_seen(body("1")) and not sets_seen(body("1", peek=True))
    assert sets_seen(FetchAtt("RFC822")) and sets_seen(FetchAtt("RFC822.TEXT"))
    assert not sets_seen(FetchAtt("RFC822.HEADER")) and not sets_seen(FetchAtt("ENVELOPE"))


def test_streaming_a_large_range() -> None:
    big = b"Subject: big\r\n\r\n" + bytes(range(256)) * 4096
    structure = parse_message(big).structure
    selection = select_body(body("TEXT", (100, 700_000)), structure)
    assert isinstance(selection, FileRange) and len(selection) == 700_000
    chunks = list(iter_selection(selection, io.BytesIO(big), chunk_size=65536))
    assert max(len(c) for c in chunks) == 65536
    assert b"".join(chunks) == big[16 + 100:16 + 100 + 700_000]
    # a file truncated under us ends the stream early instead of hanging
    assert sum(len(c) for c in iter_selection(selection, io.BytesIO(big[:5000]))) == 5000 - 116


def test_structure_of_parses_when_the_cache_is_missing_or_stale() -> None:
    data = (CORPUS / FORWARD).read_bytes()
    meta = parse_message(data)
    reads: list[int] = []

    def read_message() -> bytes:
        reads.append(1)
        return data

    assert structure_of(meta, read_message) is meta.structure and not reads
    assert structure_of(MessageMeta(), read_message) == meta.structure and len(reads) == 1
    stale = MessageMeta(structure={"v": 0, "body": {}})
    assert structure_of(stale, read_message) == meta.structure and len(reads) == 2


# --- never raises, always the grammar --------------------------------------------------------------------

_CORPUS_BYTES = [p.read_bytes() for p in CORPUS_FILES]
_fragments = st.sampled_from([b"\r\n", b"--", b"--b", b"--outer-boundary", b"--fwd", b"--alt\r\n",
                              b"Content-Type: multipart/mixed; boundary=b\r\n",
                              b"Content-Type: message/rfc822\r\n",
                              b"\r\n\r\n", b"\xff\xfe", b'"', b"(", b"From: a:b,<c@d>;\r\n", b"\x00"])
_sections = st.builds(
    Section,
    st.lists(st.integers(0, 4), max_size=4).map(tuple),
    st.sampled_from(["", "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"]),
    st.just(("SUBJECT", "CONTENT-TYPE")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_CORPUS_BYTES), st.lists(st.tuples(st.integers(0, 2000), _fragments), max_size=6),
       st.lists(_sections, min_size=1, max_size=5),
       st.none() | st.tuples(st.integers(0, 3000), st.integers(1, 3000)))
def test_mutated_messages_render_and_resolve(base: bytes, inserts: list[tuple[int, bytes]],
                                             sections: list[Section],
                                             partial: tuple[int, int] | None) -> None:
    data = base
    for position, fragment in inserts:
        position %= len(data) + 1
        data = data[:position] + fragment + data[position:]
    structure = parse_message(data).structure
    check_envelope(read(render_envelope(structure)))
    check_body(read(render_body(structure, extended=True)), extended=True)
    check_body(read(render_body(structure, extended=False)), extended=False)
    for section in sections:
        if section.text == "MIME" and not section.part:
            continue  # the grammar refuses it before we get here
        selection = select_body(FetchAtt("BODY[]", section, partial), structure)
        if selection is None:
            continue
        assert 0 <= selection.start <= selection.end <= len(data)
        out = read_selection(selection, io.BytesIO(data))
        if partial is not None:
            assert len(out) <= partial[1]


# --- through the real store --------------------------------------------------------------------------------


def test_corpus_through_the_real_store(tmp_path: Path) -> None:
    """Deliver the corpus into a MailStore (sync mode): the cached metas come
    back from LMDB equal, and sections read from the stored files match."""
    import dataclasses

    from xmail.config import Settings
    from xmail.db.environment import IndexEnvironment
    from xmail.store.mailstore import MailStore

    settings = Settings()
    server = dataclasses.replace(settings.server, data_dir=str(tmp_path))
    settings = dataclasses.replace(settings, server=server)
    env = IndexEnvironment(str(tmp_path / "index"))
    env.open()
    try:
        store = MailStore(env, settings, None, reactor=None)
        for path in CORPUS_FILES:
            results: list[Any] = []
            store.deliver("user@example.com", path.read_bytes()).addBoth(results.append)
            assert not hasattr(results[0], "raiseException"), results[0]
        folder = store.mailbox("user@example.com").folder("INBOX")
        records = folder.records()
        assert len(records) == len(CORPUS_FILES)
        for record, path in zip(records, CORPUS_FILES, strict=True):
            data = path.read_bytes()
            meta = folder.meta(record.uid)
            expected = parse_message(data)
            assert meta.structure == expected.structure and meta.headers == expected.headers
            assert record.size == len(data)
            for section in (Section(), Section((1,)), Section((), "HEADER"), Section((), "TEXT"),
                            Section((2, 1)), Section((1,), "MIME")):
                selection = resolve_section(meta.structure, section)
                if selection is None:
                    continue
                with folder.open_message(record.uid) as file:
                    stored = read_selection(selection, file)
                assert stored == read_selection(selection, io.BytesIO(data))
    finally:
        env.close()
