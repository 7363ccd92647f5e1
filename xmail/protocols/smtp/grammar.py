# -*- test-case-name: tests.protocols.test_smtp_parser -*-
"""SMTP command arguments: paths, ESMTP parameters, xtext (no I/O).

The ABNF of RFC 5321 §4.1.2, extended for UTF-8 by RFC 6531 §3.3:

    Reverse-path   = Path / "<>"
    Path           = "<" [ A-d-l ":" ] Mailbox ">"
    Mailbox        = Local-part "@" ( Domain / address-literal )
    Local-part     = Dot-string / Quoted-string
    Mail-parameters = esmtp-param *(SP esmtp-param)
    esmtp-param    = esmtp-keyword ["=" esmtp-value]
    esmtp-keyword  = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    esmtp-value    = 1*(%d33-60 / %d62-126 / UTF8-non-ascii)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class GrammarError(ValueError):
    """The argument does not follow the grammar; `kind` picks the reply."""

    def __init__(self, message: str, kind: str = "syntax"):
        super().__init__(message)
        self.kind = kind  # "syntax" | "address" | "non-ascii"


# atext of RFC 5322 §3.2.3 (RFC 6531 §3.3 adds UTF8-non-ascii)
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_DOT_STRING = rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*"
# qtextSMTP / quoted-pairSMTP, RFC 5321 §4.1.2
_QUOTED_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"'
_SUB_DOMAIN = r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
_DOMAIN = rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*"
# address-literal, RFC 5321 §4.1.3 (content checked loosely; never local)
_ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_MAILBOX = re.compile(rf"(?:{_DOT_STRING}|{_QUOTED_STRING})@(?:{_DOMAIN}|{_ADDRESS_LITERAL})")
# A-d-l (source route) is accepted and ignored, RFC 5321 §4.1.2 / §C.
_ADL = re.compile(rf"@{_DOMAIN}(?:,@{_DOMAIN})*:")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
# Bytes that were not UTF-8, as decoded with surrogateescape.
_SURROGATE = re.compile("[\udc80-\udcff]")

# RFC 5321 §4.5.3.1: local part 64 octets, domain 255, path 256.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # upper-case
    argument: str  # the rest of the line, leading spaces removed


def split_command(line: bytes) -> Command:
    """Verb and argument of a command line; UTF-8 is kept (RFC 6531)."""
    text = line.decode("utf-8", "surrogateescape")
    verb, _, argument = text.partition(" ")
    return Command(verb.upper(), argument.lstrip(" "))


@dataclass(frozen=True, slots=True)
class PathArgument:
    address: str  # "" for the null reverse-path "<>"
    params: dict[str, str | None] = field(default_factory=dict)


def parse_path_argument(argument: str, prefix: str, *, allow_null: bool) -> PathArgument:
    """Parse `FROM:<path> params` / `TO:<path> params`.

    Outlook sends `MAIL FROM: <a@b>` (a space after the colon): accepted, as
    is a path without angle brackets (Postfix's strict_rfc821_envelopes=no).
    """
    if not argument[: len(prefix)].upper() == prefix:
        raise GrammarError(f"expected {prefix}")
    rest = argument[len(prefix) :].lstrip(" ")
    if rest.startswith("<"):
        close = _closing_bracket(rest)
        if close < 0:
            raise GrammarError("missing >", "address")
        path, params_text = rest[1:close], rest[close + 1 :]
        if params_text and not params_text.startswith(" "):
            raise GrammarError("junk after path", "address")
    else:
        path, _, params_text = rest.partition(" ")
    if path == "":
        if not allow_null:
            raise GrammarError("empty path", "address")
        address = ""
    else:
        adl = _ADL.match(path)
        if adl:
            path = path[adl.end() :]
        address = check_mailbox(path)
    return PathArgument(address, parse_params(params_text))


def _closing_bracket(text: str) -> int:
    """Index of the ">" ending a path, skipping quoted local parts."""
    if '"' not in text:
        return text.find(">")
    in_quote = False
    i = 1
    while i < len(text):
        c = text[i]
        if in_quote and c == "\\":
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == ">" and not in_quote:
            return i
        i += 1
    return -1


def check_mailbox(text: str) -> str:
    """The mailbox if it follows RFC 5321 §4.1.2 (UTF-8 allowed), else GrammarError."""
    if _SURROGATE.search(text):
        raise GrammarError("invalid UTF-8 in address", "address")
    if not _MAILBOX.fullmatch(text):
        raise GrammarError("bad address syntax", "address")
    local, _, domain = text.rpartition("@")
    if len(local.encode()) > MAX_LOCAL_PART or len(domain.encode()) > MAX_DOMAIN:
        raise GrammarError("address too long", "address")
    if len(text.encode()) > MAX_PATH:
        raise GrammarError("address too long", "address")
    return text


def is_ascii(text: str) -> bool:
    return text.isascii()


def parse_params(text: str) -> dict[str, str | None]:
    """ESMTP parameters, keywords upper-cased; a repeated keyword is an error."""
    params: dict[str, str | None] = {}
    for item in text.split(" "):
        if not item:
            continue
        keyword, eq, value = item.partition("=")
        if not _KEYWORD.fullmatch(keyword):
            raise GrammarError(f"bad parameter {item!r}")
        if eq and not _VALUE.fullmatch(value):
            raise GrammarError(f"bad parameter value {item!r}")
        key = keyword.upper()
        if key in params:
            raise GrammarError(f"duplicate parameter {key}")
        params[key] = value if eq else None
    return params


def decode_xtext(text: str) -> str:
    """RFC 3461 §4: "+" HEXCHAR HEXCHAR encodes one octet."""
    if any(ord(c) < 33 or ord(c) > 126 or c == "=" for c in text):
        raise GrammarError("bad xtext")
    if "+" in text and _XTEXT_HEX.sub("", text).count("+"):
        raise GrammarError("bad xtext")
    raw = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), text)
    return raw


def encode_xtext(text: str) -> str:
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else f"+{ord(c):02X}" for c in text)


def parse_hello_domain(argument: str) -> str:
    """The EHLO/HELO argument: a domain or an address literal (RFC 5321 §4.1.1.1).

    Clients send all sorts here (bare IPs, names with underscores); like
    Postfix we only insist on one printable token."""
    token = argument.strip().split(" ", 1)[0]
    if not token or any(ord(c) < 33 or ord(c) == 127 for c in token) or len(token) > 255:
        raise GrammarError("bad hello argument")
    return token
