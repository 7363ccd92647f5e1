# -*- test-case-name: tests.store.test_parse -*-
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

import binascii
import codecs
import html
import re
from email.utils import mktime_tz, parsedate_tz
from typing import Any

from twisted.logger import Logger

from xmail.store.interfaces import MessageMeta

_log = Logger()

STRUCTURE_VERSION = 1
TEXT_DIGEST_LIMIT = 256 * 1024  # characters of MessageMeta.text
MAX_DEPTH = 24  # nested multiparts / message/rfc822 before we stop descending
MAX_PARTS = 2000  # body parts in one message before we stop splitting
MISSING_HOST = ".MISSING-HOST-NAME."  # what Dovecot uses; NIL host would read as a group

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


# --- header fields ------------------------------------------------------------


def decode_header_bytes(raw: bytes) -> str:
    """8-bit header bytes as text: UTF-8 (RFC 6532), else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def header_fields(block: bytes, wanted: frozenset[str] | None = None) -> dict[str, str]:
    """Unfolded raw values of a header block, first occurrence of each field.

    RFC 5322 §2.2.3 unfolding: a CRLF followed by WSP is removed.  Lines that
    are not fields (no colon) are skipped.  Names are lower-cased, values
    stripped; wanted limits the result to those names.
    """
    out: dict[str, str] = {}
    name: str | None = None
    value: list[str] = []
    for line in decode_header_bytes(block).split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        if line[:1] in (" ", "\t"):
            if name is not None:
                value.append(line)
            continue
        if name is not None and name not in out:
            out[name] = "".join(value).strip()
        name = None
        colon = line.find(":")
        if colon <= 0:
            continue
        key = line[:colon].rstrip(" \t").lower()
        if wanted is not None and key not in wanted:
            continue
        name = key
        value = [line[colon + 1:]]
    if name is not None and name not in out:
        out[name] = "".join(value).strip()
    return out


# --- RFC 2047 encoded words ----------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_WS_BETWEEN_WORDS = re.compile(r"(\?=)\s+(?==\?)")
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "ks_c_5601-1987": "cp949",
    "iso-8859-8-i": "iso-8859-8", "x-mac-roman": "mac_roman", "unicode-1-1-utf-7": "utf-7",
    "windows-874": "cp874", "x-user-defined": "latin-1", "us-ascii": "utf-8",
    "ascii": "utf-8", "unknown-8bit": "utf-8", "x-unknown": "utf-8", "default": "utf-8",
}
_codec_cache: dict[str, str] = {}


def codec_for(charset: str | None) -> str:
    """A Python codec name for a MIME charset; unknown ones read as UTF-8.

    US-ASCII reads as UTF-8 because undeclared 8-bit text is UTF-8 far more
    often than anything else today.
    """
    if not charset:
        return "utf-8"
    key = charset.strip().strip('"').lower()
    name = _codec_cache.get(key)
    if name is None:
        alias = _CHARSET_ALIASES.get(key, key)
        try:
            name = codecs.lookup(alias).name
        except (LookupError, ValueError):
            name = "utf-8"
        if len(_codec_cache) < 512:
            _codec_cache[key] = name
    return name


def _decode_word(match: re.Match[str]) -> str:
    charset, kind, text = match.group(1), match.group(2), match.group(3)
    charset = charset.split("*", 1)[0]  # RFC 2231 §5 language suffix
    try:
        if kind in "bB":
            text = text.rstrip("=")
            raw = binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=True)
        else:
            raw = binascii.a2b_qp(text.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return raw.decode(codec_for(charset), "replace")


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; whitespace between adjacent ones is
    dropped (RFC 2047 §6.2).  Lenient: words inside quoted strings and words
    glued to other text are decoded too, as every mail client does."""
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(_decode_word, _WS_BETWEEN_WORDS.sub(r"\1", value))


# --- structured field values (RFC 2045 §5.1, RFC 2183, RFC 2231) ----------------

# RFC 2045 §5.1 token: US-ASCII CHARs except SPACE, CTLs and tspecials
_TSPECIAL_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")


def _skip_cfws(s: str, i: int) -> int:
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                c = s[i]
                if c == "\\":
                    i += 2
                    continue
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


def _quoted(s: str, i: int) -> tuple[str, int]:
    """s[i] is the opening quote; returns (content unescaped, index after)."""
    out = []
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i


