# -*- test-case-name: tests.message.test_mime -*-
"""xmail.message: structure, offsets, decoded headers and the text digest.

Expectations are derived from the corpus files and the RFCs by hand (the
byte ranges are checked by slicing the file and comparing with the text we
wrote into it), never by copying the parser's output.
"""

from __future__ import annotations

import calendar
import json
import marshal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmail.message import (
    MISSING_HOST,
    TEXT_DIGEST_LIMIT,
    decode_words,
    extract_text,
    parse_address_list,
    parse_content_type,
    parse_message,
    split_multipart,
)
from xmail.message import mime as parse

CORPUS = Path(__file__).parent.parent / "data" / "mime"


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.eml"))


def walk(part: dict[str, Any]):
    yield part
    for child in part.get("parts", ()):
        yield from walk(child)
    if "msg" in part:
        yield from walk(part["msg"]["body"])


def check_offsets(data: bytes, part: dict[str, Any], lo: int, hi: int) -> None:
    """Every part lies in its parent, its header ends with a blank line (or
    the part has no body), children are ordered and disjoint."""
    assert lo <= part["hs"] <= part["bs"] <= part["be"] <= hi
    assert part["size"] == part["be"] - part["bs"]
    header = data[part["hs"]:part["bs"]]
    if part["bs"] < part["be"]:
        assert header in (b"\r\n", b"\n") or header.endswith((b"\r\n\r\n", b"\n\n"))
    last = part["bs"]
    for child in part.get("parts", ()):
        assert child["hs"] >= last
        check_offsets(data, child, part["bs"], part["be"])
        last = child["be"]
    if "msg" in part:
        inner = part["msg"]["body"]
        assert inner["hs"] == part["bs"] and inner["be"] == part["be"]
        check_offsets(data, inner, part["bs"], part["be"])


def body_of(data: bytes, part: dict[str, Any]) -> bytes:
    return data[part["bs"]:part["be"]]


def header_of(data: bytes, part: dict[str, Any]) -> bytes:
    return data[part["hs"]:part["bs"]]


# --- the corpus as a whole -------------------------------------------------------------------


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_offsets_and_serialisation(path: Path) -> None:
    data = path.read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")  # the corpus obeys the store invariant
    meta = parse_message(data)
    body = meta.structure["body"]
    assert body["hs"] == 0 and body["be"] == len(data)
    check_offsets(data, body, 0, len(data))
    # JSON and marshal friendly, valid Unicode throughout (no surrogates)
    assert json.loads(json.dumps(meta.structure, ensure_ascii=False).encode("utf-8")) == meta.structure
    assert marshal.loads(marshal.dumps((meta.structure, meta.headers, meta.text)))[0] == meta.structure
    meta.text.encode("utf-8")
    for value in meta.headers.values():
        value.encode("utf-8")
    for part in walk(body):
        assert part["type"] == part["type"].lower() and part["subtype"] == part["subtype"].lower()
        if part["type"] == "multipart":
            assert part["parts"], "a multipart has at least one part (RFC 3501 body-type-mpart)"
        if part["type"] in ("text",) or (part["type"], part["subtype"]) == ("message", "rfc822"):
            assert isinstance(part["lines"], int)
        else:
            assert "lines" not in part


# --- hand-checked messages -------------------------------------------------------------------


def test_plain_message_without_mime_headers() -> None:
    data = load("01-plain-no-mime.eml")
    meta = parse_message(data)
    body = meta.structure["body"]
    # RFC 2045 §5.2: no Content-Type means text/plain; charset=us-ascii
    assert (body["type"], body["subtype"], body["params"]) == ("text", "plain", [["charset", "us-ascii"]])
    assert body["enc"] == "7bit"
    assert body_of(data, body) == b"Are we still on for lunch tomorrow?\r\nAlice\r\n"
    assert body["size"] == 44 and body["lines"] == 2
    assert header_of(data, body).endswith(b"Message-ID: <B27397-0100000@example.org>\r\n\r\n")
    env = meta.structure["env"]
    assert env["from"] == [["Alice", None, "alice", "example.org"]]
    assert env["to"] == [[None, None, "bob", "example.com"]]
    assert env["subject"] == "Lunch?"
    assert env["date"] == "Mon, 7 Feb 1994 21:52:25 -0800"
    assert env["message-id"] == "<B27397-0100000@example.org>"
    assert "sender" not in env and "cc" not in env
    # 21:52:25 -0800 is 05:52:25 UTC the next day; the sent day stays the 7th
    assert meta.headers[":sent-ts"] == str(calendar.timegm((1994, 2, 8, 5, 52, 25)))
    assert meta.headers[":sent-day"] == "1994-02-07"
    assert meta.text == "are we still on for lunch tomorrow?\nalice\n"


