# -*- test-case-name: tests.protocols.test_imap_ext_grammar -*-
"""IMAP URLs (RFC 5092) as CATENATE's URL parts use them (RFC 4469 §3, §5).

`parse_message_url(url, user)` -> MessageUrl, or raises BadUrl.  Accepted:

    imap://alice%40example.com@mail.example.com/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1.2
    /INBOX;UIDVALIDITY=7/;UID=3/;SECTION=HEADER/;PARTIAL=0.100
    ;UID=3                       (relative to the selected mailbox, RFC 3986 §5.2)

A URL must name one message by UID (RFC 5092 §6 imessagepart) in a mailbox of
the logged-in user: a user part naming someone else is refused, and so is
URLAUTH (RFC 4467), which xmail does not offer.  One pass over the text, no
regex over client data, bounded by the URL's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from xmail.protocols.imap.grammar import GrammarError, url_section
from xmail.protocols.imap.model import Section

MAX_URL = 2048  # octets of one URL


class BadUrl(Exception):
    """The URL is invalid or names nothing this user may read (NO [BADURL])."""


@dataclass(frozen=True, slots=True)
class MessageUrl:
    mailbox: str | None  # None: the selected mailbox (a relative ";UID=" URL)
    uidvalidity: int | None
    uid: int
    section: str  # "" for the whole message; e.g. "1.2", "HEADER", "1.MIME"
    partial: tuple[int, int | None] | None  # RFC 5092 §3.3 ";PARTIAL=o[.l]"


def _number(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 10 or int(text) == 0:
        raise BadUrl(f"invalid {what}")
    return int(text)


def _mailbox(raw: str) -> str:
    # RFC 5092 §3.2: enc-mailbox is the mailbox name percent-encoded as UTF-8.
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadUrl("mailbox name is not UTF-8") from None


def parse_message_url(url: str, user: str) -> MessageUrl:
    if len(url) > MAX_URL:
        raise BadUrl("URL too long")
    rest = url
    if rest[:7].lower() == "imap://":
        authority, slash, rest = rest[7:].partition("/")
        if not slash:
            raise BadUrl("URL names no message")
        userinfo, at, _host = authority.rpartition("@")
        if at:
            # RFC 5092 §3.1: iuserinfo = enc-user [iauth] / [enc-user] iauth
            name = unquote_to_bytes(userinfo.split(";", 1)[0]).decode("utf-8", "replace")
            if name and name.lower() != user.lower():
                raise BadUrl("URL names another user's mailbox")
        rest = "/" + rest
    if ";URLAUTH=" in rest.upper():
        raise BadUrl("URLAUTH is not supported")  # RFC 4467
    mailbox: str | None = None
    uidvalidity: int | None = None
    if rest.startswith("/"):
        # imailbox-ref "/;UID=" ...: the mailbox ends where "/;UID=" begins.
        cut = rest.upper().find("/;UID=")
        if cut < 0:
            raise BadUrl("URL names no message")
        ref, rest = rest[1:cut], rest[cut + 1:]
        name, semi, validity = ref.partition(";")
        if semi:
            if validity[:12].upper() != "UIDVALIDITY=":
                raise BadUrl("invalid mailbox reference")
            uidvalidity = _number(validity[12:], "UIDVALIDITY")
        if not name:
            raise BadUrl("URL names no mailbox")
        mailbox = _mailbox(name)
        if mailbox.upper() == "INBOX":
            mailbox = "INBOX"
    uid = 0
    section = ""
    partial: tuple[int, int | None] | None = None
    for i, piece in enumerate(rest.split("/")):
        key, eq, value = piece.partition("=")
        key = key.upper()
        if not eq or (i == 0) != (key == ";UID"):
            raise BadUrl("invalid URL part")
        if key == ";UID":
            uid = _number(value, "UID")
        elif key == ";SECTION" and not section:
            section = unquote_to_bytes(value).decode("ascii", "replace").upper()
            if not section:
                raise BadUrl("empty SECTION")
        elif key == ";PARTIAL" and partial is None:
            origin, dot, length = value.partition(".")
            start = int(origin) if origin.isdigit() and len(origin) <= 10 else -1
            if start < 0 or (dot and not (length.isdigit() and 0 < len(length) <= 10 and int(length))):
                raise BadUrl("invalid PARTIAL")
            partial = (start, int(length) if dot else None)
        else:
            raise BadUrl("invalid URL part")
    return MessageUrl(mailbox, uidvalidity, uid, section, partial)


def section_of(text: str) -> Section:
    """The RFC 3501 section-spec of a URL's SECTION (RFC 5092 §3.3 isection)."""
    try:
        return url_section(text)
    except GrammarError as e:
        raise BadUrl(str(e)) from None


def resp_code(url: str) -> str:
    """RFC 4469 §7: "BADURL" SP url-resp-text (no "]", CR, LF; 7-bit here)."""
    text = "".join(c if " " < c < "\x7f" and c != "]" else "?" for c in url[:200])
    return f"BADURL {text or '?'}"
