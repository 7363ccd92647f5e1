"""Folders for protocol unit tests, built on the package's one in-memory
IFolder (xmail.store.memory, checked with verifyObject in
tests/store/test_memory.py) instead of private fakes."""

from __future__ import annotations

from typing import Any

from xmail.store.memory import MemoryFolder


class RecordingFolder(MemoryFolder):
    """A MemoryFolder that records the UID batches of each headers_many
    call, for tests of how many reads a command costs."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_batches: list[list[int]] = []

    def headers_many(self, uids: Any) -> list[tuple[int, dict[str, str]]]:
        uids = list(uids)
        self.header_batches.append(uids)
        return super().headers_many(uids)


def folder_of(messages: list[bytes], cls: type[MemoryFolder] = MemoryFolder) -> Any:
    """A folder holding messages with UIDs 1..n, in order."""
    folder = cls()
    for data in messages:
        folder.add(data)
    return folder
