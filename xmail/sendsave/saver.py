# -*- test-case-name: tests.sendsave.test_sendsave -*-
"""Send-save: every accepted submission lands in the sender's Sent folder.

The saved copy gets a `Bcc:` field naming the envelope recipients that are
in neither To nor Cc, so the user can see later who got a blind copy.  The
dedup of the client's own APPEND of the same message lives in the store
(IMailbox.save_sent / IFolder.append), so IMAP only calls the store.
Users switch it off with `xmailctl user set ADDRESS send_save=off`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from xmail.message import mailboxes, scan_header_section

_COPY_CHUNK = 1 << 20


def header_addresses(header_section: bytes, names: Iterable[str]) -> set[str]:
    """Lowercase addresses found in the named header fields.

    Read with the store's own header and address grammar (xmail.message,
    RFC 5322 §3.4/§4.4), so "visible" means what ENVELOPE and SEARCH show
    for the saved copy: a `To :` field or a field after a line without a
    colon counts, as it does for the IMAP client (issue 14).
    """
    wanted = frozenset(name.lower() for name in names)
    section = scan_header_section(header_section, wanted)
    return {address.lower() for _name, value in section.fields for address in mailboxes(value)}


def bcc_field(header_section: bytes, recipients: Iterable[str]) -> bytes:
    """The `Bcc:` field to add (b"" when every recipient is visible)."""
    visible = header_addresses(header_section, ("To", "Cc", "Bcc"))
    hidden: list[str] = []
    for address in recipients:
        if address.lower() not in visible and address not in hidden:
            hidden.append(address)
    if not hidden:
        return b""
    # RFC 5322 §3.6.3; folded so that no line exceeds 78 characters.
    lines, current = [], "Bcc:"
    for i, address in enumerate(hidden):
        item = f" {address}" + ("," if i < len(hidden) - 1 else "")
        if len(current) + len(item) > 78 and current != "Bcc:":
            lines.append(current)
            current = " " + item.lstrip()
        else:
            current += item
    lines.append(current)
    return "\r\n".join(lines).encode("utf-8") + b"\r\n"


class SendSaver:
    """Stores a copy of a submitted message in the submitter's \\Sent folder."""

    _log = Logger()

    def __init__(self, store: Any, directory: Any, tmp_dir: str):
        self.store = store
        self.directory = directory
        self.tmp_dir = tmp_dir

    def enabled(self, user: str) -> bool:
        return (self.directory.setting(user, "send_save") or "on").lower() != "off"

    @defer.inlineCallbacks
    def save(self, user: str, source: bytes | str, header_section: bytes, recipients: list[str],
             message_id: str | None) -> Any:
        """-> Deferred[AppendResult | None] (None when switched off).

        source: the message as bytes, or the path of a file holding it (left
        in place).  header_section: its header section, for To/Cc."""
        if not self.enabled(user):
            return None
        bcc = bcc_field(header_section, recipients)
        copy_path: str | None = None
        if isinstance(source, bytes):
            data: bytes | str = bcc + source
        elif bcc:
            copy_path = yield deferToThread(self._copy_with_prefix, bcc, source)
            data = copy_path
        else:
            data = source
        try:
            if hasattr(self.store, "provision"):
                yield defer.maybeDeferred(self.store.provision, user)
            mailbox = self.store.mailbox(user)
            result = yield mailbox.save_sent(data, message_id)
        finally:
            if copy_path is not None:
                try:
                    os.unlink(copy_path)
                except FileNotFoundError:
                    pass
        return result

    def _copy_with_prefix(self, prefix: bytes, source: str) -> str:
        dest = f"{source}.sent"
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as out, open(source, "rb") as src:
            out.write(prefix)
            while chunk := src.read(_COPY_CHUNK):
                out.write(chunk)
        return dest