def test_nested_multipart_offsets() -> None:
    data = load("02-nested-multipart.eml")
    meta = parse_message(data)
    mixed = meta.structure["body"]
    assert (mixed["type"], mixed["subtype"]) == ("multipart", "mixed")
    assert mixed["params"] == [["boundary", "outer-boundary"]]
    alternative, pdf = mixed["parts"]
    assert (alternative["type"], alternative["subtype"]) == ("multipart", "alternative")
    plain, htmlpart = alternative["parts"]
    # RFC 2046 §5.1.1: the CRLF before a delimiter belongs to the delimiter
    assert body_of(data, plain) == b"Please find the quarterly report attached."
    assert header_of(data, plain) == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    assert body_of(data, htmlpart) == (
        b"<html><body><p>Please find the <b>quarterly</b> report attached.</p></body></html>")
    assert plain["lines"] == 1
    assert body_of(data, alternative) == (
        b"--inner\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"Please find the quarterly report attached.\r\n"
        b"--inner\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
        b"<html><body><p>Please find the <b>quarterly</b> report attached.</p></body></html>\r\n"
        b"--inner--\r\n")
    assert header_of(data, alternative) == b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
    assert (pdf["type"], pdf["subtype"], pdf["enc"]) == ("application", "pdf", "base64")
    assert pdf["params"] == [["name", "report.pdf"]]
    assert pdf["disp"] == ["attachment", [["filename", "report.pdf"]]]
    assert body_of(data, pdf) == b"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg=="
    assert meta.structure["env"]["cc"] == [["Dave", None, "dave", "example.com"],
                                           [None, None, "eve", "example.com"]]
    assert meta.structure["env"]["from"] == [["Carol Q. Public", None, "carol", "example.net"]]
    # the digest holds both text parts, HTML without tags, and not the PDF
    assert "please find the quarterly report attached." in meta.text
    assert "<b>" not in meta.text and "jvberi" not in meta.text
    assert "epilogue" not in meta.text and "multi-part message" not in meta.text


def test_encoded_words_and_rfc2231_names() -> None:
    data = load("03-encoded-names.eml")
    meta = parse_message(data)
    assert meta.headers["subject"] == "\N{PAPERCLIP} Résumé und Lebenslauf"
    assert meta.headers["from"] == "François Müller <francois@example.fr>"
    assert meta.headers["to"] == "Jörg <joerg@example.de>"
    env = meta.structure["env"]
    # ENVELOPE carries the raw field (RFC 3501 §7.4.2); clients decode the words
    assert env["subject"] == "=?utf-8?b?8J+TjiBSw6lzdW3DqQ==?= =?utf-8?q?_und_Lebenslauf?="
    assert env["from"] == [["=?utf-8?q?Fran=C3=A7ois_M=C3=BCller?=", None, "francois", "example.fr"]]
    text, pdf, cv = meta.structure["body"]["parts"]
    assert pdf["params"] == [["name", "=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="]]
    assert pdf["disp"] == ["attachment", [["filename*", "utf-8''r%C3%A9sum%C3%A9.pdf"]]]
    # folded Content-Disposition with RFC 2231 continuations kept as sent
    assert cv["disp"] == ["attachment", [["filename*0*", "utf-8''Lebens"],
                                         ["filename*1*", "lauf%20%C3%BCbersicht.txt"]]]
    assert "bonjour jörg, voici mon résumé." in meta.text
    assert "lebenslauf: studium in münchen" in meta.text  # base64 text/plain attachment
    assert meta.headers[":sent-ts"] == str(calendar.timegm((2026, 11, 5, 13, 0, 0)))


