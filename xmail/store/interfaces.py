"""The mail store as the protocols see it.

Protocols (SMTP, POP3, IMAP, HTTP) reach mail only through these interfaces.
Conventions:

- Methods documented as "-> Deferred" do durable work (fsync, index commit)
  off the reactor thread and fire on the reactor thread once it is on disk.
- Other methods are short, synchronous reads of the LMDB index, safe on the
  reactor thread.  None of them lists a Maildir directory.
- Folder names are IMAP names in Unicode (already decoded from modified
  UTF-7), hierarchy delimiter "/", "INBOX" case-insensitive.
- Flags are str: system flags with their backslash ("\\Seen"), keywords as
  atoms.  "\\Recent" is never stored; the IMAP layer tracks it per session.
- Errors are the exceptions below; protocols map them to wire replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zope.interface import Attribute, Interface

from xmail.message import MessageMeta  # noqa: F401  (re-exported)

# --- errors ---------------------------------------------------------------


class StoreError(Exception):
    """Base class of store errors a protocol turns into a NO / 4xx / -ERR."""


class NoSuchFolder(StoreError):
    """The folder does not exist (IMAP: NO [TRYCREATE] for APPEND/COPY/MOVE)."""


class FolderExists(StoreError):
    """CREATE or RENAME onto an existing name (IMAP: NO [ALREADYEXISTS])."""


class InvalidFolderName(StoreError):
    """A name with "..", NUL/CR/LF, leading/trailing "/", over 255 bytes, ..."""


class FolderNotAllowed(StoreError):
    """The operation is not allowed on this folder (e.g. DELETE INBOX,
    renaming or deleting a special folder, CREATE clashing with one)."""


class NoSuchMessage(StoreError):
    """The message is gone (expunged by another session or process)."""


class OverQuota(StoreError):
    """The user's byte or message quota would be exceeded
    (IMAP: NO [OVERQUOTA], SMTP 452 4.2.2 / 552 5.2.2)."""

    def __init__(self, message: str = "quota exceeded", *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class MessageTooLarge(StoreError):
    """Larger than limits.max_message_size."""


class StoreBusy(StoreError):
    """Temporary: the index writer is saturated (SMTP 451, IMAP NO [UNAVAILABLE])."""


# --- records ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """What the index knows of one message; cheap to produce in bulk."""

    uid: int
    flags: frozenset[str]
    modseq: int
    size: int  # RFC822.SIZE: octets with CRLF line endings
    internaldate: float  # seconds since the epoch, UTC
    filename: str  # base name in cur/ or new/, without the ":2,..." info part


@dataclass(frozen=True, slots=True)
class FolderStatus:
    messages: int
    unseen: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int
    size: int  # total octets


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """One entry of `IMailbox.list_folders()`."""

    name: str
    special_use: str | None  # "\\Sent", "\\Drafts", ... or None
    subscribed: bool
    # The folder's identity, kept across RENAME (so a listener can tell a
    # rename from a delete and a create); 0 for entries that are not folders.
    ident: int = 0


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    bytes_used: int
    messages_used: int
    bytes_limit: int  # 0 = unlimited
    messages_limit: int  # 0 = unlimited


@dataclass(frozen=True, slots=True)
class AppendResult:
    uidvalidity: int
    uid: int
    # True when the send-save dedup matched and nothing new was stored:
    # uid is then the UID of the copy that was already in Sent.
    deduplicated: bool = False


@dataclass(frozen=True, slots=True)
class CopyResult:
    """UIDPLUS (RFC 4315) data for COPY and MOVE."""

    uidvalidity: int  # of the destination
    source_uids: tuple[int, ...]
    dest_uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FolderChanges:
    """What changed in a folder since a listener last heard; see IFolderListener."""

    new_uids: tuple[int, ...] = ()
    expunged_uids: tuple[int, ...] = ()
    # Records whose flags changed (the current flags and MODSEQ).
    flag_changes: tuple[MessageRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class RecycledMessage:
    uid: int  # UID inside the Recycle folder
    original_folder: str
    expunged_at: float
    expires_at: float
    size: int
    subject: str = ""


# MessageMeta lives on the ground floor (xmail.message.mime); the store's
# interfaces name it, so it is re-exported here.


# --- interfaces ------------------------------------------------------------


class IFolderListener(Interface):
    """Hears of changes made to a folder by other sessions and processes."""

    def folder_changed(folder: IFolder, changes: FolderChanges) -> None:
        """Called on the reactor thread; must not block.  Changes made through
        the same IFolder object by the listener's own session are reported too;
        the session filters what it already knows."""


class IFolderListListener(Interface):
    """Hears that a user's folder list or subscriptions changed (CREATE,
    DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE), in this or another process."""

    def folder_list_changed(mailbox: IMailbox) -> None:
        """Called on the reactor thread; must not block.  What changed is
        for the listener to read (list_folders, subscriptions)."""


class IFolder(Interface):
    """One folder of one user's mailbox, as a session sees it."""

    name = Attribute("The folder's IMAP name (Unicode).")
    special_use = Attribute('"\\\\Sent" etc. or None.')

    def status() -> FolderStatus:
        """Counters from the index."""

    def records(uids: Any = None) -> list[MessageRecord]:
        """Records ordered by UID.  uids: None for all, or an iterable of
        UIDs (unknown ones are skipped)."""

    def record(uid: int) -> MessageRecord:
        """One record; raises NoSuchMessage."""

    def message_path(uid: int) -> str:
        """Absolute path of the message file, flags included; raises
        NoSuchMessage.  The file may be renamed (flags) or removed at any
        time by another session: use open_message to read it."""

    def open_message(uid: int) -> Any:
        """A binary file object open for reading; raises NoSuchMessage.
        Opening is a cheap syscall; callers read it in chunks."""

    def meta(uid: int) -> MessageMeta:
        """Cached parse results; raises NoSuchMessage."""

    def body_search(needle: str, uids: Any) -> tuple[set[int], set[int]]:
        """Full-text search of bodies: of uids -> (matching, undecided).
        needle is case-folded (str.casefold); a substring match in any
        script.  Undecided messages (not indexed yet, or their text was cut)
        must be read from their files.  Blocking: call it in a thread."""

    def note_body_text(uid: int, text: str, cut: bool) -> None:
        """Index the body text a caller extracted from an undecided
        message's file (any thread; queued)."""

    def changed_since(modseq: int) -> list[MessageRecord]:
        """Records with MODSEQ > modseq, by UID (RFC 7162 CHANGEDSINCE)."""

    def expunged_since(modseq: int) -> list[int]:
        """UIDs expunged after modseq, ascending (RFC 7162 VANISHED), from
        tombstones kept with the MODSEQ of their expunge.  Tombstones older
        than 30 days are compacted: the answer is complete only for
        modseq >= expunge_log_floor()."""

    def expunge_log_floor() -> int:
        """The lowest modseq for which expunged_since() is complete (0 when
        nothing was ever compacted).  Below it a caller must assume any UID
        it knows and the folder no longer has was expunged."""

    def headers(uid: int) -> dict[str, str]:
        """The cached header fields alone (MessageMeta.headers), cheaper
        than meta(); raises NoSuchMessage."""

    def headers_many(uids: Any) -> list[tuple[int, dict[str, str]]]:
        """(uid, headers) of the UIDs that exist, in UID order, from one read
        transaction (SEARCH over many messages)."""

    def append(source: bytes | str, flags: Any = (), internaldate: float | None = None) -> Any:
        """-> Deferred[AppendResult].  source: the message bytes, or the path
        of a file (e.g. a spooled SMTP body) that is *copied* in.  Bare LF
        is stored as CRLF (the store invariant); size counts CRLF.
        Appending to the \\Sent folder a message whose Message-ID send-save
        stored in the last 10 minutes stores nothing and fires with that
        copy (deduplicated=True).
        Raises (errbacks) OverQuota, MessageTooLarge, StoreBusy."""

    def discard(uids: Any) -> Any:
        """-> Deferred[list[int]] of UIDs removed for good, without Recycle:
        undoing appends that must not stand (a failed MULTIAPPEND, RFC 3502
        §6.3.11 all-or-nothing)."""

    def set_flags(uids: Any, flags: Any, mode: str, unchanged_since: int | None = None) -> Any:
        """-> Deferred[tuple[list[MessageRecord], list[int]]]: (records that
        changed, UIDs refused because their MODSEQ > unchanged_since).
        mode: "set", "add" or "remove".  RFC 7162 §3.1.3 for unchanged_since."""

    def copy(uids: Any, dest: str) -> Any:
        """-> Deferred[CopyResult].  NoSuchFolder for a missing dest."""

    def move(uids: Any, dest: str) -> Any:
        """-> Deferred[CopyResult].  Atomic per message: copy then expunge
        from this folder without passing through Recycle."""

    def expunge(uids: Any) -> Any:
        """-> Deferred[list[int]] of UIDs removed.  Outside Recycle the
        messages move to Recycle with an expiry; inside Recycle they are
        deleted for good."""

    def subscribe_changes(listener: IFolderListener) -> None:
        """Start reporting changes to listener (IDLE, concurrent sessions).
        Works across processes (xmailctl, other workers, files dropped into
        new/) without re-listing directories on each command."""

    def unsubscribe_changes(listener: IFolderListener) -> None:
        """Stop reporting; idempotent."""

    def poll_changes() -> None:
        """Check the index (and new/ mtime) for changes made elsewhere and
        report them to listeners now.  Cheap: one read transaction."""


