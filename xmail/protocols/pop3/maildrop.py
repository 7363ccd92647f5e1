# -*- test-case-name: tests.protocols.test_pop3_session -*-
"""RFC 1939 §8: one POP3 session per maildrop at a time.

`IMaildropLocks` is the small seam issue #9 needs: today the locks live in
this process (`InProcessMaildropLocks`); with several worker processes the
same interface can be backed by a lock file per maildrop.  Locks are shared
by every POP3 listener (pop3 and pop3s) of one data directory.
"""

from __future__ import annotations

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


_locks_by_data_dir: dict[str, InProcessMaildropLocks] = {}


def locks_for(data_dir: str) -> IMaildropLocks:
    """The lock table of a data directory, shared by every listener on it."""
    key = os.path.realpath(data_dir)
    locks = _locks_by_data_dir.get(key)
    if locks is None:
        locks = _locks_by_data_dir[key] = InProcessMaildropLocks()
    return locks
