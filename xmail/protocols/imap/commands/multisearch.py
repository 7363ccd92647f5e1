# -*- test-case-name: tests.protocols.test_imap_extensions -*-
"""MULTISEARCH (RFC 7377): one ESEARCH over several mailboxes — "search one
or all folders".

    C: t1 ESEARCH IN (personal) RETURN (COUNT ALL) FROM "alice"
    S: * ESEARCH (TAG "t1" MAILBOX "INBOX" UIDVALIDITY 7) UID ALL 3:5 COUNT 3
    S: * ESEARCH (TAG "t1" MAILBOX "Sent" UIDVALIDITY 9) UID ALL 1 COUNT 1
    S: t1 OK ESEARCH completed

Mailbox filters are those of RFC 5465 §6: selected (and selected-delayed:
the same here), inboxes (INBOX), personal (every folder of the user,
Recycle included, as LIST shows it), subscribed, subtree, subtree-one and
mailboxes.  Named mailboxes that do not exist are skipped (a filter names
mailboxes that may come to exist).  Results are always UIDs (§2); a
mailbox with no match gets no ESEARCH response, except for RETURN (COUNT)
alone, which answers COUNT 0 so a client can show per-folder counts.
Each folder is searched with search.py over its index records, off the
reactor when the keys read message data; the selected folder is searched
as SEARCH does (its unreported expunges stay invisible).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThread

from xmail.protocols.imap import results as resultsmod
from xmail.protocols.imap import search as searchmod
from xmail.protocols.imap.commands.mailbox import DELIMITER
from xmail.protocols.imap.commands.message import _matching
from xmail.protocols.imap.grammar import EsearchArgs, Request
from xmail.protocols.imap.response import mailbox as wire_mailbox
from xmail.protocols.imap.response import quoted
from xmail.protocols.imap.session import AUTH, Bad, Session, command
from xmail.store.interfaces import NoSuchFolder

MAX_MAILBOXES = 10000  # folders one ESEARCH may cover


def source_mailboxes(session: Session, sources: Any) -> list[str]:
    """The folder names the filters select, in LIST order, each once."""
    selected = session.selected.folder.name if session.selected is not None else None
    if sources is None:
        return [selected] if selected is not None else []
    folders = session.mailbox.list_folders()
    names = [f.name for f in folders]
    wanted: set[str] = set()
    for kind, boxes in sources:
        if kind in ("selected", "selected-delayed"):
            if selected is not None:
                wanted.add(selected)
        elif kind == "inboxes":
            wanted.add("INBOX")
        elif kind == "personal":
            wanted.update(names)
        elif kind == "subscribed":
            wanted.update(f.name for f in folders if f.subscribed)
        elif kind == "mailboxes":
            wanted.update(boxes)
        else:  # subtree, subtree-one (RFC 5465 §6)
            for box in boxes:
                prefix = box + DELIMITER
                for name in names:
                    if name == box:
                        wanted.add(name)
                    elif name.startswith(prefix) and (
                            kind == "subtree" or DELIMITER not in name[len(prefix):]):
                        wanted.add(name)
    present = set(names)
    return [name for name in names if name in wanted and name in present][:MAX_MAILBOXES]


@command("ESEARCH", AUTH)
async def esearch(session: Session, request: Request) -> str:
    args: EsearchArgs = request.args
    search = args.search
    returns = search.returns if search.returns is not None else frozenset({"ALL"})
    selected = session.selected.folder.name if session.selected is not None else None
    for name in source_mailboxes(session, args.sources):
        if name == selected:
            uids, _records = await _matching(session, search.key)
            folder = session.selected.folder  # type: ignore[union-attr]
        else:
            try:
                folder = session.mailbox.folder(name)
            except NoSuchFolder:
                continue  # deleted meanwhile
            uids = await _search_folder(folder, search.key)
        count_only = returns == {"COUNT"}
        if not uids and not count_only:
            continue
        # RFC 7377 §2: search-correlator =/ SP "MAILBOX" SP astring SP "UIDVALIDITY" SP nz-number
        head = (b"ESEARCH (TAG " + quoted(request.tag) + b" MAILBOX " + wire_mailbox(name, session.rev2)
                + b" UIDVALIDITY %d) UID" % folder.status().uidvalidity)
        items = resultsmod.esearch_items(uids, returns, search.partial)
        session.untagged(b" ".join([head, *items]))
        d = session.conn.drain()
        if d is not None:
            await d
    return "ESEARCH completed"


async def _search_folder(folder: Any, key: Any) -> list[int]:
    records = folder.records()
    try:
        if searchmod.needs_message_data(key):
            return await deferToThread(searchmod.run_search, key, folder, records, recent_uids=frozenset())
        return searchmod.run_search(key, folder, records, recent_uids=frozenset())
    except searchmod.SearchError as e:
        raise Bad(str(e)) from None
