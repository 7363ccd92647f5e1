"""Fill a folder fast for benchmarks: files into cur/ without fsync, index
records in transactions of thousands.  Not the delivery path (that is what
store_bench measures); the folders it builds are what the other benchmarks
read."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from xmail.store import maildir
from xmail.store.delivery import parse_meta

# One (message bytes, flags, internal date) a message; meta is parsed from the bytes
# unless `meta` is given (the same message appended many times).
Item = tuple[bytes, frozenset[str], float]

BATCH = 5000


def open_store(settings: Any, domain: str = "example.com") -> tuple[Any, Any, Any]:
    """(env, directory, store) in synchronous mode on settings' data dir, with
    domain hosted.  The caller closes env."""
    from xmail.auth.directory import Directory
    from xmail.db.environment import IndexEnvironment
    from xmail.store.mailstore import MailStore

    os.makedirs(settings.path("mail"), exist_ok=True)
    env = IndexEnvironment(settings.path("index"))
    env.open()
    directory = Directory(env, settings)
    directory.add_domain(domain)
    return env, directory, MailStore(env, settings, directory)


def provisioned_inbox(store: Any, address: str) -> Any:
    """The INBOX of address in a store running in synchronous mode."""
    out: list = []
    store.provision(address).addBoth(out.append)
    return out[0].folder("INBOX")


def bulk_append(store: Any, folder: Any, items: Iterable[Item], *,
                meta_of: Callable[[bytes], Any] = parse_meta) -> int:
    """Append items to folder; returns how many."""
    with store.env.read() as txn:
        cur = os.path.join(store.folder_dir(store.index.state(txn, folder.fid)), "cur")
    count = 0
    entries: list[tuple[str, frozenset[str], int, float, Any]] = []

    def job(txn: Any) -> None:
        editor = store.index.editor(txn, folder.fid, store.index.state(txn, folder.fid))
        for base, flags, size, when, meta in entries:
            editor.add(flags, size, when, base, meta)
        editor.flush()

    def flush() -> None:
        store.env.write_sync(job)
        entries.clear()

    for data, flags, when in items:
        base = maildir.unique_name(len(data))
        with open(os.path.join(cur, maildir.entry_name(base, maildir.info_letters(flags, []))), "wb") as f:
            f.write(data)
        entries.append((base, flags, len(data), when, meta_of(data)))
        count += 1
        if len(entries) >= BATCH:
            flush()
    if entries:
        flush()
    return count
