"""Store fixtures: a MailStore in synchronous mode and one on the shared reactor.

The store reaches users only through IDirectory.user(); `QuotaDirectory` is
the minimal stand-in for the quota limits the unit tests set (the acceptance
tests use the real Directory through the `server` fixture).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

from tests.conftest import in_reactor, reactor_running
from xmail.auth.interfaces import UserRecord
from xmail.config import LimitSettings, ServerSettings, Settings
from xmail.db.environment import IndexEnvironment
from xmail.store.mailstore import MailStore


class QuotaDirectory:
    """user() -> a UserRecord with the quotas a test set (None: [limits])."""

    def __init__(self) -> None:
        self.quotas: dict[str, tuple[int | None, int | None]] = {}

    def user(self, address: str) -> UserRecord | None:
        quota_bytes, quota_messages = self.quotas.get(address, (None, None))
        return UserRecord(address, quota_bytes=quota_bytes, quota_messages=quota_messages)

    def resolve(self, address: str) -> str | None:
        return address.lower()


class Clock:
    """A settable clock (seconds since the epoch)."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_settings(data_dir: str, **limits: int) -> Settings:
    base = Settings()
    return dataclasses.replace(base, server=ServerSettings(data_dir=data_dir),
                               limits=dataclasses.replace(LimitSettings(), **limits))


def result_of(d: Any) -> Any:
    """The result of an already-fired Deferred (synchronous mode); raises its failure."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired (synchronous store must fire at once)"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


class SyncStore:
    """A synchronous MailStore on its own environment, re-openable (restart)."""

    def __init__(self, data_dir: str, **limits: int):
        self.settings = make_settings(data_dir, **limits)
        self.directory = QuotaDirectory()
        self.clock = Clock()
        self.env: IndexEnvironment | None = None
        self.store: MailStore | None = None
        self.open()

    def open(self) -> MailStore:
        self.env = IndexEnvironment(self.settings.path("index"))
        self.env.open()
        self.store = MailStore(self.env, self.settings, self.directory, clock=self.clock)
        return self.store

    def close(self) -> None:
        if self.store is not None:
            self.store.fulltext.close()
        if self.env is not None:
            self.env.close()
            self.env = None

    def reopen(self) -> MailStore:
        self.close()
        return self.open()

    def mailbox(self, address: str = "alice@example.com") -> Any:
        return result_of(self.store.provision(address))


@pytest.fixture
def sync(tmp_path: Any) -> Iterator[SyncStore]:
    s = SyncStore(str(tmp_path / "data"))
    yield s
    s.close()


class ReactorStore:
    """A MailStore with the shared reactor: thread pool + group-commit writer."""

    def __init__(self, data_dir: str, **limits: int):
        self.settings = make_settings(data_dir, **limits)
        self.directory = QuotaDirectory()
        self.reactor = reactor_running()
        self.env = IndexEnvironment(self.settings.path("index"), reactor=self.reactor)
        self.env.open()
        self.env.start_writer()
        self.store = in_reactor(lambda: MailStore(self.env, self.settings, self.directory, self.reactor))
        in_reactor(self.store.start)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return in_reactor(fn, *args, **kwargs)

    def mailbox(self, address: str = "alice@example.com") -> Any:
        return self.call(self.store.provision, address)

    def close(self) -> None:
        in_reactor(self.store.stop)
        in_reactor(lambda: deferToThread(self.env.close))


@pytest.fixture
def threaded(tmp_path: Any) -> Iterator[ReactorStore]:
    s = ReactorStore(str(tmp_path / "data"))
    yield s
    s.close()