def parse_params(s: str, i: int) -> list[list[str]]:
    """`*(";" parameter)` from index i: [[name lower-cased, raw value], ...].
    RFC 2231 names (`name*`, `name*0*`) are kept as they are: BODYSTRUCTURE
    passes them through and clients decode them."""
    params: list[list[str]] = []
    n = len(s)
    while i < n:
        i = _skip_cfws(s, i)
        if i >= n:
            break
        if s[i] == ";":
            i += 1
            continue
        m = _TSPECIAL_TOKEN.match(s, i)
        if m is None:  # junk: skip to the next ';'
            j = s.find(";", i + 1)
            if j < 0:
                break
            i = j
            continue
        name = m.group(0).lower()
        i = _skip_cfws(s, m.end())
        if i >= n or s[i] != "=":
            j = s.find(";", i)
            if j < 0:
                break
            i = j
            continue
        i = _skip_cfws(s, i + 1)
        if i < n and s[i] == '"':
            value, i = _quoted(s, i)
        else:
            bare = _TSPECIAL_TOKEN.match(s, i)
            after = _skip_cfws(s, bare.end()) if bare is not None else i
            if bare is not None and (after >= n or s[after] == ";"):
                value, i = bare.group(0), after
            else:
                # Lenient: a bare value with spaces etc. runs to ';' (common in names).
                j = s.find(";", i)
                j = n if j < 0 else j
                value = s[i:j].strip()
                i = j
        if len(params) < 64:
            params.append([name, value])
    return params


def parse_content_type(value: str) -> tuple[str, str, list[list[str]]] | None:
    """(type, subtype, params) or None when the value is not a media type."""
    i = _skip_cfws(value, 0)
    m = _TSPECIAL_TOKEN.match(value, i)
    if m is None:
        return None
    i = _skip_cfws(value, m.end())
    if i >= len(value) or value[i] != "/":
        return None
    i = _skip_cfws(value, i + 1)
    m2 = _TSPECIAL_TOKEN.match(value, i)
    if m2 is None:
        return None
    return m.group(0).lower(), m2.group(0).lower(), parse_params(value, m2.end())


def parse_disposition(value: str) -> list[Any] | None:
    i = _skip_cfws(value, 0)
    m = _TSPECIAL_TOKEN.match(value, i)
    if m is None:
        return None
    return [m.group(0).lower(), parse_params(value, m.end())]


