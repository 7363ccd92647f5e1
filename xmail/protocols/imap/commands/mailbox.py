# -*- test-case-name: tests.protocols.test_imap_commands, tests.protocols.test_imap_semantics -*-
"""Authenticated-state mailbox commands (RFC 3501 §6.3): CREATE (with
CREATE-SPECIAL-USE, RFC 6154), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE,
LIST (LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE, CHILDREN
RFC 3348), LSUB and STATUS; APPEND is in append.py."""

from __future__ import annotations

from typing import Any

from xmail.protocols.imap.grammar import (
    CreateArgs,
    ListArgs,
    Request,
    StatusArgs,
    UnusableMailboxName,
)
from xmail.protocols.imap.response import mailbox as wire_mailbox
from xmail.protocols.imap.session import AUTH, No, Session, command
from xmail.store.interfaces import FolderInfo, NoSuchFolder, StoreBusy
from xmail.store.names import list_pattern, parent_names

DELIMITER = "/"


def folder_key(session: Session, folder: Any) -> tuple[str, str, int]:
    """Whose \\Recent claims these are: a folder deleted and created again (or
    renamed onto an old name) has a new UIDVALIDITY and starts from UID 1."""
    return (session.mailbox.address, folder.name, folder.status().uidvalidity)


def note_incoming(session: Session, folder: Any) -> None:
    """Before APPEND/COPY/MOVE into a folder no session has selected since
    the process started: fix what is old now, so that what arrives is \\Recent
    for the next session (its INTERNALDATE may be anything)."""
    key = folder_key(session, folder)
    if not session.recent.known(key):
        session.recent.first_sight(key, folder.records())


def usable_name(name: str, code: str = "CANNOT") -> str:
    """A name that is a valid IMAP string but not modified UTF-7 gets NO, not
    BAD (RFC 3501 §7.1.5: BAD is for syntax errors)."""
    if UnusableMailboxName.marks(name):
        raise No("mailbox name is not valid modified UTF-7", code)
    return name


def open_folder(session: Session, name: str, *, trycreate: bool = False) -> Any:
    usable_name(name, "NONEXISTENT")
    try:
        return session.mailbox.folder(name)
    except NoSuchFolder:
        if trycreate:
            # RFC 3501 §6.3.11 / §6.4.7: the client may CREATE it and retry.
            raise No(f"no folder {name}", "TRYCREATE") from None
        raise No(f"no folder {name}", "NONEXISTENT") from None


def check_folder_limit(session: Session, name: str, *, moving: bool = False) -> None:
    """[limits] max_folders (issue 16: 6,000 folders in 7 s, then every LIST
    over them): NO [LIMIT] (RFC 5530) when creating name and the parents
    RFC 3501 §6.3.3 creates with it would pass the cap."""
    cap = session.ctx.settings.limits.max_folders
    if cap <= 0:
        return
    existing = {f.name for f in session.mailbox.list_folders()}
    new = [n for n in [*parent_names(name), *([] if moving else [name])] if n not in existing]
    if len(existing) + len(new) > cap:
        raise No(f"at most {cap} folders per user", "LIMIT")


@command("CREATE", AUTH)
async def create(session: Session, request: Request) -> str:
    args: CreateArgs = request.args
    # RFC 3501 §6.3.3: a trailing delimiter only declares the intent to
    # create children; the name itself is without it.
    name = usable_name(args.mailbox).rstrip(DELIMITER)
    if not name:
        raise No("invalid folder name", "CANNOT")
    if name == "INBOX":
        raise No("INBOX always exists", "ALREADYEXISTS")
    if len(args.special_use) > 1:
        raise No("only one special-use attribute per folder", "USEATTR")  # RFC 6154 §3
    check_folder_limit(session, name)
    await session.mailbox.create_folder(name, args.special_use[0] if args.special_use else None)
    return "CREATE completed"


@command("DELETE", AUTH)
async def delete(session: Session, request: Request) -> str:
    name: str = usable_name(request.args)
    if name == "INBOX":
        raise No("INBOX cannot be deleted", "CANNOT")  # RFC 3501 §6.3.4
    try:
        await session.mailbox.delete_folder(name)
    except NoSuchFolder:
        # RFC 9051 §6.3.5, §7.1: a level that exists only above other
        # folders (LIST: \Noselect / \NonExistent) cannot be deleted.
        if name in _parents([f.name for f in session.mailbox.list_folders()]):
            raise No("the folders below must be deleted first", "HASCHILDREN") from None
        raise
    if session.selected is not None and session.selected.folder.name == name:
        session.deselect()
    return "DELETE completed"


