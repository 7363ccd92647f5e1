"""Learning from Junk moves: the session's real rspamd controller learns
(its /stat counts it, its Bayes then recognises the message), faults
never reach the caller, and the rate limit and queue bound hold."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.web import resource, server

from tests.filter.scanners.support import closed_port, message, spool
from tests.support.server import in_reactor, reactor_running
from tests.support.wait import wait_until
from xmail.filter.scanners.learn import RspamdLearner, learner_from_settings
from xmail.filter.scanners.rspamd import RspamdClient
from xmail.filter.work import FilterWork

SPAM_TEXT = ("Cheap replica watches and discount pharmacy pills shipped overnight, claim your "
             "exclusive casino bonus today, limited offer for selected winners only, act now. ") * 3
HAM_TEXT = ("The quarterly budget review moved to Thursday afternoon; please bring the revised "
            "headcount plan and the minutes from last week's architecture meeting. ") * 3


def learner(rspamd: Any, work: Any, **kw: Any) -> RspamdLearner:
    kw.setdefault("password", rspamd.password)
    return RspamdLearner(rspamd.controller, reactor_running(), work, **kw)


def learn(learn_with: RspamdLearner, source: bytes | str, spam: bool) -> bool:
    return in_reactor(learn_with.learn, source, spam)


def test_the_learner_follows_the_settings(work: Any) -> None:
    from xmail.config import parse

    reactor = reactor_running()
    assert learner_from_settings(parse("", "<test>"), reactor, work) is None
    on = learner_from_settings(parse('[filter]\nrspamd_controller = "http://127.0.0.1:11334/"\n'
                                     'rspamd_password = "pw"\nscan_timeout = 7\n', "<test>"), reactor, work)
    assert on is not None and (on.base, on.password, on.timeout) == (b"http://127.0.0.1:11334", "pw", 7)


def test_learned_messages_count_and_change_bayes(rspamd: Any, work: Any, tmp_path: Any) -> None:
    before = rspamd.stat()
    teacher = learner(rspamd, work)
    assert learn(teacher, spool(tmp_path, message("Winner", body=SPAM_TEXT)), spam=True) is True
    assert learn(teacher, message("Budget", body=HAM_TEXT), spam=False) is True
    after = rspamd.stat()
    assert after["learned"] == before["learned"] + 2
    assert (teacher.learned, teacher.failed, teacher.dropped) == (2, 0, 0)
    # The classifier really learned: a message like the spam now hits BAYES_SPAM.
    client = RspamdClient(rspamd.url, reactor_running(), work, timeout=10)
    from tests.filter.scanners.support import transaction

    result = in_reactor(client.check, transaction(message("Winner again", body=SPAM_TEXT)))
    assert "BAYES_SPAM" in result.symbol_names
    result = in_reactor(client.check, transaction(message("Budget again", body=HAM_TEXT)))
    assert "BAYES_HAM" in result.symbol_names


def test_a_queued_message_survives_its_file_being_renamed(rspamd: Any, tmp_path: Any) -> None:
    # Flag changes rename Maildir files; the learner holds the file open.
    reactor = reactor_running()
    serial = FilterWork(reactor, threads=1)  # FIFO: a later job done = the open done
    try:
        teacher = RspamdLearner(rspamd.controller, reactor, serial, password=rspamd.password, per_second=0.5)
        path = spool(tmp_path, message("Renamed", body=SPAM_TEXT))
        first: list[bool] = []
        second: list[bool] = []

        def queue_two() -> Any:
            teacher.learn(message("First", body=SPAM_TEXT), spam=True).addCallback(first.append)
            teacher.learn(path, spam=True).addCallback(second.append)
            return serial.run(lambda: None)

        in_reactor(queue_two)
        os.rename(path, path + ":2,S")
        assert second == [], "sent before the rename: the test proves nothing"
        wait_until(lambda: second, 15, "the second message to be learned")
        assert first == [True] and second == [True]
    finally:
        in_reactor(serial.stop)


def test_faults_are_logged_never_raised(rspamd: Any, work: Any, tmp_path: Any) -> None:
    logged: list[str] = []

    def observe(event: dict) -> None:
        if "rspamd learning" in str(event.get("log_format", "")):
            logged.append(event["log_format"])

    globalLogPublisher.addObserver(observe)
    try:
        before = rspamd.stat()["learned"]
        wrong = learner(rspamd, work, password="wrong")
        assert learn(wrong, message("x", body=SPAM_TEXT), spam=True) is False
        none = learner(rspamd, work, password="")
        assert learn(none, message("y", body=SPAM_TEXT), spam=True) is False
        down = RspamdLearner(f"http://127.0.0.1:{closed_port()}", reactor_running(), work, timeout=5)
        assert learn(down, message("z", body=SPAM_TEXT), spam=False) is False
        missing = learner(rspamd, work)
        assert learn(missing, str(tmp_path / "gone.eml"), spam=True) is False
        assert rspamd.stat()["learned"] == before
        assert (wrong.failed, none.failed, down.failed, missing.failed) == (1, 1, 1, 1)
        assert len(logged) == 4
    finally:
        globalLogPublisher.removeObserver(observe)


class Recorder(resource.Resource):
    """A stand-in controller on a real socket: notes when each request arrives."""

    isLeaf = True

    def __init__(self, reactor: Any):
        super().__init__()
        self.reactor = reactor
        self.arrivals: list[tuple[float, bytes, int]] = []

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read()
        self.arrivals.append((self.reactor.seconds(), request.path, len(body)))
        request.setHeader(b"content-type", b"application/json")
        return b'{"success":true}'


def test_the_rate_limit_and_the_queue_bound_hold(work: Any) -> None:
    reactor = reactor_running()
    recorder = Recorder(reactor)
    port = in_reactor(reactor.listenTCP, 0, server.Site(recorder), interface="127.0.0.1")
    logged: list[dict] = []

    def observe(event: dict) -> None:
        if "queue full" in str(event.get("log_format", "")):
            logged.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        teacher = RspamdLearner(f"http://127.0.0.1:{port.getHost().port}", reactor, work,
                                per_second=5, queue_size=4)

        def burst() -> Any:
            # Ten Junk moves in one reactor turn: four queued, six dropped.
            return defer.gatherResults([teacher.learn(message(f"m{i}"), spam=i % 2 == 0) for i in range(10)])

        results = in_reactor(burst)
        assert results == [True] * 4 + [False] * 6
        assert (teacher.learned, teacher.dropped) == (4, 6) and len(logged) == 6
        times = [t for t, _path, _size in recorder.arrivals]
        assert [path for _t, path, _size in recorder.arrivals] == [b"/learnspam", b"/learnham"] * 2
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # At most 5 per second: starts 0.2 s apart.  Measured at arrival,
        # so one request's connect may lag a little behind its start;
        # without the limit all four would arrive within milliseconds.
        assert len(times) == 4 and times[-1] - times[0] >= 0.6 - 0.05 and min(gaps) > 0.1, gaps
    finally:
        globalLogPublisher.removeObserver(observe)
        in_reactor(port.stopListening)