def param(params: list[list[str]], name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value
    return None


# --- addresses (RFC 5322 §3.4, with the obsolete forms of §4.4) -------------------

_ADDR_SPECIALS = '()<>[]:;@\\,"'


def _address_tokens(s: str) -> list[tuple[str, str]]:
    """(kind, text): kind is "atom", "qs" (unescaped content), "comment",
    "dlit" (domain literal incl. brackets) or the special character itself."""
    toks: list[tuple[str, str]] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            text, i = _quoted(s, i)
            toks.append(("qs", text))
        elif c == "(":
            j = _skip_cfws(s, i)
            toks.append(("comment", s[i + 1:j - 1] if s[j - 1:j] == ")" else s[i + 1:j]))
            i = j
        elif c == "[":
            j = s.find("]", i)
            j = n - 1 if j < 0 else j
            toks.append(("dlit", s[i:j + 1]))
            i = j + 1
        elif c in _ADDR_SPECIALS:
            toks.append((c, c))
            i += 1
        else:
            j = i
            while j < n and s[j] not in _ADDR_SPECIALS and s[j] not in " \t\r\n":
                j += 1
            toks.append(("atom", s[i:j]))
            i = j
    return toks


def _quote_local(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _addr_spec(toks: list[tuple[str, str]]) -> tuple[str, str]:
    """local-part and domain from the tokens of an addr-spec (comments removed)."""
    at = max((k for k, t in enumerate(toks) if t[0] == "@"), default=-1)
    local_toks = toks if at < 0 else toks[:at]
    domain_toks = [] if at < 0 else toks[at + 1:]
    local = "".join(_quote_local(t) if kind == "qs" else t for kind, t in local_toks)
    domain = "".join(t for _kind, t in domain_toks)
    return local, (domain or MISSING_HOST)


def _phrase(toks: list[tuple[str, str]]) -> str | None:
    words = [t for kind, t in toks if kind in ("atom", "qs", ".", "@", "dlit")]
    return " ".join(words) if words else None


def parse_address_list(value: str) -> list[list[str | None]] | None:
    """RFC 3501 §7.4.2 address structures for a raw (undecoded) field value.

    Display names keep their RFC 2047 words encoded (clients decode them); an
    addr-spec followed by a comment, `a@b (Real Name)`, takes the comment as
    its name.  Returns None when nothing address-like is there (NIL).
    """
    toks = _address_tokens(value)
    out: list[list[str | None]] = []
    in_group = False
    i, n = 0, len(toks)
    while i < n:
        # Gather up to the next ',' ';' ':' or '<' at this level.
        start = i
        while i < n and toks[i][0] not in (",", ";", ":", "<"):
            i += 1
        chunk = toks[start:i]
        stop = toks[i][0] if i < n else ""
        if stop == ":" and not in_group:
            out.append([None, None, _phrase(chunk) or "", None])
            in_group = True
            i += 1
            continue
        if stop == "<":
            j = i + 1
            while j < n and toks[j][0] != ">":
                j += 1
            inner = [t for t in toks[i + 1:j] if t[0] != "comment"]
            adl = None
            colon = next((k for k, t in enumerate(inner) if t[0] == ":"), -1)
            if colon >= 0 and inner and inner[0][0] == "@":  # obs-route "@a,@b:"
                adl = "".join(t for _kind, t in inner[:colon]) or None
                inner = inner[colon + 1:]
            if inner:
                local, domain = _addr_spec(inner)
                out.append([_phrase(chunk), adl, local, domain])
            i = j + 1
            # anything up to the next separator (comments, junk) is dropped
            while i < n and toks[i][0] not in (",", ";"):
                i += 1
            stop = toks[i][0] if i < n else ""
        else:
            plain = [t for t in chunk if t[0] != "comment"]
            if plain:
                comments = [t for kind, t in chunk if kind == "comment"]
                local, domain = _addr_spec(plain)
                name = comments[-1].strip() if comments else None
                out.append([name or None, None, local, domain])
        if stop == ";" and in_group:
            out.append([None, None, None, None])
            in_group = False
        i += 1
    if in_group:
        out.append([None, None, None, None])
    return out or None


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

_SUBJ_WS = re.compile(r"\s+")
_SUBJ_TRAILER = re.compile(r"(?:\s|\(fwd\))+\Z", re.I)  # subj-trailer = "(fwd)" / WSP
_SUBJ_BLOB = r"\[[^\[\]]*\]\s*"  # subj-blob = "[" *BLOBCHAR "]" *WSP
_SUBJ_LEADER = re.compile(  # subj-leader = (*subj-blob subj-refwd) / WSP
    rf"(?:{_SUBJ_BLOB})*(?:re|fwd?)\s*(?:{_SUBJ_BLOB})?:|\s+", re.I)
_SUBJ_BLOB_AT_START = re.compile(_SUBJ_BLOB)


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1 base subject of a decoded subject, and whether the
    extraction removed reply/forward markers (Re:, Fwd:, "(fwd)", "[fwd: ]"),
    which THREAD=REFERENCES needs.  The result is not case-folded."""
    text = _SUBJ_WS.sub(" ", subject)  # (1) tabs and runs of WSP become one space
    reply = False
    while True:
        trailer = _SUBJ_TRAILER.search(text)  # (2)
        if trailer is not None:
            reply = reply or "(" in trailer.group(0)
            text = text[:trailer.start()]
        while True:  # (5): repeat (3) and (4) until nothing changes
            changed = False
            leader = _SUBJ_LEADER.match(text)  # (3)
            if leader is not None and leader.end() > 0:
                reply = reply or not leader.group(0).isspace()
                text = text[leader.end():]
                changed = True
            blob = _SUBJ_BLOB_AT_START.match(text)  # (4) unless nothing would be left
            if blob is not None and text[blob.end():].strip():
                text = text[blob.end():]
                changed = True
            if not changed:
                break
        if text[:5].lower() == "[fwd:" and text.endswith("]"):  # (6)
            text = text[5:-1]
            reply = True
            continue
        return text, reply


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

_HTML_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.S | re.I)
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]+")
_HTML_TAG = re.compile(r"<[^>]*>")
_HTML_BLOCK = re.compile(
    r"</?(?:p|br|div|tr|td|th|li|ul|ol|h[1-6]|table|blockquote|pre|hr|title|body)\b[^>]*>", re.I)


def decode_transfer(raw: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding leniently (RFC 2045 §6.7, §6.8)."""
    if encoding == "base64":
        clean = _NOT_BASE64.sub(b"", raw)  # line breaks, junk and padding
        if len(clean) % 4 == 1:
            clean = clean[:-1]  # a lone sextet carries no whole byte
        clean += b"=" * (-len(clean) % 4)
        try:
            return binascii.a2b_base64(clean)
        except binascii.Error:
            return b""
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    return raw


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
        date = fields.get("date")
        if date is not None:
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
            tags = [t.strip() for t in re.sub(r"\([^)]*\)", "", lang).split(",") if t.strip()]
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
            text = _HTML_BLOCK.sub(" ", _HTML_DROP.sub(" ", text))
            text = " ".join(html.unescape(_HTML_TAG.sub("", text)).split())
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
