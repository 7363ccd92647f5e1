# -*- test-case-name: tests.protocols.test_imap_extensions -*-
"""APPEND (RFC 3501 §6.3.11) with UIDPLUS (RFC 4315), APPENDLIMIT (RFC 7889),
MULTIAPPEND (RFC 3502), CATENATE (RFC 4469) and literal8 data (RFC 3516).

All or nothing (RFC 3502 §6.3.11): every message is checked before the
first is stored; the messages are then stored in order, each durably
(fsync + committed index, like a single APPEND), and if one fails those
already stored are discarded for good before the NO goes out.  Another
session may see them come and go meanwhile (an EXISTS then an EXPUNGE); the
store has no multi-message transaction to hide that.

The tokenizer bounds the literals of one APPEND command to APPENDLIMIT
octets in total, so a MULTIAPPEND whose messages together exceed it gets
NO [TOOBIG]; a client then sends them one APPEND each.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from xmail.protocols.imap import fetch as fetchmod
from xmail.protocols.imap import imapurl
from xmail.protocols.imap.commands.mailbox import note_incoming, open_folder
from xmail.protocols.imap.commands.message import uid_list
from xmail.protocols.imap.grammar import AppendArgs, AppendMessage, CatenatePart, Request
from xmail.protocols.imap.session import AUTH, No, Session, State, command
from xmail.protocols.imap.tokenizer import SpooledLiteral
from xmail.store.interfaces import NoSuchFolder, NoSuchMessage

_log = Logger()
_INLINE_READ = 256 * 1024  # larger URL parts are read on a thread


@command("APPEND", AUTH)
async def append(session: Session, request: Request) -> str:
    args: AppendArgs = request.args
    folder = open_folder(session, args.mailbox, trycreate=True)
    limit = session.ctx.settings.limits.max_message_size
    messages = args.messages()
    for message in messages:
        if not isinstance(message.message, tuple):
            size = _size(message.message)
            if size > limit:
                raise No("message exceeds APPENDLIMIT", "TOOBIG")  # RFC 7889 §4
            if not size:
                raise No("empty message", "CANNOT")
    note_incoming(session, folder)
    results: list[Any] = []
    try:
        for message in messages:
            source = await _source(session, message, limit)
            results.append(await folder.append(source, message.flags, message.internaldate))
    except BaseException:
        # RFC 3502 §6.3.11: if any message cannot be appended, none is.
        fresh = [r.uid for r in results if not r.deduplicated]
        if fresh:
            try:
                await folder.discard(fresh)
            except Exception:
                _log.failure("cannot discard the messages of a failed MULTIAPPEND")
        raise
    selected = session.selected
    if selected is not None and selected.folder.name == folder.name and session.state is State.SELECTED:
        selected.poll()
    # RFC 4315 §3: resp-code-apnd = "APPENDUID" SP nz-number SP append-uid, where
    # append-uid is a uid-set in message order for MULTIAPPEND (RFC 3502 §6.3.11).
    return f"[APPENDUID {results[0].uidvalidity} {uid_list(r.uid for r in results)}] APPEND completed"


def _size(data: bytes | SpooledLiteral) -> int:
    return data.size if isinstance(data, SpooledLiteral) else len(data)


async def _source(session: Session, message: AppendMessage, limit: int) -> bytes | str:
    """What the store appends: the bytes, the path of a spooled literal
    (copied in by the store), or the message CATENATE assembles."""
    data = message.message
    if isinstance(data, SpooledLiteral):
        return data.path
    if not isinstance(data, tuple):
        return data
    built = await catenate(session, data, limit)
    if not built:
        raise No("empty message", "CANNOT")
    return built


# --- CATENATE (RFC 4469) ----------------------------------------------------------------------


async def catenate(session: Session, parts: tuple[CatenatePart, ...], limit: int) -> bytes:
    """The message made of TEXT literals and URL parts, in order (RFC 4469
    §5); NO [BADURL url] for a URL naming nothing this user may read, NO
    [TOOBIG] as soon as the result would pass APPENDLIMIT."""
    out = bytearray()
    for part in parts:
        if part.kind == "TEXT":
            value = part.value
            if isinstance(value, SpooledLiteral):
                if len(out) + value.size > limit:
                    raise No("the catenated message exceeds APPENDLIMIT", "TOOBIG")
                value = await deferToThread(_read_file, value.path)
            assert isinstance(value, bytes)
            out += value
        else:
            assert isinstance(part.value, str)
            out += await _url_data(session, part.value, limit - len(out))
        if len(out) > limit:
            raise No("the catenated message exceeds APPENDLIMIT", "TOOBIG")
    return bytes(out)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


async def _url_data(session: Session, url: str, room: int) -> bytes:
    try:
        ref = imapurl.parse_message_url(url, session.account.address)
        return await _fetch_url(session, ref, room)
    except (imapurl.BadUrl, NoSuchFolder, NoSuchMessage):
        raise No("the URL names no message of yours", imapurl.resp_code(url)) from None


async def _fetch_url(session: Session, ref: imapurl.MessageUrl, room: int) -> bytes:
    if ref.mailbox is None:
        if session.selected is None:
            raise imapurl.BadUrl("relative URL without a selected mailbox")
        folder = session.selected.folder
    else:
        folder = session.mailbox.folder(ref.mailbox)
    if ref.uidvalidity is not None and ref.uidvalidity != folder.status().uidvalidity:
        raise imapurl.BadUrl("UIDVALIDITY differs")
    record = folder.record(ref.uid)
    if ref.section:
        section = imapurl.section_of(ref.section)
        structure = fetchmod.structure_of(folder.meta(ref.uid), lambda: _read_message(folder, ref.uid))
        selection = fetchmod.resolve_section(structure, section)
        if selection is None:
            raise imapurl.BadUrl("no such section")
    else:
        selection = fetchmod.FileRange(0, record.size)
    if ref.partial is not None:
        origin, length = ref.partial
        selection = fetchmod.apply_partial(selection, (origin, length if length is not None else 1 << 62))
    if isinstance(selection, fetchmod.FileRange) and len(selection) > room:
        raise No("the catenated message exceeds APPENDLIMIT", "TOOBIG")
    if isinstance(selection, fetchmod.FileRange) and len(selection) > _INLINE_READ:
        return await deferToThread(_read_selection, folder, ref.uid, selection)
    return _read_selection(folder, ref.uid, selection)


def _read_message(folder: Any, uid: int) -> bytes:
    with folder.open_message(uid) as f:
        return f.read()


def _read_selection(folder: Any, uid: int, selection: Any) -> bytes:
    with folder.open_message(uid) as f:
        return fetchmod.read_selection(selection, f)
