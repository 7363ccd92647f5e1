"""Fixtures of the pipeline's tests: real scanner daemons (clamd, rspamd
with its redis) for the whole session, a loopback DNS zone for rspamd's
resolver, and the pipeline's thread pool.  The daemons are started once
(rspamd ~1 s, clamd well under that with its one-signature database) and
stopped at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.dns import serve_zone
from tests.support.scanners import Clamd, Rspamd, start_clamd, start_rspamd
from tests.support.server import in_reactor, reactor_running
from xmail.filter.work import FilterWork


@pytest.fixture(scope="session")
def scanner_zone() -> Iterator[Any]:
    """rspamd's resolver: NXDOMAIN at once for every name but what a test
    adds to `.records` (DKIM keys for rspamd's DKIM check)."""
    yield from serve_zone({})


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: Any) -> Iterator[Clamd]:
    daemon = start_clamd(str(tmp_path_factory.mktemp("clamd")))
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def rspamd(tmp_path_factory: Any, scanner_zone: Any) -> Iterator[Rspamd]:
    daemon = start_rspamd(str(tmp_path_factory.mktemp("rspamd")), dns_port=scanner_zone.port, dkim=True)
    yield daemon
    daemon.stop()


@pytest.fixture
def work() -> Iterator[FilterWork]:
    pool = FilterWork(reactor_running())
    yield pool
    in_reactor(pool.stop)
