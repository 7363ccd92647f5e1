# -*- test-case-name: tests.filter.scanners.test_learn -*-
"""Teaching rspamd's Bayes classifier from users' Junk moves (issue 17).

A message moved into Junk over IMAP is learned as spam, one moved out of
Junk as ham: `POST /learnspam` or `/learnham` to rspamd's controller
(`[filter] rspamd_controller`, with a `Password` header when
`[filter] rspamd_password` is set), the message streamed from its file.

The IMAP command must not wait for rspamd nor fail because of it, and a
user moving 10 000 messages must not flood the controller: `learn()`
only queues (a bounded queue; when full the request is dropped with a
log line), one request is sent at a time and at most `per_second`
start per second, and every fault is logged, never raised.  A path is
opened when queued (so a Maildir rename before the send loses nothing):
at most `queue_size` files are held open.
"""

from __future__ import annotations

import json
from collections import deque
from typing import IO, Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from xmail.filter.scanners.rspamd import http_agent, post_spool
from xmail.filter.scanners.stream import opener_for

# rspamd answers 208 (Already Reported) for a message it learned before.
_ALREADY = 208


class RspamdLearner:
    _log = Logger()

    def __init__(self, controller: str, reactor: Any, work: Any, *, password: str = "",
                 per_second: float = 2.0, queue_size: int = 100, timeout: float = 20):
        self.base = controller.rstrip("/").encode("ascii")
        self.reactor = reactor
        self.work = work
        self.password = password
        self.interval = 1.0 / per_second
        self.queue_size = queue_size
        self.timeout = timeout
        self.agent = http_agent(reactor, timeout)
        self._queue: deque[tuple[defer.Deferred[IO[bytes]], bool, defer.Deferred[bool]]] = deque()
        self._busy = False
        self._next_start = 0.0
        self._call: Any = None
        # Counters for logs and tests.
        self.learned = 0
        self.failed = 0
        self.dropped = 0

    def learn(self, source: bytes | str, spam: bool) -> defer.Deferred[bool]:
        """Queue one message (a path or its bytes) -> Deferred[bool] fired
        once it is learned (True) or dropped / failed (False, logged).
        Never raises, and the Deferred never fails."""
        try:
            if len(self._queue) >= self.queue_size:
                self.dropped += 1
                self._log.warn("rspamd learning: queue full ({size}), {kind} dropped",
                               size=self.queue_size, kind="spam" if spam else "ham")
                return defer.succeed(False)
            # A path is opened now, on the pool: the open file survives the
            # Maildir renames (flag changes, expunge) that may follow the
            # move before the request is sent.
            opened = self.work.run(opener_for(source))
            opened.addErrback(_OpenFailed)
            done: defer.Deferred[bool] = defer.Deferred()
            self._queue.append((opened, spam, done))
            self._schedule()
            return done
        except Exception:
            self._log.failure("rspamd learning: could not queue a message")
            return defer.succeed(False)

    @property
    def pending(self) -> int:
        return len(self._queue) + (1 if self._busy else 0)

    def _schedule(self) -> None:
        if self._busy or not self._queue:
            return
        self._busy = True
        # The rate limit: a request starts no sooner than `interval`
        # after the previous one started.
        delay = max(0.0, self._next_start - self.reactor.seconds())
        self._call = self.reactor.callLater(delay, self._send_next)

    @defer.inlineCallbacks
    def _send_next(self) -> Any:
        self._call = None
        opened, spam, done = self._queue.popleft()
        self._next_start = self.reactor.seconds() + self.interval
        ok = False
        f: Any = None
        try:
            f = yield opened
            if isinstance(f, _OpenFailed):
                f.failure.raiseException()
            ok = yield self._post(f, spam)
        except Exception:
            self._log.failure("rspamd learning: {kind} not learned", kind="spam" if spam else "ham")
        finally:
            if f is not None:
                _close(f)  # closed already unless the request gave up early
            if ok:
                self.learned += 1
            else:
                self.failed += 1
            self._busy = False
            done.callback(bool(ok))
            self._schedule()

    @defer.inlineCallbacks
    def _post(self, f: IO[bytes], spam: bool) -> Any:
        url = self.base + (b"/learnspam" if spam else b"/learnham")
        headers = Headers()
        if self.password:
            headers.addRawHeader(b"Password", self.password.encode("utf-8"))
        d = post_spool(self.agent, self.work, url, headers, lambda: f, "rspamd controller",
                       limit=64 * 1024)
        d.addTimeout(self.timeout, self.reactor)
        code, body = yield d
        if code == 200 or code == _ALREADY:
            return True
        self._log.warn("rspamd learning: {url} answered {code}: {body}", url=url.decode("ascii"),
                       code=code, body=_error_text(body))
        return False

    def stop(self) -> None:
        """At shutdown: what is still queued is dropped (logged)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
            self._call = None
            self._busy = False
        if self._queue:
            self._log.info("rspamd learning: {n} queued messages dropped at shutdown", n=len(self._queue))
        while self._queue:
            opened, _spam, done = self._queue.popleft()
            opened.addCallback(_close)
            self.dropped += 1
            done.callback(False)


class _OpenFailed:
    """An open that failed, kept as a value until the message's turn
    (then logged as that message's fault, never "unhandled in Deferred")."""

    def __init__(self, failure: Failure):
        self.failure = failure


def _close(f: Any) -> None:
    if not isinstance(f, _OpenFailed):
        f.close()


def learner_from_settings(settings: Any, reactor: Any, work: Any) -> RspamdLearner | None:
    """The learner `[filter] rspamd_controller` asks for, or None (off)."""
    f = settings.filter
    if not f.rspamd_controller:
        return None
    return RspamdLearner(f.rspamd_controller, reactor, work, password=f.rspamd_password,
                         timeout=f.scan_timeout)


def _error_text(body: bytes) -> str:
    try:
        reply = json.loads(body)
        if isinstance(reply, dict) and "error" in reply:
            return str(reply["error"])[:200]
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")
