"""Fixtures of the robustness proofs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.proof.support import Daemon


@pytest.fixture
def make_daemon(tmp_path: Any) -> Iterator[Callable[..., Daemon]]:
    """Factory of `Daemon`s in tmp_path; any still running after the test
    (a failed assertion mid-test) is killed with its workers."""
    daemons: list[Daemon] = []

    def factory(**kwargs: Any) -> Daemon:
        daemon = Daemon(str(tmp_path), **kwargs)
        daemons.append(daemon)
        return daemon

    yield factory
    for daemon in daemons:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
