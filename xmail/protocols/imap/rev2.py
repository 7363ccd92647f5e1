# -*- test-case-name: tests.protocols.test_imap_rev2 -*-
"""IMAP4rev2 (RFC 9051) next to IMAP4rev1 (RFC 3501).

The server advertises both; a session speaks rev1 until the client sends
`ENABLE IMAP4rev2` (RFC 9051 §6.3.1), then rev2 for the rest of the
connection.  What changes for such a session (RFC 9051 Appendix E) and
where it is done:

- SEARCH answers ESEARCH, `RETURN (ALL)` implied (§6.4.4):
  commands/message.py `search`.
- no `\\Recent`, no `* n RECENT`, the session claims no message as recent
  (App. E): sync.SelectedFolder(rev2=True), commands/selected.py.
- SELECT/EXAMINE send the LIST response of the mailbox, no `OK [UNSEEN]`,
  and `OK [CLOSED]` whenever a selected mailbox is replaced (§6.3.2,
  App. E): commands/selected.py.
- mailbox names are UTF-8 on the wire in both directions, modified UTF-7
  is no longer decoded (§5.1, App. E, RFC 6855 §3): `utf8_names` below,
  grammar.parse_command(utf8_names=...), response.mailbox(utf8=...).
- LIST: a level that exists only as a parent is `\\NonExistent` (§7.3.1)
  also in a non-extended LIST: commands/mailbox.py.
- STATUS SIZE (§6.3.11) and `NO [HASCHILDREN]` for DELETE of a level that
  exists only above other folders (§6.3.5): every session (rev1 clients
  never ask for SIZE and read the code as text).
The rest of Appendix E (merged extensions: NAMESPACE, UNSELECT, UIDPLUS,
ESEARCH, SEARCHRES, ENABLE, IDLE, SASL-IR, LIST-EXTENDED, LIST-STATUS,
MOVE, LITERAL-, BINARY, SPECIAL-USE) is served to every session already;
LSUB stays for rev1 clients.
"""

from __future__ import annotations

from typing import Any

from xmail.protocols.imap.response import mailbox as wire_mailbox

CAPABILITY = "IMAP4rev2"


def enable(session: Any) -> bool:
    """Switch the session to rev2; False when it already was (RFC 5161 §3.1:
    ENABLED lists only what this command turned on)."""
    if session.rev2:
        return False
    session.rev2 = True
    view = session.selected
    if view is not None:
        # Enabled with a mailbox selected (RFC 5161 wants ENABLE before
        # SELECT; we allow it): from now on no \Recent there either.
        view.rev2 = True
        view.recent.clear()
    return True


def utf8_names(session: Any) -> bool:
    """Mailbox names travel as UTF-8, not modified UTF-7 (RFC 9051 §5.1)."""
    return bool(getattr(session, "rev2", False))


def select_list_line(session: Any, folder: Any) -> bytes:
    """The LIST response SELECT/EXAMINE sends a rev2 client (RFC 9051
    §6.3.2: "LIST ... REQUIRED"), attributes as LIST gives them."""
    name = folder.name
    prefix = name + "/"
    children = any(f.name.startswith(prefix) for f in session.mailbox.list_folders())
    attrs = ["\\HasChildren" if children else "\\HasNoChildren"]
    special = getattr(folder, "special_use", None)
    if special:
        attrs.append(special)
    return (b"LIST (" + " ".join(attrs).encode("ascii") + b') "/" '
            + wire_mailbox(name, utf8=True))