def test_message_rfc822_inside_multipart() -> None:
    data = load("04-message-rfc822.eml")
    meta = parse_message(data)
    text, forwarded = meta.structure["body"]["parts"]
    assert text["params"] == []  # Content-Type without charset: no default added
    assert body_of(data, text) == b"See below."
    assert (forwarded["type"], forwarded["subtype"]) == ("message", "rfc822")
    assert forwarded["desc"] == "forwarded message"
    inner = forwarded["msg"]
    assert body_of(data, forwarded).startswith(b"From: Original Sender <orig@example.org>\r\n")
    assert body_of(data, forwarded).endswith(b"<p>Inner html body.</p>\r\n--alt--")
    assert forwarded["lines"] == body_of(data, forwarded).count(b"\r\n") + 1
    assert inner["env"]["subject"] == "Original"
    assert inner["env"]["from"] == [["Original Sender", None, "orig", "example.org"]]
    alt = inner["body"]
    assert alt["hs"] == forwarded["bs"]
    assert header_of(data, alt).endswith(b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n')
    assert [body_of(data, p) for p in alt["parts"]] == [b"Inner plain body.", b"<p>Inner html body.</p>"]
    # top-level headers come from the outer message only
    assert meta.headers["subject"] == "Fwd: Original"
    assert "inner plain body." in meta.text and "see below." in meta.text


def test_top_level_message_rfc822() -> None:
    data = load("05-toplevel-rfc822.eml")
    body = parse_message(data).structure["body"]
    assert (body["type"], body["subtype"]) == ("message", "rfc822")
    assert body_of(data, body) == b"From: inner@example.org\r\nSubject: inner message\r\n\r\nInner text.\r\n"
    assert body["lines"] == 4
    assert body["msg"]["env"]["subject"] == "inner message"
    assert body_of(data, body["msg"]["body"]) == b"Inner text.\r\n"


def test_multipart_without_boundary_reads_as_text() -> None:
    data = load("06-broken-no-boundary.eml")
    meta = parse_message(data)
    body = meta.structure["body"]
    assert (body["type"], body["subtype"]) == ("text", "plain")
    assert "parts" not in body and body["lines"] == 4
    assert "still text" in meta.text


def test_unterminated_multipart_ends_at_the_end() -> None:
    data = load("07-broken-unterminated.eml")
    first, second = parse_message(data).structure["body"]["parts"]
    assert body_of(data, first) == b"first part"
    assert body_of(data, second) == b"second part never closed\r\n"


def test_eightbit_headers_and_charsets() -> None:
    data = load("08-eightbit-charsets.eml")
    meta = parse_message(data)
    assert meta.headers["subject"] == "Grüße aus Köln"
    assert meta.structure["env"]["to"] == [["张伟", None, "zhang", "example.cn"]]
    assert "schöne grüsse, 你好" in meta.text  # casefold: ß -> ss
    assert "strasse in münchen" in meta.text  # ISO-8859-1 body
    assert "привет мир" in meta.text  # KOI8-R body
    assert [p["enc"] for p in meta.structure["body"]["parts"]] == ["8bit"] * 3


def test_quoted_printable_base64_and_html_text() -> None:
    meta = parse_message(load("09-qp-base64-text.eml"))
    assert "café crème € price, a softwrapped line" in meta.text  # windows-1252 QP, soft break
    assert "ελληνικά κείμενο and σίσυφοσ" in meta.text  # base64 UTF-8, case-folded
    assert "fish & chips été" in meta.text  # HTML entities decoded
    assert "color" not in meta.text  # <style> dropped


def test_groups_routes_and_odd_addresses() -> None:
    meta = parse_message(load("10-groups-and-odd-addresses.eml"))
    env = meta.structure["env"]
    assert env["from"] == [["Smith, John", None, "john.smith", "example.com"]]
    assert env["sender"] == [["Jane Secretary", None, "secretary", "example.com"]]
    assert env["reply-to"] == [[None, "@relay1.example,@relay2.example", "replies", "example.com"]]
    # RFC 3501 §7.4.2 group syntax: start (NIL NIL name NIL), end (NIL NIL NIL NIL)
    assert env["to"] == [[None, None, "undisclosed-recipients", None], [None, None, None, None]]
    assert env["cc"] == [[None, None, "Friends", None],
                         [None, None, "anna", "example.com"],
                         ['Ben "B" Bo', None, "ben", "example.com"],
                         [None, None, None, None],
                         [None, None, "localonly", MISSING_HOST]]
    assert env["bcc"] == [[None, None, '"quoted local"', "example.com"]]
    assert env["subject"] == '"quoted" subject with \\ backslash'
    assert env["in-reply-to"] == "<parent@example.com>"
    # RFC 5322 §4.3 obsolete zones: EDT is -0400
    assert meta.headers[":sent-ts"] == str(calendar.timegm((1976, 8, 26, 18, 30, 0)))


def test_digest_defaults_to_message_rfc822() -> None:
    data = load("11-digest.eml")
    first, second = parse_message(data).structure["body"]["parts"]
    assert (first["type"], first["subtype"]) == ("message", "rfc822")  # RFC 2046 §5.1.5
    assert first["msg"]["env"]["subject"] == "first"
    assert body_of(data, first["msg"]["body"]) == b"first body"
    assert body_of(data, second["msg"]["body"]) == b"second body"


def test_header_only_message() -> None:
    data = load("12-headers-only.eml")
    body = parse_message(data).structure["body"]
    assert body["bs"] == body["be"] == len(data) and body["size"] == 0 and body["lines"] == 0


def test_extension_fields() -> None:
    meta = parse_message(load("13-extension-fields.eml"))
    related = meta.structure["body"]
    assert related["params"] == [["boundary", "rel"], ["type", "text/html"]]
    assert related["lang"] == ["en", "de"] and related["loc"] == "http://example.com/doc"
    doc, img = related["parts"]
    assert doc["id"] == "<part1@example.com>" and doc["desc"] == "The document"
    assert doc["md5"] == "Q2hlY2sgSW50ZWdyaXR5IQ==" and doc["lang"] == ["en"] and doc["loc"] == "doc.html"
    assert doc["disp"] == ["inline", []]
    assert img["disp"] == ["inline", [["filename", "img.png"]]]


# --- pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, decoded", [
    ("=?utf-8?q?caf=C3=A9?=", "café"),
    ("=?UTF-8?B?Y2Fmw6k=?=", "café"),
    ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # RFC 2047 §6.2: space between words drops
    ("=?utf-8?q?a?= b =?utf-8?q?c?=", "a b c"),
    ("=?iso-8859-1*de?q?K=F6ln?=", "Köln"),  # RFC 2231 §5 language tag
    ("=?x-unknown?q?plain?=", "plain"),
    ("=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="),  # undecodable stays as it is
    ("no words here", "no words here"),
])
def test_decode_words(raw: str, decoded: str) -> None:
    assert decode_words(raw) == decoded


