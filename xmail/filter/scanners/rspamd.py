# -*- test-case-name: tests.filter.scanners.test_rspamd -*-
"""rspamd's HTTP protocol with twisted.web's own client.

`POST /checkv2` (rspamd's "protocol v2", https://rspamd.com/doc/developers/protocol.html):
the message is the request body, streamed from the spool by a
`SpoolBodyProducer` (read on the pipeline's pool, a Content-Length
known up front); the SMTP envelope travels in request headers (`IP`,
`Helo`, `From`, one `Rcpt` per recipient, `Queue-Id`, `User` for an
authenticated submission, `MTA-Name`).  The reply is one JSON object:

    {"score": 7.2, "required_score": 15.0, "action": "add header",
     "symbols": {"NAME": {"score": 2.0, ...}, ...}, ...}

Replies are read with a bound (`MAX_REPLY`) and checked field by field;
anything else (garbage, a cut-off body, a non-200 status) is a
ScannerError for the stage's failure policy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, _HTTP11ClientFactory
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from xmail.filter.interfaces import SUBMISSION, Transaction
from xmail.filter.scanners import ScannerError
from xmail.filter.scanners.stream import SpoolBodyProducer, open_sized

MAX_REPLY = 1024 * 1024  # rspamd's JSON for a message with many symbols stays far below
MAX_SYMBOLS = 64         # names kept in facts["spam_symbols"], highest score first
_HEADER_VALUE = 998      # RFC 5322 §2.1.1's line limit: enough for any envelope field


@dataclass(frozen=True, slots=True)
class RspamdResult:
    score: float
    required_score: float
    action: str
    symbols: tuple[tuple[str, float], ...]  # (name, score), highest score first

    @property
    def symbol_names(self) -> list[str]:
        return [name for name, _score in self.symbols]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScannerError(f"rspamd reply: {what} is not a number")
    return float(value)


def parse_reply(body: bytes) -> RspamdResult:
    """rspamd's /checkv2 JSON -> RspamdResult; ScannerError for anything
    that is not a complete, well-formed answer."""
    try:
        reply = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ScannerError(f"rspamd reply is not JSON ({e.__class__.__name__}, {len(body)} octets)") from e
    if not isinstance(reply, dict):
        raise ScannerError("rspamd reply is not a JSON object")
    if "error" in reply and "score" not in reply:
        raise ScannerError(f"rspamd error: {str(reply['error'])[:200]}")
    score = _number(reply.get("score"), "score")
    required = _number(reply.get("required_score"), "required_score")
    action = reply.get("action")
    if not isinstance(action, str):
        raise ScannerError("rspamd reply: no action")
    raw = reply.get("symbols", {})
    if not isinstance(raw, dict):
        raise ScannerError("rspamd reply: symbols is not an object")
    symbols: list[tuple[str, float]] = []
    for name, symbol in raw.items():
        value = symbol.get("score", 0.0) if isinstance(symbol, dict) else 0.0
        try:
            symbols.append((str(name)[:100], _number(value, "a symbol's score")))
        except ScannerError:
            symbols.append((str(name)[:100], 0.0))
    symbols.sort(key=lambda item: (-item[1], item[0]))
    return RspamdResult(score, required, action[:40], tuple(symbols[:MAX_SYMBOLS]))


class BoundedBody(Protocol):
    """Collects a response body up to `limit` octets; `done` fires with
    the bytes, or fails: over the limit, or cut off before its end."""

    def __init__(self, limit: int, what: str):
        self.limit = limit
        self.what = what
        self.parts: list[bytes] = []
        self.size = 0
        self.done: defer.Deferred[bytes] = defer.Deferred(lambda _d: self._abort())
        self._over = False

    def dataReceived(self, data: bytes) -> None:
        if self._over:
            return
        self.size += len(data)
        if self.size > self.limit:
            self._over = True
            self._abort()
            self.done.errback(ScannerError(f"{self.what} reply over {self.limit} octets"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._over or self.done.called:
            return
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.parts))
        elif reason.check(PotentialDataLoss):
            # No Content-Length and no chunking: the end is the close, so
            # a cut-off reply cannot be told from a whole one -- refused.
            self.done.errback(ScannerError(f"{self.what} reply without a length (possibly cut off)"))
        else:
            self.done.errback(ScannerError(f"{self.what} reply cut off ({reason.getErrorMessage()})"))

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # the response's transport: drops the connection


def _clean(value: str) -> bytes:
    """An envelope value as a header value: no CR, LF or other controls
    (a HELO or MAIL FROM with CR LF must not add request headers), capped."""
    text = "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in value[:_HEADER_VALUE])
    return text.encode("utf-8", "replace")


def envelope_headers(tx: Transaction) -> Headers:
    """The SMTP envelope in rspamd's request headers (protocol.html)."""
    headers = Headers()
    headers.addRawHeader(b"IP", _clean(tx.client_ip))
    if tx.helo:
        headers.addRawHeader(b"Helo", _clean(tx.helo))
    # The null reverse-path (bounces) is "<>" to rspamd, as in MAIL FROM.
    headers.addRawHeader(b"From", _clean(tx.mail_from) if tx.mail_from else b"<>")
    for recipient in tx.recipients[:1024]:  # rspamd's own max_recipients default
        headers.addRawHeader(b"Rcpt", _clean(recipient.address))
    headers.addRawHeader(b"Queue-Id", _clean(tx.id))
    headers.addRawHeader(b"MTA-Name", _clean(tx.hostname))
    if tx.mode == SUBMISSION and tx.user:
        # An authenticated sender: rspamd skips checks meant for strangers
        # (SPF, RBLs on the client IP) and rate limits by user.
        headers.addRawHeader(b"User", _clean(tx.user))
    # rspamd's `Hostname` is the client's reverse-DNS name; sent only when
    # the transaction knows it (never our own name, which would mislead hfilter).
    client_hostname = getattr(tx, "client_hostname", None)
    if client_hostname:
        headers.addRawHeader(b"Hostname", _clean(client_hostname))
    return headers


