# -*- test-case-name: tests.protocols.test_pop3_session -*-
"""RFC 1939 §8: one POP3 session per maildrop at a time.

`IMaildropLocks` is the seam between the POP3 session and where locks
live.  A daemon (one process or several workers, issue #9) uses
`FileMaildropLocks`: an flock(2) on one file per maildrop under
data_dir/run/pop3/, so a session in another worker sees [IN-USE], and the
kernel releases the lock when its holder exits, however it exits.
`InProcessMaildropLocks` remains for code without a data directory.  Locks
are shared by every POP3 listener (pop3 and pop3s) of one data directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading

from zope.interface import Interface, implementer


class IMaildropLocks(Interface):
    """Exclusive access to a user's maildrop for one POP3 session."""

    def acquire(address: str) -> bool:
        """Take the lock of the canonical address; False if held already."""

    def release(address: str) -> None:
        """Give the lock back; releasing a free lock is a no-op."""


@implementer(IMaildropLocks)
class InProcessMaildropLocks:
    """Locks held in a set; only sessions of this process see them."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._mutex = threading.Lock()  # acquire/release are called on the reactor, but cheaply safe

    def acquire(self, address: str) -> bool:
        with self._mutex:
            if address in self._held:
                return False
            self._held.add(address)
            return True

    def release(self, address: str) -> None:
        with self._mutex:
            self._held.discard(address)

    def held(self) -> frozenset[str]:
        with self._mutex:
            return frozenset(self._held)


@implementer(IMaildropLocks)
class FileMaildropLocks:
    """One lock file per maildrop, held with flock(2) while a session has it.

    flock locks belong to an open file description, so two sessions of one
    process conflict just as two processes do, and a process killed with
    -9 loses its locks with its descriptors.  Lock files are named by a
    hash of the address (any character is safe) and never removed: removing
    a lock file races with a process about to lock it.  The open and the
    non-blocking flock are a few microseconds on the reactor thread.
    """

    def __init__(self, directory: str):
        self.directory = directory
        self._fds: dict[str, int] = {}
        self._mutex = threading.Lock()
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def path(self, address: str) -> str:
        digest = hashlib.blake2b(address.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        return os.path.join(self.directory, digest + ".lock")

    def acquire(self, address: str) -> bool:
        with self._mutex:
            if address in self._fds:
                return False
            try:
                fd = os.open(self.path(address), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # run/ was removed under us
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                fd = os.open(self.path(address), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            self._fds[address] = fd
            return True

    def release(self, address: str) -> None:
        with self._mutex:
            fd = self._fds.pop(address, None)
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock

    def held(self) -> frozenset[str]:
        """The maildrops this process holds."""
        with self._mutex:
            return frozenset(self._fds)


_locks_by_data_dir: dict[str, IMaildropLocks] = {}


def locks_for(data_dir: str) -> IMaildropLocks:
    """The lock table of a data directory, shared by every listener on it
    in this process and, through the lock files, with every other worker."""
    key = os.path.realpath(data_dir)
    locks = _locks_by_data_dir.get(key)
    if locks is None:
        locks = _locks_by_data_dir[key] = FileMaildropLocks(os.path.join(key, "run", "pop3"))
    return locks
