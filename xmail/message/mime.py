# -*- test-case-name: tests.message.test_mime -*-
"""Parse a message once, at delivery, into what IMAP and SEARCH need later.

`parse_message(data) -> MessageMeta` never raises: broken MIME falls back to
text/plain semantics (RFC 2045 §5.2, RFC 2046 §5.1.1 are lenient about what a
reader must tolerate).  Input has CRLF line endings (store invariant); bare
LF input is tolerated but not the goal.

`MessageMeta.structure` — JSON / marshal friendly (dict, list, str, int,
float, None; every str is valid Unicode, no surrogates)::

    message = {
      "env":  envelope,          # RFC 3501 §7.4.2 ENVELOPE ingredients
      "body": part,              # the message's top-level body part
    }
    structure = message + {"v": 1}   # layout version

    envelope = {                 # keys present only when the field is
      "date": str,               #   present in the header (first occurrence)
      "subject": str,            # raw (RFC 2047 words NOT decoded), unfolded,
      "in-reply-to": str,        #   stripped, 8-bit bytes decoded as UTF-8
      "message-id": str,         #   (Latin-1 if that fails)
      "from" | "sender" | "reply-to" | "to" | "cc" | "bcc": [address, ...],
    }
    address = [name, adl, mailbox, host]   # str | None each; a group is
        # [None, None, "group name", None] ... members ... [None, None, None, None]
        # (RFC 3501 §7.4.2); a missing domain is ".MISSING-HOST-NAME."

    part = {
      "type": "text", "subtype": "plain",      # lower-cased
      "params": [[name, value], ...],          # names lower-cased, values raw
      "enc": "7bit",                           # lower-cased Content-Transfer-Encoding
      "size": int,                             # body octets (be - bs)
      "hs": int, "bs": int, "be": int,         # byte offsets into the file: header
                                               #   [hs, bs) incl. the blank line,
                                               #   body [bs, be)
      # optional (absent = NIL):
      "id": str, "desc": str, "md5": str, "loc": str,   # raw header values
      "disp": [type, [[name, value], ...]],    # Content-Disposition, type lower-cased
      "lang": [str, ...],                      # Content-Language
      "lines": int,                            # text/* and message/rfc822 only
      "parts": [part, ...],                    # multipart/* only (at least one)
      "msg": message,                          # message/rfc822 only; its body part's
                                               #   "hs" == this part's "bs"
    }

For the top-level part "hs" is 0 and "be" is len(data) (RFC822.SIZE).

`MessageMeta.headers` — decoded (RFC 2047, unfolded, stripped) values of the
first occurrence of: from, to, cc, bcc, subject, date, message-id,
in-reply-to, references, reply-to, sender (lower-case keys, absent when the
field is absent), plus two derived keys that cannot clash with field names:

    ":sent-ts"  — the Date field as UTC seconds since the epoch (str of an int)
    ":sent-day" — "YYYY-MM-DD" of the Date field in its *own* zone, which is
                  what SENTBEFORE/SENTON/SENTSINCE compare (RFC 3501 §6.4.4:
                  "disregarding time and timezone")

and the SORT / THREAD keys of `sort_keys` (":base-subject",
":subject-reply", ":sort-from", ":sort-to", ":sort-cc", ":display-from",
":display-to"), so that SORT never needs the structure or the file.

`MessageMeta.text` — case-folded (str.casefold) digest of the decoded text/*
parts (Content-Transfer-Encoding undone, charset decoded, HTML tags dropped),
encapsulated messages included, parts separated by "\\n", bounded to
TEXT_DIGEST_LIMIT characters.  SEARCH BODY matches it; if `structure` says a
text part was cut (`"text_cut": True` at top level) the searcher reads the
file instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from typing import Any

from twisted.logger import Logger

from xmail.message.address import parse_address_list
from xmail.message.headers import (
    codec_for,
    decode_words,
    header_fields,
    param,
    parse_content_type,
    parse_disposition,
    without_comments,
)
from xmail.message.subject import base_subject
from xmail.message.text import decode_transfer, html_to_text

_log = Logger()


@dataclass(slots=True)
class MessageMeta:
    """Parse results cached in the index at delivery.

    `structure` is a JSON-friendly tree the IMAP layer turns into ENVELOPE and
    BODYSTRUCTURE without opening the file; `headers` holds the header fields
    clients list (From, To, Cc, Subject, Date, Message-ID, ...), decoded;
    `text` is a bounded, decoded, case-folded digest of the text parts for
    SEARCH BODY/TEXT; the parser fills it in, the store's index does not keep
    it (it goes to the full-text index), so IFolder.meta() returns it empty.
    """

    structure: dict[str, Any] = dataclasses.field(default_factory=dict)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    text: str = ""

STRUCTURE_VERSION = 1
TEXT_DIGEST_LIMIT = 256 * 1024  # characters of MessageMeta.text
MAX_DEPTH = 24  # nested multiparts / message/rfc822 before we stop descending
MAX_PARTS = 2000  # body parts in one message before we stop splitting
MAX_REFERENCES = 100  # message ids kept of a References field: the first and the last 99
MAX_DATE_CHARS = 256  # a Date field longer than this is not a date

ENVELOPE_FIELDS = ("date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc",
                   "in-reply-to", "message-id")
ADDRESS_FIELDS = frozenset(("from", "sender", "reply-to", "to", "cc", "bcc"))
DECODED_FIELDS = ("from", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to",
                  "references", "reply-to", "sender")
_WANTED_PART = frozenset(("content-type", "content-transfer-encoding", "content-id",
                          "content-description", "content-md5", "content-location",
                          "content-disposition", "content-language"))
_WANTED_MESSAGE = _WANTED_PART | frozenset(ENVELOPE_FIELDS) | frozenset(DECODED_FIELDS)


def parse_message(data: bytes) -> MessageMeta:
    """Parse a whole message (CRLF line endings).  Never raises."""
    try:
        return _MessageParser(data).parse()
    except Exception:  # a parser bug must not lose a delivery
        _log.failure("parse_message failed; storing a text/plain fallback")
        return fallback_meta(data)


def extract_text(data: bytes, limit: int | None = None) -> str:
    """The case-folded text digest of a message like MessageMeta.text, but
    bounded by limit characters (None: unbounded) — for SEARCH BODY/TEXT on
    messages whose cached digest was cut.  Never raises."""
    try:
        parser = _MessageParser(data, text_limit=limit)
        parser.parse()
        return "\n".join(parser.text)
    except Exception:
        _log.failure("extract_text failed")
        return ""


def fallback_meta(data: bytes) -> MessageMeta:
    """The plainest possible structure: one text/plain body, no header."""
    size = len(data)
    part = {"type": "text", "subtype": "plain", "params": [["charset", "us-ascii"]],
            "enc": "7bit", "size": size, "hs": 0, "bs": 0, "be": size,
            "lines": _count_lines(data, 0, size)}
    return MessageMeta(structure={"v": STRUCTURE_VERSION, "env": {}, "body": part},
                       headers={}, text="")


def bounded_references(value: str) -> str:
    """A References value cut to MAX_REFERENCES message ids: the first (the
    thread's root) and the most recent ones, as RFC 5322 §3.6.4 suggests
    when trimming; THREAD and every later reader see a bounded list."""
    ids = value.split()
    if len(ids) <= MAX_REFERENCES:
        return value
    return " ".join([ids[0]] + ids[-(MAX_REFERENCES - 1):])


# --- dates --------------------------------------------------------------------


def parse_date_field(value: str) -> tuple[int, str] | None:
    """(UTC seconds, "YYYY-MM-DD" in the field's own zone) or None."""
    try:
        parts = parsedate_tz(value)
        if parts is None:
            return None
        year, month, day = parts[0], parts[1], parts[2]
        if not (1 <= month <= 12 and 1 <= day <= 31 and 0 < year < 10000):
            return None
        if parts[9] is None:
            parts = parts[:9] + (0,)  # RFC 5322 §3.3: "-0000" and missing zones read as UTC
        return int(mktime_tz(parts)), f"{year:04d}-{month:02d}-{day:02d}"
    except (ValueError, OverflowError, TypeError, IndexError):
        return None


# --- SORT / THREAD keys (RFC 5256, RFC 5957) ------------------------------------------------

def sort_keys(env: dict[str, Any], subject: str | None) -> dict[str, str]:
    """Derived ":..." header keys for SORT and THREAD (issue #6):

    ":base-subject" / ":subject-reply" ("1" or absent) — RFC 5256 §2.1;
    ":sort-from", ":sort-to", ":sort-cc" — addr-mailbox of the first address
    (RFC 5256 §3); ":display-from", ":display-to" — its decoded display
    name, else "mailbox@host" (RFC 5957 §3).
    """
    out: dict[str, str] = {}
    if subject is not None:
        base, reply = base_subject(subject)
        out[":base-subject"] = base
        if reply:
            out[":subject-reply"] = "1"
    for field in ("from", "to", "cc"):
        addresses = env.get(field)
        if not addresses:
            continue
        name, _adl, mailbox, host = addresses[0]
        if host is None:
            # RFC 3501 §7.4.2: a group starts with the marker (NIL NIL name
            # NIL); as the first address its addr-mailbox, the group name,
            # is the sort key (RFC 5256 §3) and stands for the display name.
            out[":sort-" + field] = mailbox or ""
            if field != "cc":
                out[":display-" + field] = decode_words(mailbox).strip() if mailbox else ""
            continue
        out[":sort-" + field] = mailbox or ""
        if field != "cc":
            display = decode_words(name).strip() if name else ""
            out[":display-" + field] = display or f"{mailbox}@{host}"
    return out


# --- body text ----------------------------------------------------------------

def _count_lines(data: bytes, start: int, end: int) -> int:
    if end <= start:
        return 0
    lines = data.count(b"\n", start, end)
    return lines if data[end - 1] == 0x0A else lines + 1


# --- the parser -----------------------------------------------------------------


class _MessageParser:
    def __init__(self, data: bytes, text_limit: int | None = TEXT_DIGEST_LIMIT):
        self.data = data
        self.text_limit = text_limit if text_limit is not None else 1 << 62
        self.parts = 0
        self.text: list[str] = []
        self.text_len = 0
        self.text_cut = False

    def parse(self) -> MessageMeta:
        data = self.data
        message, fields = self.message(0, len(data), depth=0)
        headers: dict[str, str] = {}
        for name in DECODED_FIELDS:
            raw = fields.get(name)
            if raw is not None:
                headers[name] = decode_words(raw)
        if "references" in headers:
            headers["references"] = bounded_references(headers["references"])
        date = fields.get("date")
        if date is not None and len(date) <= MAX_DATE_CHARS:
            parsed = parse_date_field(date)
            if parsed is not None:
                headers[":sent-ts"] = str(parsed[0])
                headers[":sent-day"] = parsed[1]
        headers.update(sort_keys(message["env"], headers.get("subject")))
        structure: dict[str, Any] = {"v": STRUCTURE_VERSION, **message}
        if self.text_cut:
            structure["text_cut"] = True
        return MessageMeta(structure=structure, headers=headers, text="\n".join(self.text))

    def message(self, start: int, end: int, depth: int) -> tuple[dict[str, Any], dict[str, str]]:
        part, fields = self.part(start, end, depth, ("text", "plain"), is_message=True)
        env: dict[str, Any] = {}
        for name in ENVELOPE_FIELDS:
            raw = fields.get(name)
            if raw is None:
                continue
            if name in ADDRESS_FIELDS:
                addresses = parse_address_list(raw)
                if addresses is not None:
                    env[name] = addresses
            else:
                env[name] = raw
        return {"env": env, "body": part}, fields

    def header_end(self, start: int, end: int) -> int:
        """Offset of the body: just after the blank line ending the header."""
        data = self.data
        if data.startswith(b"\r\n", start, end):
            return start + 2
        if data.startswith(b"\n", start, end):
            return start + 1
        crlf = data.find(b"\r\n\r\n", start, end)
        lf = data.find(b"\n\n", start, end if crlf < 0 else crlf)
        if lf >= 0:
            return lf + 2
        if crlf >= 0:
            return crlf + 4
        return end  # all header, no body (RFC 5322 §2.1 allows a missing body)

    def part(self, start: int, end: int, depth: int, default: tuple[str, str],
             is_message: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
        data = self.data
        self.parts += 1
        bs = self.header_end(start, end)
        fields = header_fields(data[start:bs], _WANTED_MESSAGE if is_message else _WANTED_PART)
        ctype_raw = fields.get("content-type")
        parsed = parse_content_type(ctype_raw) if ctype_raw is not None else None
        if parsed is None:
            ctype, subtype = default
            params = [["charset", "us-ascii"]] if default == ("text", "plain") else []
        else:
            ctype, subtype, params = parsed
        enc = fields.get("content-transfer-encoding", "")
        enc = enc.split("(")[0].strip().strip('"').lower() or "7bit"
        part: dict[str, Any] = {"type": ctype, "subtype": subtype, "params": params, "enc": enc,
                                "size": end - bs, "hs": start, "bs": bs, "be": end}
        for field, key in (("content-id", "id"), ("content-description", "desc"),
                           ("content-md5", "md5"), ("content-location", "loc")):
            value = fields.get(field)
            if value is not None:
                part[key] = value
        disp = fields.get("content-disposition")
        if disp is not None:
            parsed_disp = parse_disposition(disp)
            if parsed_disp is not None:
                part["disp"] = parsed_disp
        lang = fields.get("content-language")
        if lang is not None:
            tags = [t.strip() for t in without_comments(lang).split(",") if t.strip()][:64]
            if tags:
                part["lang"] = tags

        descend = depth < MAX_DEPTH and self.parts < MAX_PARTS
        if ctype == "multipart":
            boundary = param(params, "boundary")
            children = (self.multipart(bs, end, boundary, subtype, depth)
                        if boundary and descend else [])
            if children:
                part["parts"] = children
            else:
                # RFC 3501 §7.4.2 needs at least one body part: read it as text.
                part["type"], part["subtype"] = "text", "plain"
                part["lines"] = _count_lines(data, bs, end)
                self.add_text(part)
        elif ctype == "message" and subtype == "rfc822":
            if enc in ("7bit", "8bit", "binary") and descend:
                inner, _fields = self.message(bs, end, depth + 1)
                part["msg"] = inner
                part["lines"] = _count_lines(data, bs, end)
            else:
                # RFC 2046 §5.2.1 forbids encoding message/rfc822; such a body
                # is opaque, so it is presented as a plain attachment.
                part["type"], part["subtype"] = "application", "octet-stream"
        elif ctype == "text":
            part["lines"] = _count_lines(data, bs, end)
            self.add_text(part)
        return part, fields

    def multipart(self, bs: int, be: int, boundary: str, subtype: str, depth: int
                  ) -> list[dict[str, Any]]:
        ranges = split_multipart(self.data, bs, be, boundary.encode("utf-8", "replace"))
        default = ("message", "rfc822") if subtype == "digest" else ("text", "plain")  # RFC 2046 §5.1.5
        children = []
        for start, end in ranges:
            if self.parts >= MAX_PARTS:
                break
            child, _fields = self.part(start, end, depth + 1, default)
            children.append(child)
        return children

    def add_text(self, part: dict[str, Any]) -> None:
        room = self.text_limit - self.text_len
        if room <= 0:
            self.text_cut = True
            return
        bs, be = part["bs"], part["be"]
        # Bytes needed for `room` characters, with slack for the encoding.
        budget = room * 4 + 1024 if part["enc"] == "base64" else room * 4 + 16
        if be - bs > budget:
            be = bs + budget
            self.text_cut = True
        raw = decode_transfer(self.data[bs:be], part["enc"])
        text = raw.decode(codec_for(param(part["params"], "charset")), "replace")
        if part["subtype"] == "html":
            # Inline tags vanish ("<b>x</b>y" reads "xy"), block tags separate
            # words; HTML whitespace is insignificant, so runs collapse.
            text = html_to_text(text)
        text = text.replace("\r\n", "\n").casefold()
        if len(text) > room:
            text = text[:room]
            self.text_cut = True
        self.text.append(text)
        self.text_len += len(text) + 1


def split_multipart(data: bytes, bs: int, be: int, boundary: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the body parts of a multipart body (RFC 2046 §5.1.1).

    A delimiter line is "--" boundary, optionally "--" (the close delimiter),
    then optional transport padding (spaces/tabs) and the line end; the CRLF
    before it belongs to the delimiter, not to the preceding part.  Preamble
    and epilogue are dropped; a missing close delimiter ends the last part at
    the end of the body.
    """
    delim = b"--" + boundary
    ranges: list[tuple[int, int]] = []
    part_start = -1
    pos = bs
    while True:
        i = data.find(delim, pos, be)
        if i < 0:
            break
        if i != bs and data[i - 1] != 0x0A:
            pos = i + 1
            continue
        j = i + len(delim)
        closing = data.startswith(b"--", j, be)
        k = j + 2 if closing else j
        eol = data.find(b"\n", k, be)
        line_end = be if eol < 0 else eol + 1
        if data[k:line_end].strip(b" \t\r\n"):
            pos = i + 1  # the boundary is only a prefix of this line
            continue
        if part_start >= 0:
            e = i
            if e > part_start and data[e - 1] == 0x0A:
                e -= 1
                if e > part_start and data[e - 1] == 0x0D:
                    e -= 1
            ranges.append((part_start, e))
            if len(ranges) >= MAX_PARTS:
                return ranges
        if closing:
            return ranges
        part_start = line_end
        pos = line_end
    if part_start >= 0:
        ranges.append((part_start, be))
    return ranges
