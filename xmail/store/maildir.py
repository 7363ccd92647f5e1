# -*- test-case-name: tests.store.test_maildir -*-
"""The Maildir file layer: unique names, durable writes, flags in names.

A message reaches its folder the way the Maildir specification
(https://cr.yp.to/proto/maildir.html) asks, with the fsyncs it leaves out:
written to tmp/ under a fresh name opened with O_EXCL, fsynced, hard-linked
into cur/ (never renamed over anything), unlinked from tmp/, and the cur/
directory fsynced.  Directory fsyncs of concurrent writers into one folder are
shared (`DirSyncer`): that and the index's group commit are what make many
appends per second durable.

Our own deliveries go straight to cur/ with the info part ":2,FLAGS" because
the index, not the directory, says what is new; new/ is watched only for mail
dropped in by other programs.

Flags in names: the Maildir letters D F P R S T for \\Draft \\Flagged
$Forwarded \\Answered \\Seen \\Deleted, and Dovecot-style keyword letters
a..z, whose meaning each folder's `dovecot-keywords` file records (26 at
most; further keywords live in the index only).
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SYSTEM_FLAGS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "$Forwarded": "P",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS = {letter: flag for flag, letter in SYSTEM_FLAGS.items()}
_SYSTEM_CANONICAL = {f.lower(): f for f in SYSTEM_FLAGS}
INFO_SEPARATOR = ":2,"
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"
KEYWORDS_FILE = "dovecot-keywords"
_COPY_CHUNK = 1 << 20

_counter = itertools.count(1)
_counter_lock = threading.Lock()


def _hostname() -> str:
    # Maildir: "/" and ":" in the host name are written as \057 and \072.
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


_HOST = _hostname()


def unique_name(size: int) -> str:
    """A Maildir unique name: time.M<usec>P<pid>Q<counter>R<random>.host,S=size.

    os.getpid() is read on each call: twistd may fork after import.
    """
    with _counter_lock:
        count = next(_counter)
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{count}R{secrets.token_hex(8)}.{_HOST},S={size}"


def canonical_flag(flag: str) -> str:
    """System flags in their canonical case; keywords unchanged."""
    return _SYSTEM_CANONICAL.get(flag.lower(), flag)


def split_info(entry: str) -> tuple[str, str]:
    """("base", "letters") of a cur/ entry; letters "" without an info part."""
    base, sep, letters = entry.partition(INFO_SEPARATOR)
    if not sep:
        base = entry.split(":", 1)[0]
    return base, letters


def info_letters(flags: frozenset[str], keywords: list[str]) -> str:
    letters = [SYSTEM_FLAGS[f] for f in flags if f in SYSTEM_FLAGS]
    for flag in flags:
        if flag not in SYSTEM_FLAGS:
            try:
                index = keywords.index(flag)
            except ValueError:
                continue
            if index < len(KEYWORD_LETTERS):
                letters.append(KEYWORD_LETTERS[index])
    return "".join(sorted(letters))


def flags_from_letters(letters: str, keywords: list[str]) -> set[str]:
    flags = set()
    for letter in letters:
        if letter in LETTER_FLAGS:
            flags.add(LETTER_FLAGS[letter])
        elif letter in KEYWORD_LETTERS:
            index = KEYWORD_LETTERS.index(letter)
            if index < len(keywords):
                flags.add(keywords[index])
    return flags


def entry_name(base: str, letters: str) -> str:
    return f"{base}{INFO_SEPARATOR}{letters}"


def message_file(folder_dir: str, base: str, flags: frozenset[str], keywords: list[str]) -> str:
    """Where a message of the folder lives: cur/base:2,<letters of its flags>."""
    return os.path.join(folder_dir, "cur", entry_name(base, info_letters(flags, keywords)))


# --- content ---------------------------------------------------------------------


def to_crlf(data: bytes) -> bytes:
    """Bare LF -> CRLF (the store invariant); other bytes unchanged.  Data
    without a bare LF comes back as the same object (reindex keeps such a
    file's name: `fixed is data`)."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    fixed = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return fixed


def has_bare_lf(data: bytes) -> bool:
    return data.count(b"\n") != data.count(b"\r\n")


# --- safe reads --------------------------------------------------------------------
#
# A Maildir is a directory the user's shell account (or a foreign delivery
# agent) may write into: a link planted as cur/<base>:2,S -> /etc/shadow must
# not be served by FETCH or RETR, nor indexed by reindex or the new/ pickup.
# Every message file is opened with O_NOFOLLOW (a symlink fails with ELOOP)
# and checked with fstat on the open descriptor (no window between the check
# and the read), and reads stop at the size the index recorded.

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class NotAMessageFile(OSError):
    """The path is a symlink, a FIFO, a device or a directory: never read."""


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """-> (fd, its fstat) of a regular file at path, not following a final
    symlink.  O_NONBLOCK keeps a planted FIFO from blocking the open; it has
    no effect on regular files.  Raises NotAMessageFile or the OSError."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotAMessageFile(errno.ELOOP, "a symbolic link, not a message file", path) from None
        raise
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotAMessageFile(errno.EINVAL, "not a regular file", path)
    return fd, st


class MessageFile:
    """A read-only view of the first `size` bytes of a message file.

    read/seek/tell/close like a binary file, with os.pread underneath (no
    shared file offset, no read-ahead buffer); nothing past `size` -- the
    RFC822.SIZE the index recorded and POP3 announced -- is ever returned,
    whatever the file on disk has grown to.
    """

    __slots__ = ("_fd", "size", "_pos")

    def __init__(self, fd: int, size: int):
        self._fd = fd
        self.size = size
        self._pos = 0

    @classmethod
    def open(cls, path: str, size: int) -> MessageFile:
        fd, st = open_regular(path)
        return cls(fd, min(size, st.st_size))

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        return self._fd

    def read(self, n: int = -1) -> bytes:
        if self._fd < 0:
            raise ValueError("read of a closed message file")
        left = self.size - self._pos
        if n is None or n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        parts = []
        while n > 0:
            chunk = os.pread(self._fd, n, self._pos)
            if not chunk:
                break  # the file shrank: stop, as a real file would
            parts.append(chunk)
            self._pos += len(chunk)
            n -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence == os.SEEK_END:
            offset += self.size
        if offset < 0:
            raise ValueError("negative seek position")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> MessageFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def read_regular(path: str, limit: int) -> tuple[bytes, os.stat_result]:
    """The whole of a regular file of at most `limit` bytes (0: no limit),
    never through a symlink -> (data, stat).  Raises NotAMessageFile, or
    OSError(EFBIG) when it is larger than limit."""
    fd, st = open_regular(path)
    try:
        if limit and st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes ({st.st_size})", path)
        # Up to the size fstat saw: a file still being written to is read
        # as it was, not followed while it grows.
        parts = []
        left = st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts), st
    finally:
        os.close(fd)


# --- durable writes ----------------------------------------------------------------


class DirSyncer:
    """fsync of a directory shared by concurrent threads.

    A caller needs a sync that *starts* after its own change; while one sync
    runs, every later caller waits for the next one, which covers them all.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, _DirState] = {}

    def sync(self, path: str) -> None:
        with self._lock:
            state = self._states.get(path)
            if state is None:
                state = self._states[path] = _DirState()
        state.sync(path)

    def waiting(self, path: str) -> int:
        """Callers blocked on `path` waiting for a sync to start after their
        change: tests wait for this instead of sleeping."""
        with self._lock:
            state = self._states.get(path)
        if state is None:
            return 0
        with state.cond:
            return state.waiting


