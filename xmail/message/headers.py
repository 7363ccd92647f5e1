# -*- test-case-name: tests.message.test_headers -*-
"""The one header-section reader (RFC 5322 §2.2, §3.6) and field-value helpers.

Every reader of header fields — the store's parser (ENVELOPE, SEARCH, SORT),
SMTP submission's From check, SEARCH HEADER on files — goes through
`scan_header_section`, so they all see the same fields (issue 16 #8: the
submission check used the stdlib parser, which skips `From :` and stops at a
line without a colon, while the store read both).

Reading rules (lenient for delivery, reported for submission):
- a field name ends at the first ":"; white space before the colon is
  tolerated (RFC 5322 §4.5.3 obs-optional) but reported in `spaced`;
- a line that is neither a field nor a continuation is skipped and counted
  in `broken` (it does not end the section);
- CRLF followed by WSP is unfolded (§2.2.3).

Every pass is a single scan with str.find / split; no regex with adjacent
quantifiers touches the field text.
"""

from __future__ import annotations

import binascii
import codecs
import re
from dataclasses import dataclass, field
from typing import Any

MAX_FIELDS = 1000  # fields kept per header section; the rest are counted, not kept
MAX_VALUE_CHARS = 64 * 1024  # characters of one (unfolded) field value kept


def decode_header_bytes(raw: bytes) -> str:
    """8-bit header bytes as text: UTF-8 (RFC 6532), else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(slots=True)
class HeaderSection:
    """The fields of a header section in order: (lower-cased name, raw value
    unfolded and stripped).  `spaced`: lower-cased names written with white
    space before the colon; `broken`: lines that are neither a field nor a
    continuation; `dropped`: fields beyond MAX_FIELDS."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    spaced: list[str] = field(default_factory=list)
    broken: int = 0
    dropped: int = 0

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def first(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None


def scan_header_section(block: bytes | str, wanted: frozenset[str] | None = None) -> HeaderSection:
    """Read a header block (up to and including the blank line, or without
    it).  `wanted` limits the kept fields to those names; `spaced` and
    `broken` are reported for all lines."""
    text = decode_header_bytes(block) if isinstance(block, bytes) else block
    out = HeaderSection()
    name: str | None = None
    value: list[str] = []
    size = 0

    def close() -> None:
        if name is None:
            return
        if len(out.fields) >= MAX_FIELDS:
            out.dropped += 1
            return
        out.fields.append((name, "".join(value).strip()))

    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        if line[:1] in (" ", "\t"):
            if name is not None and size < MAX_VALUE_CHARS:
                value.append(line[:MAX_VALUE_CHARS - size])
                size += len(line)
            continue
        close()
        name = None
        if not line:
            break  # the blank line ends the section (RFC 5322 §2.1)
        colon = line.find(":")
        if colon <= 0:
            out.broken += 1
            continue
        key = line[:colon]
        stripped = key.rstrip(" \t")
        if not stripped or " " in stripped or "\t" in stripped:
            out.broken += 1  # "a b: c" is not a field name (RFC 5322 §3.6.8 ftext)
            continue
        lowered = stripped.lower()
        if len(stripped) != len(key):
            out.spaced.append(lowered)
        if wanted is not None and lowered not in wanted:
            continue
        name = lowered
        first = line[colon + 1:colon + 1 + MAX_VALUE_CHARS]
        value = [first]
        size = len(first)
    close()
    return out


def header_fields(block: bytes | str, wanted: frozenset[str] | None = None) -> dict[str, str]:
    """Unfolded raw values of a header block, first occurrence of each field
    (names lower-cased, values stripped); see `scan_header_section`."""
    out: dict[str, str] = {}
    for key, value in scan_header_section(block, wanted).fields:
        out.setdefault(key, value)
    return out


# --- RFC 2047 encoded words ----------------------------------------------------

# encoded-word = "=?" charset "?" encoding "?" encoded-text "?=" (RFC 2047 §2).
# Each group is a single class that cannot contain the "?" that ends it, so
# a match attempt stops at the next "?" or space: linear over the value.
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
MAX_PARAMS = 64


def comment(s: str, i: int) -> tuple[str, int]:
    """The text of the one comment opening at s[i] == "(" and the index after
    its closing ")" (RFC 5322 §3.2.2: ccontent may nest comments; a
    quoted-pair stands for its character).  Nested comments stay in the
    text, parentheses included, as Dovecot keeps them; an unclosed comment
    runs to the end.  One pass."""
    out: list[str] = []
    depth, start, n = 0, i + 1, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            out.append(s[start:i])
            start = i + 1  # the escaped character is kept, the backslash not
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                out.append(s[start:i])
                return "".join(out), i + 1
        i += 1
    out.append(s[start:n])
    return "".join(out), n


def skip_cfws(s: str, i: int) -> int:
    """Index after white space and (nested) comments from i (RFC 5322 §3.2.2)."""
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            _text, i = comment(s, i)
        else:
            break
    return i


def without_comments(s: str) -> str:
    """s with its comments removed, in one pass (for Content-Language etc.)."""
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        j = s.find("(", i)
        if j < 0:
            out.append(s[i:])
            break
        out.append(s[i:j])
        i = skip_cfws(s, j)
    return "".join(out)


def quoted_string(s: str, i: int) -> tuple[str, int]:
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
        i = skip_cfws(s, i)
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
        i = skip_cfws(s, m.end())
        if i >= n or s[i] != "=":
            j = s.find(";", i)
            if j < 0:
                break
            i = j
            continue
        i = skip_cfws(s, i + 1)
        if i < n and s[i] == '"':
            value, i = quoted_string(s, i)
        else:
            bare = _TSPECIAL_TOKEN.match(s, i)
            after = skip_cfws(s, bare.end()) if bare is not None else i
            if bare is not None and (after >= n or s[after] == ";"):
                value, i = bare.group(0), after
            else:
                # Lenient: a bare value with spaces etc. runs to ';' (common in names).
                j = s.find(";", i)
                j = n if j < 0 else j
                value = s[i:j].strip()
                i = j
        if len(params) < MAX_PARAMS:
            params.append([name, value])
    return params


def parse_content_type(value: str) -> tuple[str, str, list[list[str]]] | None:
    """(type, subtype, params) or None when the value is not a media type."""
    i = skip_cfws(value, 0)
    m = _TSPECIAL_TOKEN.match(value, i)
    if m is None:
        return None
    i = skip_cfws(value, m.end())
    if i >= len(value) or value[i] != "/":
        return None
    i = skip_cfws(value, i + 1)
    m2 = _TSPECIAL_TOKEN.match(value, i)
    if m2 is None:
        return None
    return m.group(0).lower(), m2.group(0).lower(), parse_params(value, m2.end())


def parse_disposition(value: str) -> list[Any] | None:
    i = skip_cfws(value, 0)
    m = _TSPECIAL_TOKEN.match(value, i)
    if m is None:
        return None
    return [m.group(0).lower(), parse_params(value, m.end())]


def param(params: list[list[str]], name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value
    return None