class IMailbox(Interface):
    """All folders of one user."""

    address = Attribute("The user's canonical address (lowercase).")

    def list_folders() -> list[FolderInfo]:
        """Every folder, INBOX first then by name."""

    def subscriptions() -> list[str]:
        """Every subscribed name, existing or not (RFC 3501 §6.3.9 LSUB)."""

    def folder(name: str) -> IFolder:
        """Open a folder; raises NoSuchFolder / InvalidFolderName."""

    def folder_by_special_use(use: str) -> IFolder:
        """The folder with special-use `use` ("\\\\Sent"); NoSuchFolder if none."""

    def create_folder(name: str, special_use: str | None = None) -> Any:
        """-> Deferred[None].  Creates missing parents too (RFC 3501 §6.3.3)."""

    def delete_folder(name: str) -> Any:
        """-> Deferred[None]."""

    def rename_folder(old: str, new: str) -> Any:
        """-> Deferred[None].  Renaming INBOX moves its messages into a new
        folder and leaves INBOX empty (RFC 3501 §6.3.5); children move too."""

    def subscribe_list_changes(listener: IFolderListListener) -> None:
        """Tell listener of every change to the folder list or subscriptions."""

    def unsubscribe_list_changes(listener: IFolderListListener) -> None:
        """Stop telling listener."""

    def set_subscribed(name: str, subscribed: bool) -> Any:
        """-> Deferred[None].  Subscribing a name that does not exist is allowed."""

    def quota() -> QuotaUsage:
        """Usage and limits from the index."""

    def save_sent(source: bytes | str, message_id: str | None) -> Any:
        """-> Deferred[AppendResult]: send-save.  Store a submitted message in
        the \\Sent folder with \\Seen and remember its Message-ID for 10
        minutes, so that a client's own APPEND of the same message to Sent is
        answered from this copy (see IFolder.append)."""

    def recycle_list() -> list[RecycledMessage]:
        """Messages in Recycle, oldest first."""

    def recycle_restore(uids: Any) -> Any:
        """-> Deferred[list[tuple[int, str, int]]]: (recycle uid, folder,
        new uid) for each restored message; into the folder it came from
        (INBOX if that folder is gone)."""