class _DirState:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.started = 0
        self.done = 0
        self.running = False
        self.waiting = 0  # callers in cond.wait() (DirSyncer.waiting)

    def sync(self, path: str) -> None:
        with self.cond:
            wanted = self.started + 1
            while self.done < wanted:
                if self.running:
                    self.waiting += 1
                    try:
                        self.cond.wait()
                    finally:
                        self.waiting -= 1
                    continue
                self.running = True
                self.started += 1
                generation = self.started
                self.cond.release()
                ok = False
                try:
                    fsync_dir(path)
                    ok = True
                finally:
                    self.cond.acquire()
                    self.running = False
                    if ok:
                        self.done = max(self.done, generation)
                    # On failure the waiters of this generation run their own
                    # fsync (and fail themselves) rather than trust this one.
                    self.cond.notify_all()


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_tmp(folder_dir: str, data: bytes) -> tuple[str, str]:
    """Write data to tmp/ under a fresh unique name, fsynced.  -> (path, base)."""
    fd, path, base = _create_tmp(folder_dir, data)
    try:
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return path, base


def _create_tmp(folder_dir: str, data: bytes) -> tuple[int, str, str]:
    """data written (not yet fsynced) to tmp/ under a fresh unique name."""
    while True:
        base = unique_name(len(data))
        path = os.path.join(folder_dir, "tmp", base)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        return fd, path, base


class PendingFile:
    """A message written to tmp/ that is neither durable nor in cur/ yet;
    `finish_files` completes many of them with one fsync per directory."""

    __slots__ = ("fd", "tmp_path", "cur", "entry")

    def __init__(self, fd: int, tmp_path: str, cur: str, entry: str):
        self.fd = fd
        self.tmp_path = tmp_path
        self.cur = cur
        self.entry = entry


def start_file(folder_dir: str, data: bytes, letters: str) -> tuple[str, PendingFile]:
    """The first half of deliver_file: -> (base, pending)."""
    fd, tmp_path, base = _create_tmp(folder_dir, data)
    return base, PendingFile(fd, tmp_path, os.path.join(folder_dir, "cur"), entry_name(base, letters))


