"""The in-process server of the suite.

One Twisted reactor runs in a background thread for the whole test session
(a reactor cannot be restarted); each test builds its own XmailService on a
fresh data directory with every listener on `tcp:0:interface=127.0.0.1`, and
reads the bound ports back.  Tests then talk to it with real clients
(smtplib, poplib, imaplib, imapclient, swaks, mbsync, ...) from the test
thread.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.threads import blockingCallFromThread

from xmail.config import ListenSettings, Settings, parse

PASSWORD = "correct horse battery"
_LISTEN_ANY = "tcp:0:interface=127.0.0.1"

_reactor_thread: threading.Thread | None = None


def reactor_running() -> Any:
    """Start the shared reactor thread once; returns the reactor."""
    global _reactor_thread
    if _reactor_thread is None:
        _reactor_thread = threading.Thread(
            target=_reactor.run, kwargs={"installSignalHandlers": False}, daemon=True, name="reactor"
        )
        _reactor_thread.start()
    return _reactor


def in_reactor(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run fn on the reactor thread and wait for its (Deferred) result."""
    return blockingCallFromThread(reactor_running(), lambda: defer.maybeDeferred(fn, *args, **kwargs))


def make_settings(data_dir: str, toml: str = "", **listen: tuple[str, ...]) -> Settings:
    """Settings for a test server: every listener on a free loopback port."""
    settings = parse(toml, "<test>") if toml else Settings()
    ports = {f.name: (_LISTEN_ANY,) for f in dataclasses.fields(ListenSettings)}
    ports.update(listen)
    return dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, data_dir=data_dir, hostname="mail.example.com"),
        listen=ListenSettings(**ports),
    )


class RunningServer:
    """A started XmailService plus conveniences for tests."""

    def __init__(self, settings: Settings):
        from xmail.service import makeService

        self.settings = settings
        self.reactor = reactor_running()
        self.service = in_reactor(makeService, settings, self.reactor)
        in_reactor(self.service.startService)
        self.ctx = self.service.ctx

    def port(self, name: str) -> int:
        return self.service.port(name)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args) on the reactor thread; waits for a Deferred result."""
        return in_reactor(fn, *args, **kwargs)

    def add_domain(self, domain: str) -> None:
        self.ctx.directory.add_domain(domain)

    def add_user(self, address: str, password: str = PASSWORD, **kw: Any) -> None:
        """Add a user (directory writes are synchronous, off the reactor) and
        provision its mailbox through the running store."""
        self.ctx.directory.add_user(address, password=password, **kw)
        self.call(self.ctx.store.provision, address.lower())

    def mailbox(self, address: str) -> Any:
        return self.call(self.ctx.store.mailbox, address.lower())

    def stop(self) -> None:
        in_reactor(self.service.stopService)