@pytest.mark.parametrize("value, expected", [
    ('text/plain; charset="utf-8"', ("text", "plain", [["charset", "utf-8"]])),
    ("TEXT/Plain (comment) ; Charset = us-ascii (x)", ("text", "plain", [["charset", "us-ascii"]])),
    ('application/x; name="a \\"q\\" b.txt"', ("application", "x", [["name", 'a "q" b.txt']])),
    ("application/x; name=two words.txt", ("application", "x", [["name", "two words.txt"]])),
    ("text", None),
    ("", None),
    ("/plain", None),
])
def test_content_type(value: str, expected: Any) -> None:
    assert parse_content_type(value) == expected


def test_address_list_edge_cases() -> None:
    assert parse_address_list("") is None
    assert parse_address_list(" , ,") is None
    assert parse_address_list("a@b, , c@d") == [[None, None, "a", "b"], [None, None, "c", "d"]]
    # a group never closed still gets its end marker
    assert parse_address_list("G: a@b") == [[None, None, "G", None], [None, None, "a", "b"],
                                            [None, None, None, None]]
    assert parse_address_list("<a@[192.0.2.1]>") == [[None, None, "a", "[192.0.2.1]"]]
    assert parse_address_list("=?utf-8?q?Z=C3=B6e?= <z@x>") == [["=?utf-8?q?Z=C3=B6e?=", None, "z", "x"]]


def test_split_multipart_rules() -> None:
    body = (b"preamble\r\n--b \t\r\none\r\n--bx\r\nstill one\r\n--b\r\n\r\n--b--junk?\r\n"
            b"--b--\r\nepilogue")
    ranges = split_multipart(body, 0, len(body), b"b")
    # "--bx" is not a delimiter; transport padding after "--b" is; "--b--junk?" is not
    assert [body[s:e] for s, e in ranges] == [b"one\r\n--bx\r\nstill one", b"\r\n--b--junk?"]


def test_text_digest_is_bounded_and_file_fallback_is_not() -> None:
    line = b"Lorem ipsum dolor sit amet.\r\n"
    data = b"Subject: big\r\n\r\n" + line * (TEXT_DIGEST_LIMIT // 20) + b"NEEDLE at the end\r\n"
    meta = parse_message(data)
    assert len(meta.text) <= TEXT_DIGEST_LIMIT
    assert meta.structure["text_cut"] is True
    assert "needle at the end" not in meta.text
    assert "needle at the end" in extract_text(data)


def test_deep_nesting_and_many_parts_are_bounded() -> None:
    depth = 200
    data = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                    for i in range(depth)) + b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    meta = parse_message(data)
    levels = 0
    part = meta.structure["body"]
    while part.get("parts"):
        part = part["parts"][0]
        levels += 1
    assert levels <= parse.MAX_DEPTH + 1
    many = b"Content-Type: multipart/mixed; boundary=m\r\n\r\n" + b"--m\r\n\r\nx\r\n" * 5000 + b"--m--\r\n"
    parts = parse_message(many).structure["body"]["parts"]
    assert 1 <= len(parts) < parse.MAX_PARTS