def finish_files(files: list[PendingFile], syncer: DirSyncer) -> list[BaseException | None]:
    """fsync each file, link it into cur/, unlink tmp/, then fsync each cur/
    once: the same steps as deliver_file, the directory syncs shared by the
    whole batch.  -> per file None (durable and visible) or the error (the
    tmp/ file is gone; a cur/ name whose directory sync failed may remain,
    which reindex picks up: delivered twice at worst, never lost)."""
    errors: list[BaseException | None] = [None] * len(files)
    linked: dict[str, list[int]] = {}
    synced = _fsync_all([pending.fd for pending in files])
    for i, pending in enumerate(files):
        try:
            try:
                if synced[i] is not None:
                    raise synced[i]
            finally:
                os.close(pending.fd)
            # link, never rename: an existing name is an error, not overwritten.
            os.link(pending.tmp_path, os.path.join(pending.cur, pending.entry))
        except Exception as e:
            errors[i] = e
        else:
            linked.setdefault(pending.cur, []).append(i)
        try:
            os.unlink(pending.tmp_path)
        except OSError as e:
            if errors[i] is None and e.errno != errno.ENOENT:
                errors[i] = e
    for cur, indices in linked.items():
        try:
            syncer.sync(cur)
        except Exception as e:
            for i in indices:
                errors[i] = e
    return errors


FSYNC_THREADS = 16  # a batch's file fsyncs in flight together
_fsync_pool: ThreadPoolExecutor | None = None
_fsync_pool_lock = threading.Lock()


def _fsync(fd: int) -> BaseException | None:
    try:
        os.fsync(fd)
    except Exception as e:
        return e
    return None


def _fsync_all(fds: list[int]) -> list[BaseException | None]:
    """fsync every fd; -> per fd None or the error.  Concurrently: one
    thread fsyncing a batch's files one after the other waits for the disk
    once per file, while the disk completes concurrent flushes in about the
    time of one (bench/RESULTS.md, "Peers": bulk APPEND)."""
    global _fsync_pool
    if len(fds) == 1:
        return [_fsync(fds[0])]
    if _fsync_pool is None:
        with _fsync_pool_lock:
            if _fsync_pool is None:
                _fsync_pool = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="xmail-fsync")
    return list(_fsync_pool.map(_fsync, fds))


def deliver_file(folder_dir: str, data: bytes, letters: str, syncer: DirSyncer) -> str:
    """tmp -> cur durably; returns the base name.  data must be CRLF already."""
    base, pending = start_file(folder_dir, data, letters)
    error = finish_files([pending], syncer)[0]
    if error is not None:
        raise error
    return base


def link_or_copy(src: str, dest: str) -> None:
    """Hard link src to dest; across file systems, copy and fsync.

    A hard link of a planted symlink is a symlink again (link(2) does not
    follow it), refused wherever it is served; the copy opens src with
    open_regular, so it never turns a link into a file holding its target's
    bytes (issue 16 #11: COPY across file systems did).  Raises
    NotAMessageFile for a src that is no regular file."""
    try:
        os.link(src, dest)
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
    src_fd, _st = open_regular(src)
    tmp = dest + ".copy"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except BaseException:
        os.close(src_fd)
        raise
    with os.fdopen(src_fd, "rb") as fin, os.fdopen(fd, "wb") as fout:
        while chunk := fin.read(_COPY_CHUNK):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    try:
        os.link(tmp, dest)
    finally:
        os.unlink(tmp)


def rename_entry(cur: str, base: str, old_letters: str, new_letters: str) -> bool:
    """Rename base:2,old -> base:2,new inside cur/.  False when the file is gone."""
    if old_letters == new_letters:
        return os.path.exists(os.path.join(cur, entry_name(base, new_letters)))
    src = os.path.join(cur, entry_name(base, old_letters))
    dest = os.path.join(cur, entry_name(base, new_letters))
    try:
        os.rename(src, dest)
        return True
    except FileNotFoundError:
        # Renamed already (a retried transaction) or removed meanwhile.
        return os.path.exists(dest)


def unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def make_folder_dirs(folder_dir: str, *, subfolder: bool) -> None:
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(folder_dir, sub), mode=0o700, exist_ok=True)
    if subfolder:
        marker = os.path.join(folder_dir, "maildirfolder")
        if not os.path.exists(marker):
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600))


def write_keywords_file(folder_dir: str, keywords: list[str]) -> None:
    """Dovecot's dovecot-keywords: "<index> <keyword>" a line, replaced atomically."""
    path = os.path.join(folder_dir, KEYWORDS_FILE)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
        for index, keyword in enumerate(keywords[: len(KEYWORD_LETTERS)]):
            f.write(f"{index} {keyword}\n")
    os.replace(tmp, path)


def read_keywords_file(folder_dir: str) -> list[str]:
    keywords: list[str] = []
    try:
        with open(os.path.join(folder_dir, KEYWORDS_FILE), encoding="utf-8") as f:
            for line in f:
                index, _, keyword = line.strip().partition(" ")
                if index.isdigit() and keyword and int(index) == len(keywords):
                    keywords.append(keyword)
    except (OSError, UnicodeDecodeError):
        pass
    return keywords