@command("RENAME", AUTH)
async def rename(session: Session, request: Request) -> str:
    old, new = usable_name(request.args[0], "NONEXISTENT"), usable_name(request.args[1])
    new = new.rstrip(DELIMITER)
    if new == "INBOX":
        raise No("INBOX already exists", "ALREADYEXISTS")
    check_folder_limit(session, new, moving=True)  # only its new parents count
    await session.mailbox.rename_folder(old, new)
    return "RENAME completed"


@command("SUBSCRIBE", AUTH)
async def subscribe(session: Session, request: Request) -> str:
    name = usable_name(request.args)
    cap = session.ctx.settings.limits.max_subscriptions
    if cap > 0:
        subscribed = session.mailbox.subscriptions()
        if len(subscribed) >= cap and name not in subscribed:
            raise No(f"at most {cap} subscriptions per user", "LIMIT")  # RFC 5530
    await session.mailbox.set_subscribed(name, True)
    return "SUBSCRIBE completed"


@command("UNSUBSCRIBE", AUTH)
async def unsubscribe(session: Session, request: Request) -> str:
    await session.mailbox.set_subscribed(usable_name(request.args), False)
    return "UNSUBSCRIBE completed"


# --- LIST ----------------------------------------------------------------------------------


def _parents(names: list[str]) -> set[str]:
    """Every name that has at least one child (RFC 3348 \\HasChildren)."""
    out = set()
    for name in names:
        parts = name.split(DELIMITER)
        for i in range(1, len(parts)):
            out.add(DELIMITER.join(parts[:i]))
    return out


def _list_line(verb: bytes, attrs: list[str], name: str, extra: bytes = b"", *, utf8: bool = False
               ) -> bytes:
    return (verb + b" (" + " ".join(attrs).encode("ascii") + b') "/" ' + wire_mailbox(name, utf8)
            + extra)


@command("LIST", AUTH)
async def list_(session: Session, request: Request) -> str:
    args: ListArgs = request.args
    if not args.extended and args.patterns == ("",):
        # RFC 3501 §6.3.8: the hierarchy delimiter and root name.
        session.untagged(b'LIST (\\Noselect) "/" ""')
        return "LIST completed"
    folders: list[FolderInfo] = session.mailbox.list_folders()
    parents = _parents([f.name for f in folders])
    patterns = [list_pattern(args.reference, p) for p in args.patterns if p != ""]
    subscribed_only = "SUBSCRIBED" in args.selection
    special_only = "SPECIAL-USE" in args.selection
    recursive = "RECURSIVEMATCH" in args.selection
    show_subscribed = subscribed_only or "SUBSCRIBED" in args.returns
    subscribed_names = set(session.mailbox.subscriptions()) if show_subscribed or recursive else set()
    entries = list(folders)
    if subscribed_only:
        # RFC 5258 §3.1: subscribed names that do not exist are listed too.
        existing = {f.name for f in folders}
        entries += [FolderInfo(name, None, True) for name in sorted(subscribed_names - existing)]
    existing_names = {f.name for f in folders}
    if not subscribed_only:
        # RFC 3501 §6.3.4/§6.3.8: a level that exists only as the parent of
        # other folders (its folder deleted) is listed, \Noselect, so clients
        # walking the tree with "%" still find what is below it.
        entries += [FolderInfo(name, None, False) for name in sorted(parents - existing_names)]
    for info in entries:
        if not any(p.matches(info.name) for p in patterns):
            continue
        subscribed = info.subscribed or info.name in subscribed_names
        # RFC 5258 §3.5: CHILDINFO is for a parent listed only because a
        # child matches the selection, not for one that matches itself.
        childinfo = recursive and subscribed_only and not subscribed and any(
            n.startswith(info.name + DELIMITER) for n in subscribed_names)
        if subscribed_only and not subscribed and not childinfo:
            continue
        if special_only and info.special_use is None:
            continue
        if info.name not in existing_names and info.name in parents:
            # RFC 9051 §7.3.1: rev2 says \\NonExistent (which implies \\Noselect).
            attrs = ["\\NonExistent" if args.extended or session.rev2 else "\\Noselect",
                     "\\HasChildren"]
        elif info.name not in existing_names:
            attrs = ["\\NonExistent"]  # RFC 5258 §3.4
        else:
            attrs = ["\\HasChildren" if info.name in parents else "\\HasNoChildren"]
        if info.special_use:
            attrs.append(info.special_use)
        if show_subscribed and subscribed:
            attrs.append("\\Subscribed")
        extra = b' ("CHILDINFO" ("SUBSCRIBED"))' if childinfo else b""
        session.untagged(_list_line(b"LIST", attrs, info.name, extra, utf8=session.rev2))
        if args.status_items and info.name in existing_names:
            # RFC 5819 §2: STATUS right after the folder's LIST response.
            try:
                folder = session.mailbox.folder(info.name)
                line = status_line(session, folder, info.name, args.status_items)
            except NoSuchFolder:
                continue  # deleted meanwhile
            except StoreBusy:
                # One NO for the command, not a failure (and a logged
                # traceback) per folder.
                raise No("the mail store is busy, try again", "UNAVAILABLE") from None
            session.untagged(line)
    return "LIST completed"


