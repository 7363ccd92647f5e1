# -*- test-case-name: tests.message.test_linear, tests.message.test_mime -*-
"""Body text for SEARCH: transfer decoding and HTML to text, in linear time.

Issue 16 #1: regexes such as `<[^>]*>` or `<script.*?</script>` restart at
every "<" and rescan to the end of the part when no ">" follows, so 100 kB
of "<" cost seconds with the GIL held.  `html_to_text` is one forward scan
with str.find: every character is looked at a bounded number of times.
"""

from __future__ import annotations

import binascii
import html
import re

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]+")  # one class, one quantifier: linear
# Elements whose content is not text (dropped with their content).
_SKIPPED = frozenset(("script", "style", "head"))
# Block-level tags separate words; inline tags vanish ("<b>x</b>y" reads "xy").
_BLOCK = frozenset(("p", "br", "div", "tr", "td", "th", "li", "ul", "ol", "h1", "h2", "h3",
                    "h4", "h5", "h6", "table", "blockquote", "pre", "hr", "title", "body"))
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_MAX_NAME = 16  # longer tag names are neither skipped nor block elements


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


def _tag_name(text: str, i: int, end: int) -> str:
    """The lower-cased element name of the tag starting at text[i] == "<"
    (a leading "/" skipped), at most _MAX_NAME + 1 characters looked at."""
    j = i + 1
    if j < end and text[j] == "/":
        j += 1
    k = j
    stop = min(end, j + _MAX_NAME + 1)
    while k < stop and text[k] in _NAME_CHARS:
        k += 1
    return text[j:k].lower()


def _find_end_tag(text: str, name: str, start: int) -> int:
    """Index of "</name" (any case) at or after start, or -1; one forward scan."""
    size = len(name)
    i = text.find("</", start)
    while i >= 0:
        if text[i + 2:i + 2 + size].lower() == name:
            return i
        i = text.find("</", i + 2)
    return -1


def html_to_text(text: str) -> str:
    """Visible text of an HTML document: tags dropped (block tags become a
    space), script/style/head content dropped, character references decoded,
    white space runs collapsed to one space (HTML white space is not
    significant).  Linear in len(text)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        lt = text.find("<", i)
        if lt < 0:
            out.append(text[i:])
            break
        out.append(text[i:lt])
        gt = text.find(">", lt + 1)
        if gt < 0:
            # No tag closes before the end: what is left is text (as browsers
            # show a stray "<"), and no later "<" can close either.
            out.append(text[lt:])
            break
        name = _tag_name(text, lt, gt)
        closing = text[lt + 1:lt + 2] == "/"
        if not closing and name in _SKIPPED:
            end = _find_end_tag(text, name, gt + 1)
            if end < 0:
                break  # an unclosed script runs to the end of the document
            close = text.find(">", end)
            i = n if close < 0 else close + 1
            out.append(" ")
            continue
        if name in _BLOCK:
            out.append(" ")
        i = gt + 1
    return " ".join(html.unescape("".join(out)).split())
