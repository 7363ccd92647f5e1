# -*- test-case-name: tests.sieve.test_interpreter -*-
"""The message as a Sieve evaluation sees it: sans-IO input (issue 18).

The delivery stage builds one `SieveMessage` per recipient from what it
already holds (the header section, the size, the envelope, the
protection verdicts) and hands the body over as a function, called only
if a `body` test runs.  Everything read from the message is bounded:
header values by xmail.message's reader (MAX_FIELDS fields, 64 KiB a
value), the body to BODY_LIMIT octets, body parts to MAX_BODY_PARTS.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from xmail.message import decode_words, parse_address_list, scan_header_section
from xmail.message.headers import HeaderSection, codec_for
from xmail.message.text import decode_transfer, html_to_text

BODY_LIMIT = 1024 * 1024     # octets of the message a body test looks at
MAX_BODY_PARTS = 100         # MIME parts a body test looks at
MAX_ADDRESSES = 1000         # addresses of one header test


def _never(_name: str) -> bool:
    return False


def _no_body() -> bytes:
    return b""


class SieveMessage:
    """One evaluation's input.  `header_section`: the raw header (bytes,
    with or without the blank line); `body()`: the whole message, read
    only by body tests; `environment`: RFC 5183 items (domain, host,
    location, phase, name, version, remote-host, remote-ip)."""

    def __init__(self, header_section: bytes, *, body: Callable[[], bytes] = _no_body, size: int = 0,
                 mail_from: str = "", rcpt_to: str = "", auth: str | None = None,
                 spamtest: int | None = None, virustest: int | None = None,
                 mailbox_exists: Callable[[str], bool] = _never, now: datetime | None = None,
                 environment: dict[str, str] | None = None):
        self.header_section = header_section
        self.body = body
        self.size = size
        self.mail_from = mail_from
        self.rcpt_to = rcpt_to
        self.auth = auth
        self.spamtest = spamtest
        self.virustest = virustest
        self.mailbox_exists = mailbox_exists
        self.now = now if now is not None else datetime.now(UTC)
        self.environment = dict(environment or {})
        self._header: HeaderSection | None = None
        self._decoded: dict[str, list[str]] = {}
        self._addresses: dict[str, list[list[tuple[str, str | None]]]] = {}
        self._body_parts: list[tuple[str, bytes]] | None = None
        self._raw_body: bytes | None = None
        self._separated = False  # a blank line ends the header (set by raw_body())

    # -- header ---------------------------------------------------------------------
    @property
    def header(self) -> HeaderSection:
        if self._header is None:
            self._header = scan_header_section(_header_text(self.header_section))
        return self._header

    def raw_values(self, name: str) -> list[str]:
        """The values of every field `name` (case-insensitive), in order, unfolded."""
        return self.header.all(name.lower())

    def values(self, name: str) -> list[str]:
        """As raw_values, RFC 2047 words decoded (RFC 5228 §5.7)."""
        key = name.lower()
        found = self._decoded.get(key)
        if found is None:
            found = [decode_words(v) for v in self.header.all(key)]
            self._decoded[key] = found
        return found

    def exists(self, name: str) -> bool:
        return bool(self.header.all(name.lower()))

    def addresses(self, name: str, index: int | None = None,
                  last: bool = False) -> list[tuple[str, str | None]]:
        """(local-part, domain) of the addresses in the fields `name`
        (RFC 5228 §5.1); a group's members count, its name does not.
        `index`: only that field occurrence (RFC 5260 §6)."""
        key = name.lower()
        fields = self._addresses.get(key)
        if fields is None:
            fields = [_field_addresses(value) for value in self.raw_values(key)]
            self._addresses[key] = fields
        out: list[tuple[str, str | None]] = []
        for found in indexed(fields, index, last):
            out.extend(found[:MAX_ADDRESSES - len(out)])
            if len(out) >= MAX_ADDRESSES:
                break
        return out

    # -- body -----------------------------------------------------------------------
    def raw_body(self) -> bytes:
        """The body after the header, undecoded (RFC 5173 §5.1 :raw)."""
        if self._raw_body is None:
            data = self.body()[:BODY_LIMIT]
            for sep in (b"\r\n\r\n", b"\n\n"):
                i = data.find(sep)
                if i >= 0:
                    self._raw_body = data[i + len(sep):]
                    self._separated = True
                    break
            else:
                self._raw_body = b""
                self._separated = False
        return self._raw_body

    def body_parts(self) -> list[tuple[str, bytes]]:
        """(content-type "type/subtype", decoded octets) of each leaf part."""
        if self._body_parts is None:
            from xmail.message import parse_message
            data = self.body()[:BODY_LIMIT]
            meta = parse_message(data)
            parts: list[tuple[str, bytes]] = []
            stack = [meta.structure.get("body", {})]
            while stack and len(parts) < MAX_BODY_PARTS:
                part = stack.pop()
                if "parts" in part:
                    # RFC 5173 §5.2: multipart headers are tested as their type too
                    parts.append((f"{part.get('type', 'multipart')}/{part.get('subtype', 'mixed')}", b""))
                    stack.extend(reversed(part["parts"]))
                    continue
                if "msg" in part:
                    # RFC 5173 §5.2: a message/rfc822 part is tested on the
                    # encapsulated message's header.
                    inner = data[part.get("bs", 0):part.get("be", 0)]
                    end = inner.find(b"\r\n\r\n")
                    header = inner[:end + 2] if end >= 0 else inner
                    parts.append(("message/rfc822", _header_text(header)))
                    stack.append(part["msg"].get("body", {}))
                    continue
                raw = data[part.get("bs", 0):part.get("be", 0)]
                content_type = f"{part.get('type', 'text')}/{part.get('subtype', 'plain')}"
                parts.append((content_type, _decode_part(raw, part)))
            self._body_parts = parts
        return self._body_parts

    def body_texts(self, transform: str, types: tuple[str, ...] = ()) -> list[str]:
        """What a body test compares (RFC 5173 §5): :raw the undecoded
        body; :content the decoded parts of the listed types ("" is every
        type, "text" a whole type); :text the text of every text/* part."""
        raw = self.raw_body()
        if transform == "raw":
            # An empty body has no :raw value at all, so even :is "" is
            # false (Pigeonhole).
            return [raw.decode("utf-8", "replace")] if raw else []
        if not self._separated:
            return []  # a header-only message has no parts to test (Pigeonhole)
        out: list[str] = []
        for content_type, text in self._typed_texts():
            if transform == "content":
                main = content_type.split("/")[0]
                if not any(t == "" or t.lower() == content_type or ("/" not in t and t.lower() == main)
                           for t in types):
                    continue
                if main == "multipart":
                    continue
                out.append(text)
            elif content_type.startswith("text/"):
                out.append(html_to_text(text) if content_type == "text/html" else text)
        return out

    def _typed_texts(self) -> list[tuple[str, str]]:
        out = []
        for content_type, data in self.body_parts():
            out.append((content_type, data.decode("utf-8", "replace") if isinstance(data, bytes) else data))
        return out


def _field_addresses(value: str) -> list[tuple[str, str | None]]:
    """(local-part, domain) of one field's addresses; a field with none
    (text, an empty group, nothing) is one item, its text with no domain
    (Pigeonhole does the same)."""
    found: list[tuple[str, str | None]] = [
        (local, host) for _name, _adl, local, host in parse_address_list(value) or ()
        if local is not None and host is not None and not host.startswith(".MISSING")]
    if not found:
        return [(value.strip(), None)]  # even an empty field is one item
    return found[:MAX_ADDRESSES]


def _header_text(raw: bytes | str) -> str:
    """Header bytes as text: UTF-8 (RFC 6532); a run of octets that are
    not UTF-8 becomes one U+FFFD, as Pigeonhole reads them."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _REPLACEMENTS.sub("\ufffd", raw.decode("utf-8", "replace"))


_REPLACEMENTS = re.compile("\ufffd{2,}")


def _decode_part(raw: bytes, part: dict[str, Any]) -> Any:
    decoded = decode_transfer(raw, part.get("enc", "7bit"))
    charset = None
    for key, value in part.get("params", ()):
        if key == "charset":
            charset = value
    if part.get("type", "text") == "text":
        return decoded.decode(codec_for(charset), "replace")
    return decoded


def indexed(values: list[Any], index: int | None, last: bool) -> list[Any]:
    """RFC 5260 §6: :index n counts fields from 1, from the end with :last."""
    if index is None:
        return values
    if index < 1 or index > len(values):
        return []
    return [values[-index] if last else values[index - 1]]