class IMessageStore(Interface):
    """Every user's mail; one per process."""

    def provision(address: str) -> Any:
        """-> Deferred[IMailbox]: create the user's Maildir++ tree and default
        folders (DESIGN.md) if missing; cheap and idempotent.  The realm calls
        it at login and delivery calls it implicitly."""

    def mailbox(address: str) -> IMailbox:
        """The mailbox of a provisioned canonical user address (synchronous;
        raises NoSuchFolder if the user was never provisioned)."""

    def start() -> None:
        """Start timers (change polling).  Called by the core service."""

    def stop() -> Any:
        """Stop timers; may return a Deferred."""

    def deliver(address: str, source: bytes | str, folder: str = "INBOX", flags: Any = (),
                internaldate: float | None = None) -> Any:
        """-> Deferred[AppendResult]: durable local delivery (SMTP, queue,
        send-save).  Same errors as IFolder.append."""

    def purge_expired(now: float | None = None) -> Any:
        """-> Deferred[int]: delete Recycle messages past their expiry."""

    def reindex(address: str | None = None) -> Any:
        """-> Deferred[dict]: rebuild the index of one user (or all) from
        the Maildir, keeping UIDs whose file names still match; counts
        {"kept", "new", "removed", "skipped"} (`xmailctl reindex`)."""