def test_bare_lf_message_is_tolerated() -> None:
    data = b"Subject: lf\nContent-Type: multipart/mixed; boundary=q\n\n--q\n\nhello\n--q--\n"
    meta = parse_message(data)
    (part,) = meta.structure["body"]["parts"]
    assert data[part["bs"]:part["be"]] == b"hello"
    assert meta.headers["subject"] == "lf"


def test_bad_dates_are_ignored() -> None:
    for value in (b"yesterday", b"Mon, 99 Foo 2026 99:99:99 +9999", b"", b"31 Feb 0 00:00 +0000"):
        headers = parse_message(b"Date: " + value + b"\r\n\r\nx").headers
        assert ":sent-ts" not in headers or headers[":sent-ts"].lstrip("-").isdigit()


# --- never raises ---------------------------------------------------------------------------------

_CORPUS_BYTES = [p.read_bytes() for p in corpus_files()]
_fragments = st.sampled_from([b"\r\n", b"--", b"--b", b"--outer-boundary", b"Content-Type: multipart/mixed;"
                              b" boundary=b\r\n", b"Content-Type: message/rfc822\r\n", b"=?utf-8?b?", b"?=",
                              b"(", b")", b'"', b"<", b">", b":", b";", b",", b"@", b"\r\n\r\n", b"\xff",
                              b"Content-Transfer-Encoding: base64\r\n", b"From: a:b,<c@d>;\r\n"])


def _check_never_raises(data: bytes) -> None:
    meta = parse._MessageParser(data).parse()  # without parse_message's safety net
    check_offsets(data, meta.structure["body"], 0, len(data))
    json.dumps(meta.structure, ensure_ascii=False).encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    _check_never_raises(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_CORPUS_BYTES), st.lists(st.tuples(st.integers(0, 2000), _fragments), max_size=8),
       st.integers(0, 2000))
def test_mutated_corpus_never_raises(base: bytes, inserts: list[tuple[int, bytes]], cut: int) -> None:
    data = base
    for position, fragment in inserts:
        position %= len(data) + 1
        data = data[:position] + fragment + data[position:]
    _check_never_raises(data[: len(data) - cut % (len(data) + 1)])


# --- SORT / THREAD keys (RFC 5256 §2.1, RFC 5957) -------------------------------------------------


@pytest.mark.parametrize("subject, base, reply", [
    ("Re: hello", "hello", True),
    ("RE: [list] Re: Fwd: hello (fwd)", "hello", True),  # steps 2, 3, 4 repeated
    ("[list] hello", "hello", False),  # step 4
    ("[list]", "[list]", False),  # step 4 does not empty the subject
    ("[Fwd: Re: test]", "test", True),  # step 6, then again from step 2
    ("  Re:   spaced\ttabs  ", "spaced tabs", True),  # step 1
    ("Fw[x]: topic", "topic", True),  # subj-refwd with a blob before ":"
    ("Fwd : spaced colon", "spaced colon", True),  # subj-refwd allows WSP before ":"
    ("Forward: x", "Forward: x", False),  # "fw" must be followed by "d", WSP, a blob or ":"
    ("Reply about Re: x", "Reply about Re: x", False),  # only a leading prefix counts
    ("hello (fwd) (fwd)  ", "hello", True),
    ("", "", False),
])
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    from xmail.message import base_subject

    assert base_subject(subject) == (base, reply)


def test_sort_keys_in_headers() -> None:
    meta = parse_message(load("03-encoded-names.eml"))
    assert meta.headers[":base-subject"] == "\N{PAPERCLIP} Résumé und Lebenslauf"
    assert ":subject-reply" not in meta.headers
    assert meta.headers[":sort-from"] == "francois"
    assert meta.headers[":display-from"] == "François Müller"  # RFC 5957: decoded display name
    assert meta.headers[":display-to"] == "Jörg"
    meta = parse_message(load("04-message-rfc822.eml"))
    assert meta.headers[":base-subject"] == "Original" and meta.headers[":subject-reply"] == "1"
    assert meta.headers[":display-from"] == "forwarder@example.com"  # no name: the addr-spec
    meta = parse_message(load("10-groups-and-odd-addresses.eml"))
    # RFC 5256 §3 with RFC 3501 §7.4.2: a group's marker is the first address,
    # so its name is the key (the first member "anna" is not).
    assert meta.headers[":sort-cc"] == "Friends"
    assert meta.headers[":sort-to"] == "undisclosed-recipients"  # an empty group too
    assert meta.headers[":display-to"] == "undisclosed-recipients"
