# -*- test-case-name: tests.protocols.test_http_channel,tests.protocols.test_http_autoconfig -*-
"""The `http` listener on twisted.web: its channel, request and Site.

What it serves (one-click client setup, xmail.autoconfig.resource, and
/metrics, xmail.ops.http) is built by xmail.service and handed to
HTTPFactory; this module applies the limits and writes the access log.

Connection hardening (issue 16 #3, #4; `BoundedHTTPChannel`):
- Back-pressure: twisted.web pauses reading only between requests, and a
  burst of pipelined requests that render synchronously is answered in one
  go however full the transport is (10 MiB of pipelined GETs: +617 MB).
  Here, once the transport says its buffer is full, no further request is
  parsed and nothing more is read until the client has taken its answers.
- Deadline: a request (line, headers and body) must arrive within [limits]
  command_timeout of its first byte (plus 1 s per 4 KiB); twisted.web's idle
  timeout restarts on every byte, so a trickle held the connection.
- Access log: one line per request in the `access` audit log under
  data_dir/log, at a bounded rate (xmail.ops.audit), not in the main log.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from twisted.web import http, resource, server
from twisted.web.http import Request

from xmail.context import ServerContext
from xmail.limits import CommandDeadline

# An Outlook request is a few hundred bytes; nothing else has a body.
MAX_BODY_SIZE = 16 * 1024
# Seconds an idle connection is kept (twisted.web's default is 12 hours).
IDLE_TIMEOUT = 30


class BoundedRequest(server.Request):
    """A request whose body may not exceed MAX_BODY_SIZE: announced larger
    (Content-Length) or grown larger (chunked), it is answered 413 and the
    connection closed at once, without reading the rest."""

    _refused = False
    _body_size = 0

    def gotLength(self, length: int | None) -> None:
        # In memory even for chunked bodies (length None): they are capped
        # below, so twisted.web's temporary file is never needed.
        self.content = io.BytesIO()
        if length is not None and length > MAX_BODY_SIZE:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._body_size += len(data)
        if self._body_size > MAX_BODY_SIZE:
            self._refuse()
            return
        self.content.write(data)

    def process(self) -> None:
        if self._refused:
            return
        super().process()

    def _refuse(self) -> None:
        # RFC 9110 §15.5.14: 413, and close: the rest of the body is unread.
        self._refused = True
        self.channel.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        self.channel.loseConnection()


class BoundedHTTPChannel(http.HTTPChannel):
    """HTTP/1.1 with output back-pressure and a whole-request deadline."""

    _deadline: CommandDeadline | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        site = self.factory
        limits = site.ctx.settings.limits
        self._deadline = CommandDeadline(site.reactor, command_timeout=limits.command_timeout,
                                         login_timeout=0, on_expired=self._request_too_slow,
                                         login_required=False)

    def dataReceived(self, data: bytes) -> None:
        if self._deadline is not None:
            self._deadline.received(len(data))
        super().dataReceived(data)
        self._update_deadline()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        self._update_deadline()

    def connectionLost(self, reason: Any = None) -> None:
        if self._deadline is not None:
            self._deadline.stop()
        super().connectionLost(reason)

    # -- back-pressure ---------------------------------------------------------
    def pauseProducing(self) -> None:
        super().pauseProducing()
        # LineReceiver's loop stops at `paused`: no further pipelined request
        # is parsed from what was read, and nothing more is read.
        self.paused = True
        self._networkProducer.pauseProducing()

    def resumeProducing(self) -> None:
        super().resumeProducing()
        if self.paused:
            self.paused = False
            if not self._handlingRequest:
                self._networkProducer.resumeProducing()
            self.dataReceived(b"")  # the requests that wait in the buffer

    # -- the deadline ----------------------------------------------------------
    def _update_deadline(self) -> None:
        deadline = self._deadline
        if deadline is None:
            return
        between = self._HTTPChannel__first_line and not self._buffer  # type: ignore[attr-defined]
        if self._handlingRequest or self.paused or between or self.transport.disconnecting:
            deadline.idle()
        else:
            deadline.pending()

    def _request_too_slow(self, kind: str) -> None:
        # RFC 9110 §15.5.9: 408, the server closes the connection.
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
        self.transport.loseConnection()


class HTTPFactory(server.Site):
    """The Site for every `http` listener (see xmail.service.PROTOCOLS)."""

    requestFactory = BoundedRequest
    protocol = BoundedHTTPChannel  # plain HTTP/1.1 (no h2 on this listener)
    noisy = False

    def __init__(self, ctx: ServerContext, *, implicit_tls: bool,
                 root: Callable[[ServerContext], resource.IResource]):
        # root(ctx) builds what the listener serves (xmail.service.http_root:
        # the autoconfig pages and /metrics); injected, so this protocol
        # imports no feature package (issue 14).
        super().__init__(root(ctx), timeout=IDLE_TIMEOUT, reactor=ctx.reactor,
                         parsePOSTFormSubmission=False)
        self.ctx = ctx
        self.implicit_tls = implicit_tls

    def log(self, request: Request) -> None:
        """The access log line goes to the audit log (data_dir/log/access-*,
        rate-bounded there), never to the main log as twisted.web does."""
        audit = getattr(self.ctx, "audit", None)
        access = getattr(audit, "access", None)
        if access is None:
            return
        access(ip=getattr(request.getClientAddress(), "host", ""), method=request.method,
               path=request.uri[:512], status=request.code, size=request.sentLength,
               agent=(request.getHeader(b"user-agent") or b"")[:200].decode("latin-1"))