@command("LSUB", AUTH)
async def lsub(session: Session, request: Request) -> str:
    args: ListArgs = request.args
    if args.patterns == ("",):
        session.untagged(b'LSUB (\\Noselect) "/" ""')
        return "LSUB completed"
    pattern = list_pattern(args.reference, args.patterns[0])
    subscribed = sorted(session.mailbox.subscriptions(), key=lambda n: (n != "INBOX", n))
    listed = set(subscribed)
    # RFC 3501 §6.3.9: subscribed names, whether or not the folder exists;
    # with "%", an unsubscribed level above a subscribed name is returned
    # \Noselect ("foo" for "foo/bar"), once.
    for name in subscribed:
        if pattern.matches(name):
            session.untagged(_list_line(b"LSUB", [], name, utf8=session.rev2))
            continue
        parts = name.split(DELIMITER)
        for depth in range(1, len(parts)):
            ancestor = DELIMITER.join(parts[:depth])
            if ancestor not in listed and pattern.matches(ancestor):
                listed.add(ancestor)
                session.untagged(_list_line(b"LSUB", ["\\Noselect"], ancestor, utf8=session.rev2))
    return "LSUB completed"


# --- STATUS ----------------------------------------------------------------------------------


def recent_count(session: Session, folder: Any, uidnext: int) -> int:
    key = folder_key(session, folder)
    tracker = session.recent
    if not tracker.known(key):
        tracker.first_sight(key, folder.records())
    claimed = tracker.claimed(key)
    if uidnext - claimed > 50000:
        return tracker.unclaimed(key, (r.uid for r in folder.records()))
    return tracker.unclaimed(key, (r.uid for r in folder.records(range(claimed + 1, uidnext))))


def status_line(session: Session, folder: Any, name: str, items: tuple[str, ...]) -> bytes:
    st = folder.status()
    values = {
        "MESSAGES": st.messages,
        "UNSEEN": st.unseen,
        "UIDNEXT": st.uidnext,
        "UIDVALIDITY": st.uidvalidity,
        "HIGHESTMODSEQ": st.highestmodseq,  # RFC 7162 §3.1.2.3
        "SIZE": st.size,  # RFC 9051 §6.3.11: total octets of the messages
    }
    if "HIGHESTMODSEQ" in items:
        session.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE enabling command
    if "DELETED" in items or "DELETED-STORAGE" in items:
        # RFC 9208 §4.3: what an EXPUNGE would free (one index listing).
        deleted = [r for r in folder.records() if "\\Deleted" in r.flags]
        values["DELETED"] = len(deleted)
        # In units of 1024 octets, like the STORAGE resource it frees.
        values["DELETED-STORAGE"] = (sum(r.size for r in deleted) + 1023) // 1024
    out = []
    for item in items:
        value = recent_count(session, folder, st.uidnext) if item == "RECENT" else values[item]
        out.append(b"%s %d" % (item.encode("ascii"), value))
    return b"STATUS " + wire_mailbox(name, session.rev2) + b" (" + b" ".join(out) + b")"


@command("STATUS", AUTH)
async def status(session: Session, request: Request) -> str:
    args: StatusArgs = request.args
    folder = open_folder(session, args.mailbox)
    session.untagged(status_line(session, folder, args.mailbox, args.items))
    return "STATUS completed"
