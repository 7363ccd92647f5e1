"""Shared fixtures: a real xmail server on free loopback ports.

The harness itself lives in tests/support/ (issue 14): these fixtures and
the names re-exported below are thin wrappers kept so tests import them
from one familiar place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.server import (  # noqa: F401  (re-exported for the tests)
    PASSWORD,
    RunningServer,
    in_reactor,
    make_settings,
    reactor_running,
)
from tests.support.wait import wait_until  # noqa: F401


@pytest.fixture
def make_server(tmp_path: Any) -> Iterator[Callable[..., RunningServer]]:
    """Factory: make_server(toml="", **listen) -> RunningServer; stopped after the test."""
    servers: list[RunningServer] = []
    counter = iter(range(1000))

    def factory(toml: str = "", **listen: tuple[str, ...]) -> RunningServer:
        data_dir = os.path.join(str(tmp_path), f"data{next(counter)}")
        server = RunningServer(make_settings(data_dir, toml, **listen))
        servers.append(server)
        return server

    yield factory
    for server in servers:
        if server.service.running:
            server.stop()


@pytest.fixture
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    """A server hosting example.com with users alice@ and bob@ (password PASSWORD)."""
    srv = make_server()
    srv.add_domain("example.com")
    srv.add_user("alice@example.com")
    srv.add_user("bob@example.com")
    return srv
