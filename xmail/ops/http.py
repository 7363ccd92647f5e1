# -*- test-case-name: tests.ops.test_server, tests.ops.test_metrics -*-
"""GET /metrics on the http listener: the Prometheus text exposition.

Served when the request arrived on a loopback address of the listener
(127.0.0.1, ::1); on any other address only with `[metrics] public = true`.
`[metrics] allow` restricts the client networks further.  Anything refused
is a plain 404, as if there were no such page.  The document is built in a
thread: the queue collector reads the index and rendering all histograms is
not free.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web import server
from twisted.web.http import Request

from xmail import metrics

LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
METHODS = frozenset({b"GET", b"HEAD"})


class MetricsPage:
    _log = Logger()

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.settings = ctx.settings.metrics
        self.networks = [ipaddress.ip_network(n, strict=False) for n in self.settings.allow]
        self.registry = metrics.server_registry(ctx)
        self.run_in_thread: Callable[..., Any] = deferToThread

    def allowed(self, request: Request) -> bool:
        local = getattr(request.getHost(), "host", "")
        if local not in LOOPBACK and not self.settings.public:
            return False
        if not self.networks:
            return True
        try:
            client = ipaddress.ip_address(getattr(request.getClientAddress(), "host", ""))
        except ValueError:
            return False
        return any(client in network for network in self.networks)

    def render(self, request: Request) -> Any:
        if not self.allowed(request):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not found\n"
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = self.run_in_thread(generate_latest, self.registry)
        d.addCallbacks(self._write, self._failed, callbackArgs=(request, gone),
                       errbackArgs=(request, gone))
        return server.NOT_DONE_YET

    def _write(self, body: bytes, request: Request, gone: list[bool]) -> None:
        if gone:
            return
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def _failed(self, failure: Any, request: Request, gone: list[bool]) -> None:
        self._log.failure("/metrics failed", failure)
        if gone:
            return
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.write(b"Internal error\n")
        request.finish()


def mount_metrics(root: Any, ctx: Any) -> None:
    """Add /metrics to the http listener's routing resource, unless
    `[metrics] enabled = false`."""
    if not ctx.settings.metrics.enabled:
        return
    root.routes[b"/metrics"] = (METHODS, MetricsPage(ctx).render)
