# -*- test-case-name: tests.protocols.test_imap_commands, tests.protocols.test_imap_semantics -*-
"""Selected-state message commands (RFC 3501 §6.4.4-§6.4.8): SEARCH (with
ESEARCH, RFC 4731), FETCH, STORE, COPY and MOVE (RFC 6851), and their UID
forms with UIDPLUS data (RFC 4315), and their RFC 7162 parts: FETCH MODSEQ,
CHANGEDSINCE and VANISHED, STORE UNCHANGEDSINCE, SEARCH MODSEQ.

FETCH writes one message at a time and waits for the transport to drain
(`session.conn.drain()`), so `FETCH 1:* (BODY[])` on a large folder holds
one message chunk in memory, not the answer.  ENVELOPE, BODYSTRUCTURE and
sections come from fetch.py over the structure cached at delivery; SEARCH is
search.py over the index records.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from twisted.internet.threads import deferToThread

from xmail.protocols.imap import binary as binarymod
from xmail.protocols.imap import fetch as fetchmod
from xmail.protocols.imap import results as resultsmod
from xmail.protocols.imap import search as searchmod
from xmail.protocols.imap import searchctx, searchres
from xmail.protocols.imap import sort as sortmod
from xmail.protocols.imap import thread as threadmod
from xmail.protocols.imap.commands.mailbox import note_incoming, usable_name
from xmail.protocols.imap.commands.selected import vanished_since
from xmail.protocols.imap.grammar import CopyArgs, FetchArgs, Request, SearchArgs, StoreArgs
from xmail.protocols.imap.model import FetchAtt, uses_key
from xmail.protocols.imap.response import quoted
from xmail.protocols.imap.session import SELECTED, Bad, No, Session, command
from xmail.protocols.imap.sync import SelectedFolder, flags_with_recent
from xmail.store.interfaces import MessageRecord, NoSuchFolder, NoSuchMessage

_BATCH = 256  # records read per index transaction while fetching
_INLINE_READ = 256 * 1024  # larger sections are read in a thread, chunk by chunk
_CHUNK = 65536
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BODY_ATTS = {"BODY[]", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BINARY[]", "BINARY.SIZE"}
_BINARY_ATTS = ("BINARY[]", "BINARY.SIZE")  # RFC 3516


def _whole_message(att: FetchAtt) -> bool:
    """BODY[] / BODY.PEEK[] / RFC822: the file itself, no structure needed."""
    if att.name == "RFC822":
        return True
    return att.name == "BODY[]" and (att.section is None or (not att.section.part and not att.section.text))


def _needs_structure(att: FetchAtt) -> bool:
    if att.name in ("ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822.HEADER", "RFC822.TEXT", *_BINARY_ATTS):
        return True
    return att.name == "BODY[]" and not _whole_message(att)


def _view(session: Session) -> SelectedFolder:
    assert session.selected is not None
    return session.selected


def _resolve(view: SelectedFolder, request: Request, seqset: Any) -> list[tuple[int, int]]:
    try:
        return view.resolve(seqset, by_uid=request.uid)
    except ValueError as e:
        raise Bad(str(e)) from None


def internaldate(ts: float) -> bytes:
    # RFC 3501 §9: date-time = DQUOTE date-day-fixed "-" date-month "-" date-year
    #                          SP time SP zone DQUOTE
    t = time.gmtime(ts)
    return b'"%2d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday, _MONTHS[t.tm_mon - 1].encode(), t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


# --- FETCH ----------------------------------------------------------------------------------


@command("FETCH", SELECTED, forbids_expunge=True)
async def fetch(session: Session, request: Request) -> str:
    args: FetchArgs = request.args
    view = _view(session)
    if args.vanished and not (request.uid and session.qresync):
        raise Bad("VANISHED needs UID FETCH and ENABLE QRESYNC")  # RFC 7162 §3.2.6
    if args.changed_since is None:
        pairs = _resolve(view, request, args.seqset)
    else:
        pairs = _changed_pairs(view, request, args.seqset, args.changed_since)
    atts = list(args.atts)
    if request.uid and not any(a.name == "UID" for a in atts):
        atts.insert(0, FetchAtt("UID"))  # RFC 3501 §6.4.8
    wants_modseq = any(a.name == "MODSEQ" for a in atts)
    if wants_modseq or args.changed_since is not None:
        session.enable_condstore()  # RFC 7162 §3.1: CONDSTORE enabling commands
    if not wants_modseq and (args.changed_since is not None
                             or (session.condstore and any(a.name == "FLAGS" for a in atts))):
        # RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ; and with CONDSTORE
        # on, FLAGS go out with the MODSEQ they belong to.
        atts.append(FetchAtt("MODSEQ"))
    if args.changed_since is not None:
        if args.vanished:
            # RFC 7162 §3.2.6: expunged UIDs of the set first, as EARLIER.
            last_uid = view.folder.status().uidnext - 1
            within = searchmod.SeqSetMatcher(args.seqset, last_uid)
            vanished = vanished_since(view, args.changed_since, within, last_uid)
            if vanished:
                session.untagged(b"VANISHED (EARLIER) " + vanished.encode("ascii"))
    needs_meta = any(_needs_structure(a) for a in atts)
    needs_file = any(a.name in _BODY_ATTS for a in atts)
    marks_seen = not view.readonly and any(
        a.name in ("BODY[]", "RFC822", "RFC822.TEXT") and fetchmod.sets_seen(a)
        or a.name == "BINARY[]" and not a.peek for a in atts)  # RFC 3516 §4.2
    wants_flags = any(a.name == "FLAGS" for a in atts)
    missing = False  # some were expunged by another session since we last said so
    folder = view.folder
    for start in range(0, len(pairs), _BATCH):
        batch = pairs[start : start + _BATCH]
        records = {r.uid: r for r in folder.records([uid for _, uid in batch])}
        newly_seen: set[int] = set()
        if marks_seen:
            unseen = [uid for uid, r in records.items() if "\\Seen" not in r.flags]
            if unseen:
                changed, _ = await folder.set_flags(unseen, ["\\Seen"], "add")
                view.note_own_flags(changed)
                for r in changed:
                    records[r.uid] = r
                    newly_seen.add(r.uid)
        if wants_flags or newly_seen:
            # RFC 3501 §7.2.6: FLAGS first when these show a keyword that
            # another session brought in.
            for line in view.announce_keywords(records.values()):
                session.conn.write(line)
        if not needs_meta and not needs_file:
            # Index-only attributes: one write per batch, no per-message await.
            lines = []
            for seq, uid in batch:
                record = records.get(uid)
                if record is None:
                    missing = True
                    continue
                lines.append(_record_only_line(view, seq, record, atts))
                if wants_flags:
                    view.told_flags(record)
            session.conn.write(b"".join(lines))
            d = session.conn.drain()
            if d is not None:
                await d
            continue
        for seq, uid in batch:
            record = records.get(uid)
            if record is None:
                missing = True
                continue
            if wants_flags or uid in newly_seen:
                view.told_flags(record)
            try:
                await _fetch_one(session, view, seq, record, atts, needs_meta,
                                 uid in newly_seen and not wants_flags, session.condstore)
            except NoSuchMessage:
                missing = True
    if missing:
        # RFC 2180 §4.1.3: another session expunged some of them; answer the
        # rest and say OK (what Dovecot does and clients handle best).  The
        # EXPUNGEs follow at the next command that may carry them.
        return "FETCH completed, some messages were expunged meanwhile"
    return "FETCH completed"


def _changed_pairs(view: SelectedFolder, request: Request, seqset: Any, modseq: int
                   ) -> list[tuple[int, int]]:
    """(seq, uid) of the messages in the set with MODSEQ > modseq (RFC 7162
    §3.1.4.1), from the store's MODSEQ log: the work follows the changes,
    not the size of the set."""
    if not request.uid and any(n > view.exists for r in seqset.ranges for n in (r.low, r.high)):
        raise Bad("message sequence number out of range")  # as _resolve
    within = searchmod.SeqSetMatcher(seqset, (view.uids[-1] if view.uids else 0) if request.uid
                                     else view.exists)
    pairs = []
    for record in view.folder.changed_since(modseq):
        seq = view.seq_of(record.uid)
        if seq is not None and (record.uid if request.uid else seq) in within:
            pairs.append((seq, record.uid))
    pairs.sort()
    return pairs


def _record_item(view: SelectedFolder, record: MessageRecord, name: str) -> bytes | None:
    """A fetch item the index record answers alone, or None for the others."""
    if name == "FLAGS":
        return b"FLAGS " + flags_with_recent(record.flags, record.uid in view.recent)
    if name == "UID":
        return b"UID %d" % record.uid
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + internaldate(record.internaldate)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % record.size
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % record.modseq
    return None


def _record_only_line(view: SelectedFolder, seq: int, record: MessageRecord, atts: list[FetchAtt]
                      ) -> bytes:
    items = [item for att in atts if (item := _record_item(view, record, att.name)) is not None]
    return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items))


async def _fetch_one(session: Session, view: SelectedFolder, seq: int, record: MessageRecord,
                     atts: list[FetchAtt], needs_meta: bool, add_flags: bool, condstore: bool = False
                     ) -> None:
    folder = view.folder
    structure: dict[str, Any] = {}
    if needs_meta:
        # Cached at delivery; parsed again only for data indexed without it.
        structure = fetchmod.structure_of(folder.meta(record.uid), lambda: _read_whole(folder, record.uid))
    conn = session.conn
    binaries = await _binary_values(folder, record.uid, atts, structure)
    out = [b"* %d FETCH (" % seq]
    first = True
    message_file = None
    try:
        for i, att in enumerate(atts):
            if not first:
                out.append(b" ")
            first = False
            name = att.name
            item = _record_item(view, record, name)
            if item is not None:
                out.append(item)
            elif i in binaries:
                out.append(att.response_name().encode("ascii") + b" " + binaries[i])
            elif name == "ENVELOPE":
                out.append(b"ENVELOPE " + fetchmod.render_envelope(structure))
            elif name in ("BODY", "BODYSTRUCTURE"):
                extended = name == "BODYSTRUCTURE"
                out.append(name.encode() + b" " + fetchmod.render_body(structure, extended))
            else:
                if _whole_message(att):
                    # Store invariant: the file is the message, RFC822.SIZE octets.
                    selection = fetchmod.apply_partial(fetchmod.FileRange(0, record.size), att.partial)
                else:
                    selection = fetchmod.select_body(att, structure)
                out.append(att.response_name().encode("ascii") + b" ")
                if selection is None:
                    out.append(b"NIL")
                    continue
                if message_file is None:
                    message_file = folder.open_message(record.uid)
                if isinstance(selection, fetchmod.HeaderSelection) or len(selection) <= _INLINE_READ:
                    data = fetchmod.read_selection(selection, message_file)
                    out.append(b"{%d}\r\n" % len(data))
                    out.append(data)
                    continue
                # A big section: write what we have, then stream the literal.
                out.append(b"{%d}\r\n" % len(selection))
                conn.write(b"".join(out))
                out = []
                await _stream(session, selection, message_file)
        if add_flags:
            # RFC 3501 §6.4.5: \Seen was set implicitly; show the new flags.
            out.append(b" FLAGS " + flags_with_recent(record.flags, record.uid in view.recent))
            if condstore and not any(a.name == "MODSEQ" for a in atts):
                out.append(b" MODSEQ (%d)" % record.modseq)  # RFC 7162 §3.1
        out.append(b")\r\n")
        conn.write(b"".join(out))
    finally:
        if message_file is not None:
            message_file.close()
    d = conn.drain()
    if d is not None:
        await d


async def _binary_values(folder: Any, uid: int, atts: list[FetchAtt], structure: dict[str, Any]
                         ) -> dict[int, bytes]:
    """The rendered values of the BINARY / BINARY.SIZE items (RFC 3516),
    decoded before the FETCH line starts so an unknown encoding can still
    answer the command NO [UNKNOWN-CTE] (§4.3)."""
    wanted = [(i, att) for i, att in enumerate(atts) if att.name in _BINARY_ATTS]
    if not wanted:
        return {}
    out: dict[int, bytes] = {}
    for i, att in wanted:
        assert att.section is not None
        where = binarymod.part_range(structure, att.section.part)
        if where is None:
            out[i] = b"NIL" if att.name == "BINARY[]" else b"0"
            continue
        start, end, encoding = where
        if end - start > _INLINE_READ:
            data = await deferToThread(_read_decoded, folder, uid, start, end, encoding)
        else:
            data = _read_decoded(folder, uid, start, end, encoding)
        if att.name == "BINARY.SIZE":
            out[i] = b"%d" % len(data)
        else:
            out[i] = binarymod.literal(binarymod.apply_partial(data, att.partial))
    return out


def _read_decoded(folder: Any, uid: int, start: int, end: int, encoding: str) -> bytes:
    with folder.open_message(uid) as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        return binarymod.decode(data, encoding)
    except binarymod.UnknownCTE:
        raise No(f"unknown content-transfer-encoding {encoding[:40]}", "UNKNOWN-CTE") from None


def _read_whole(folder: Any, uid: int) -> bytes:
    with folder.open_message(uid) as f:
        return f.read()


async def _stream(session: Session, selection: Any, message_file: Any) -> None:
    chunks: Iterator[bytes] = fetchmod.iter_selection(selection, message_file, _CHUNK)
    remaining = len(selection)
    while remaining > 0:
        chunk = await deferToThread(next, chunks, b"")
        if not chunk:
            # The file shrank under us after the literal length went out:
            # the stream cannot be repaired, the connection must end.
            session.conn.abort()
            raise ConnectionError("message file truncated during FETCH")
        remaining -= len(chunk)
        session.conn.write(chunk)
        d = session.conn.drain()
        if d is not None:
            await d


# --- STORE ----------------------------------------------------------------------------------


@command("STORE", SELECTED, forbids_expunge=True)
async def store(session: Session, request: Request) -> str:
    args: StoreArgs = request.args
    view = _view(session)
    if view.readonly:
        raise No("folder is read-only", "READ-ONLY")
    if args.unchanged_since is not None:
        session.enable_condstore()  # RFC 7162 §3.1
    pairs = _resolve(view, request, args.seqset)
    uids = [uid for _, uid in pairs]
    if not uids:
        return "STORE completed"
    # RFC 7162 §3.1.3: the store checks UNCHANGEDSINCE per message inside the
    # write transaction (UNCHANGEDSINCE 0 fails every message: all have a
    # MODSEQ of at least 1) and leaves the refused ones untouched.
    changed, refused = await view.folder.set_flags(uids, args.flags, args.mode, args.unchanged_since)
    view.note_own_flags(changed)
    # RFC 3501 §7.2.6: FLAGS (and PERMANENTFLAGS) again when the folder now
    # uses a keyword the session was not told of.
    for line in view.announce_keywords(changed):
        session.conn.write(line)
    refused_set = set(refused)
    shown: Any = ()
    if not args.silent:
        # RFC 3501 §6.4.6: the new flags of every message in the set (not of
        # those UNCHANGEDSINCE refused: RFC 7162 §3.1.3 reports them in
        # MODIFIED only).  With CONDSTORE on, with their MODSEQ.
        shown = [r for r in view.folder.records(uids) if r.uid not in refused_set]
        for line in view.announce_keywords(shown):
            session.conn.write(line)
    elif session.condstore:
        # RFC 7162 §3.1.3: .SILENT still reports the new MODSEQ of each
        # message changed, so the client's cache stays current.
        shown = changed
    for i, record in enumerate(shown):
        seq = view.seq_of(record.uid)
        if seq is None:
            continue
        items = [b"UID %d" % record.uid] if request.uid else []
        if not args.silent:
            items.append(b"FLAGS " + flags_with_recent(record.flags, record.uid in view.recent))
        if session.condstore:
            items.append(b"MODSEQ (%d)" % record.modseq)
        session.conn.write(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items)))
        if i % 256 == 255:
            d = session.conn.drain()
            if d is not None:
                await d
    if refused:
        # RFC 7162 §3.1.3: MODIFIED lists what UNCHANGEDSINCE protected.
        from xmail.protocols.imap.grammar import compress_numbers

        refused_ids = refused if request.uid else [s for s in map(view.seq_of, refused) if s]
        return f"[MODIFIED {compress_numbers(refused_ids)}] conditional STORE failed"
    return "STORE completed"


# --- COPY / MOVE ------------------------------------------------------------------------------


def uid_list(uids: Any) -> str:
    """UIDs in the given order as a set with runs compressed (RFC 4315 §3:
    the source and destination sets correspond element by element)."""
    return resultsmod.ordered_set(uids)


def _copyuid(result: Any) -> str:
    return f"COPYUID {result.uidvalidity} {uid_list(result.source_uids)} {uid_list(result.dest_uids)}"


@command("COPY", SELECTED)
async def copy(session: Session, request: Request) -> str:
    args: CopyArgs = request.args
    usable_name(args.mailbox)  # NO, not BAD, for a name that is not modified UTF-7
    view = _view(session)
    uids = [uid for _, uid in _resolve(view, request, args.seqset)]
    if not uids:
        return "COPY completed, nothing to copy"
    try:
        note_incoming(session, session.mailbox.folder(args.mailbox))
        result = await view.folder.copy(uids, args.mailbox)
    except NoSuchFolder:
        raise No(f"no folder {args.mailbox}", "TRYCREATE") from None
    if not result.source_uids:
        raise No("the messages were expunged meanwhile", "EXPUNGEISSUED")
    return f"[{_copyuid(result)}] COPY completed"


@command("MOVE", SELECTED)
async def move(session: Session, request: Request) -> str:
    args: CopyArgs = request.args
    usable_name(args.mailbox)  # NO, not BAD, for a name that is not modified UTF-7
    view = _view(session)
    if view.readonly:
        raise No("folder is read-only", "READ-ONLY")
    uids = [uid for _, uid in _resolve(view, request, args.seqset)]
    if not uids:
        return "MOVE completed, nothing to move"
    try:
        note_incoming(session, session.mailbox.folder(args.mailbox))
        result = await view.folder.move(uids, args.mailbox)
    except NoSuchFolder:
        raise No(f"no folder {args.mailbox}", "TRYCREATE") from None
    # RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
    if result.source_uids:
        session.untagged(f"OK [{_copyuid(result)}] moved".encode())
    for line in view.remove(result.source_uids):
        session.conn.write(line)
    return "MOVE completed"


# --- SEARCH ------------------------------------------------------------------------------------


async def _matching(session: Session, key: Any) -> tuple[list[int], list[MessageRecord]]:
    """UIDs matching a search key, and the records in sequence order."""
    view = _view(session)
    folder = view.folder
    uids = list(view.uids)
    records = folder.records(uids)
    if len(records) != len(uids):
        # Keep positions equal to our sequence numbers: stand-ins for
        # messages another session expunged that we have not reported yet.
        present = {r.uid: r for r in records}
        records = [present.get(uid) or MessageRecord(uid, frozenset({"\\Deleted"}), 0, 0, 0.0, "")
                   for uid in uids]
        gone = set(uids) - set(present)
    else:
        gone = set()
    recent = frozenset(view.recent)
    try:
        if searchmod.needs_message_data(key):
            matches = await deferToThread(searchmod.run_search, key, folder, records,
                                          recent_uids=recent)
        else:
            matches = searchmod.run_search(key, folder, records, recent_uids=recent)
    except searchmod.SearchError as e:
        raise Bad(str(e)) from None
    if gone:
        matches = [uid for uid in matches if uid not in gone]
    return matches, records


@command("SEARCH", SELECTED, forbids_expunge=True)
async def search(session: Session, request: Request) -> str:
    args: SearchArgs = request.args
    view = _view(session)
    saving = args.returns is not None and "SAVE" in args.returns
    if saving:
        searchres.reset(session)  # RFC 5182 §2.1: a failed SEARCH leaves "$" empty
    matches, records = await _matching(session, args.key)
    if saving:
        searchres.save(session, searchres.what_to_save(args.returns, matches))
    numbers = matches if request.uid else [view.seq_of(uid) or 0 for uid in matches]
    numbers = [n for n in numbers if n]
    highest = None
    if uses_modseq(args.key):
        session.enable_condstore()  # RFC 7162 §3.1
        if matches:
            # RFC 7162 §3.1.5: the highest MODSEQ of the messages found; with
            # only MIN and/or MAX asked for, of the messages returned
            # (RFC 4731 §3.2), so a client can cache that MODSEQ with them.
            wanted = set(matches)
            if args.returns and args.returns <= {"MIN", "MAX"}:
                ordered = sorted(matches)  # UID order is sequence order
                wanted = {ordered[0] if "MIN" in args.returns else ordered[-1],
                          ordered[-1] if "MAX" in args.returns else ordered[0]}
            highest = max(r.modseq for r in records if r.uid in wanted)
    if args.returns is None and session.rev2:
        # RFC 9051 §6.4.4: a rev2 SEARCH without RETURN answers ESEARCH as
        # if RETURN (ALL) were given (Appendix E).
        _write_esearch(session, request, numbers, frozenset({"ALL"}), highest)
    elif args.returns is None:
        _write_search(session, numbers, highest)
    elif args.returns != {"SAVE"}:  # RFC 5182 §2.1: SAVE alone answers no ESEARCH
        _write_esearch(session, request, numbers, args.returns, highest, args.partial)
    if args.returns is not None and "UPDATE" in args.returns:
        # RFC 5267 §4.1: keep the result current until CANCELUPDATE.
        modseq = max((r.modseq for r in records), default=0)
        if not searchctx.start(session, request.tag, args.key, request.uid, matches, modseq):
            session.untagged(b"NO [NOUPDATE " + quoted(request.tag) + b"] too many updating searches")
    return "SEARCH completed"


@command("CANCELUPDATE", SELECTED)
async def cancelupdate(session: Session, request: Request) -> str:
    # RFC 5267 §4.3: end updating searches; a tag that names none is BAD.
    unknown = searchctx.cancel(session, request.args)
    if unknown:
        raise Bad("no updating search with tag " + unknown[0].decode("ascii", "replace")[:40])
    return "CANCELUPDATE completed"


def uses_modseq(expr: Any) -> bool:
    return uses_key(expr, "MODSEQ")


def _write_search(session: Session, numbers: list[int], highest: int | None = None) -> None:
    # Long results go out in pieces so no single bytes object is huge.
    session.conn.write(b"* SEARCH")
    for start in range(0, len(numbers), 10000):
        session.conn.write(b"".join(b" %d" % n for n in numbers[start : start + 10000]))
    if highest is not None:
        session.conn.write(b" (MODSEQ %d)" % highest)
    session.conn.write(b"\r\n")


def _write_esearch(session: Session, request: Request, numbers: list[int], returns: frozenset[str],
                   highest: int | None = None, partial: tuple[int, int] | None = None) -> None:
    # RFC 4731 §3.1: * ESEARCH (TAG "tag") [UID] [MIN n] [MAX n] [ALL set] [COUNT n]
    # (and RFC 9394 PARTIAL (range set)); numbers ascending.
    from xmail.protocols.imap.response import quoted

    parts = [b"ESEARCH (TAG " + quoted(request.tag) + b")"]
    if request.uid:
        parts.append(b"UID")
    parts.extend(resultsmod.esearch_items(numbers, returns, partial))
    if highest is not None:
        parts.append(b"MODSEQ %d" % highest)  # RFC 7162 §3.1.5
    session.untagged(b" ".join(parts))


# --- SORT and THREAD (RFC 5256, RFC 5267 ESORT, RFC 5957 SORT=DISPLAY) ---------------------------


@command("SORT", SELECTED, forbids_expunge=True)
async def sort(session: Session, request: Request) -> str:
    args: sortmod.SortArgs = request.args
    view = _view(session)
    matches, records = await _matching(session, args.key)
    if args.criteria.needs_headers:
        ordered = await deferToThread(sortmod.sort_uids, view.folder, records, args.criteria,
                                      search_result_uids=matches)
    else:
        ordered = sortmod.sort_uids(view.folder, records, args.criteria, search_result_uids=matches)
    numbers = ordered if request.uid else [view.seq_of(uid) or 0 for uid in ordered]
    modseq = b""
    if uses_modseq(args.key):
        session.enable_condstore()  # RFC 7162 §3.1
        if matches:
            # RFC 7162 §7: sort-data / ESORT carry search-sort-mod-seq too.
            wanted = set(matches)
            modseq = b"%d" % max(r.modseq for r in records if r.uid in wanted)
    if args.returns is None:
        session.conn.write(b"* SORT" + b"".join(b" %d" % n for n in numbers if n)
                           + (b" (MODSEQ " + modseq + b")" if modseq else b"") + b"\r\n")
    else:
        found = [n for n in numbers if n]
        partial = b""
        if args.partial is not None:
            # RFC 9394 §3: PARTIAL counts positions in the sorted result.
            partial = b" " + resultsmod.esearch_items(found, frozenset(), args.partial)[0]
        session.untagged(sortmod.esort_response(request.tag, found, args.returns - {"PARTIAL"},
                                                uid=request.uid)
                         + partial + (b" MODSEQ " + modseq if modseq else b""))
        if "UPDATE" in args.returns:
            _start_sort_context(session, request, args, ordered, records)
    return "SORT completed"


def _start_sort_context(session: Session, request: Request, args: sortmod.SortArgs,
                        ordered: list[int], records: list[MessageRecord]) -> None:
    """RFC 5267 §4.1, CONTEXT=SORT: keep the sorted result current until
    CANCELUPDATE (esort.py, searchctx.py)."""
    if args.partial is not None:
        # RFC 5267 §4.2: a server may decline to keep a context; updates of
        # a PARTIAL window are not kept (the full result is).
        session.untagged(b"NO [NOUPDATE " + quoted(request.tag) + b"] no updates for a PARTIAL result")
        return
    modseq = max((r.modseq for r in records), default=0)
    if not searchctx.start(session, request.tag, args.key, request.uid, ordered, modseq,
                           criteria=args.criteria):
        session.untagged(b"NO [NOUPDATE " + quoted(request.tag) + b"] too many updating searches")


@command("THREAD", SELECTED, forbids_expunge=True)
async def thread(session: Session, request: Request) -> str:
    args: threadmod.ThreadArgs = request.args
    view = _view(session)
    matches, records = await _matching(session, args.key)
    threads = await deferToThread(threadmod.thread_uids, view.folder, records, args.algorithm,
                                  search_result_uids=matches)
    to_number = (lambda uid: uid) if request.uid else (lambda uid: view.seq_of(uid) or 0)
    rendered = threadmod.render_thread(threads, to_number)
    session.conn.write(b"* THREAD" + (b" " + rendered.encode("ascii") if rendered else b"") + b"\r\n")
    return "THREAD completed"