class _QuietClientFactory(_HTTP11ClientFactory):
    # A connection per message: Factory's "Starting/Stopping factory" log
    # lines, formatted and written for each, cost more CPU than the scan's
    # own HTTP work (bench/protection_bench.py profile).
    noisy = False


class _QuietPool(HTTPConnectionPool):
    _factory = _QuietClientFactory


def http_agent(reactor: Any, timeout: float) -> Agent:
    # Not persistent: a POST on a connection rspamd has just closed would
    # fail, and POST is not retried; a loopback connect is cheap.
    return Agent(reactor, connectTimeout=timeout, pool=_QuietPool(reactor, persistent=False))


@defer.inlineCallbacks
def post_spool(agent: Agent, work: Any, url: bytes, headers: Headers, opener: Any,
               what: str, limit: int = MAX_REPLY) -> Any:
    """POST a message streamed from `opener` -> Deferred[(status, body)];
    ScannerError for a failed connection or a bad or cut-off reply."""
    if getattr(opener, "in_memory", False):
        f, length = open_sized(opener)  # bytes already here: no thread trip
    else:
        f, length = yield work.run(open_sized, opener)
    producer = SpoolBodyProducer(f, length, work)
    try:
        response = yield agent.request(b"POST", url, headers, producer)
    except defer.CancelledError:
        producer.stopProducing()
        raise
    except Exception as e:
        producer.stopProducing()
        if _cancelled(e):
            # twisted.web wraps our own cancel (the stage's timeout):
            # unwrapped, so addTimeout reports it as the timeout it is.
            raise defer.CancelledError() from e
        raise ScannerError(f"{what} at {url.decode('ascii', 'replace')}: {_reason(e)}") from e
    body = BoundedBody(limit, what)
    response.deliverBody(body)
    data = yield body.done
    return response.code, data


def _cancelled(e: Exception) -> bool:
    return any(r.check(defer.CancelledError) for r in getattr(e, "reasons", None) or [])


def _reason(e: Exception) -> str:
    # twisted.web wraps the interesting failure (refused, reset) in a list.
    reasons = getattr(e, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() or r.type.__name__ for r in reasons)
    return str(e) or e.__class__.__name__


class RspamdClient:
    """Scores messages with rspamd's normal worker (`[filter] rspamd`)."""

    def __init__(self, url: str, reactor: Any, work: Any, *, timeout: float = 20):
        self.url = url.rstrip("/").encode("ascii") + b"/checkv2"
        self.reactor = reactor
        self.work = work
        self.timeout = timeout
        self.agent = http_agent(reactor, timeout)

    def check(self, tx: Transaction) -> defer.Deferred[RspamdResult]:
        """-> Deferred[RspamdResult]; fails with ScannerError, or with
        TimeoutError after `timeout` seconds whatever the server does (a
        reply that starts before the request is sent can leave
        twisted.web's request unanswered: the timeout ends it)."""
        return self._check(tx).addTimeout(self.timeout, self.reactor)

    @defer.inlineCallbacks
    def _check(self, tx: Transaction) -> Any:
        code, body = yield post_spool(self.agent, self.work, self.url, envelope_headers(tx), tx.opener,
                                      "rspamd")
        if code != 200:
            raise ScannerError(f"rspamd answered HTTP {code}: {body[:200].decode('utf-8', 'replace')!r}")
        return parse_reply(body)
