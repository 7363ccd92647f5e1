# -*- test-case-name: tests.filter.authcheck.test_dns_bridge -*-
"""DNS for the authentication checks, always through twisted.names.

pyspf and dkimpy are blocking libraries that would ask the system resolver
(dnspython) themselves.  They run in the pipeline's bounded thread pool
(FilterWork) and every question they ask is answered here: the worker
thread hands the query to the reactor (`blockingCallFromThread`), where
the configured twisted.names resolver ([dns] servers) asks it, under a
per-query timeout and the check's overall deadline.  So nothing ever uses
a blocking resolver, and a resolver that never answers costs at most the
deadline: every later question fails at once with `DnsTemporary`.

DMARC's one lookup runs on the reactor directly (`txt_async`).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.names import dns, error
from twisted.python import threadable
from twisted.python.failure import Failure

QUERY_TIMEOUT = 4.0  # seconds for one question (twisted.names retransmits within it)
# A TXT record's text (its strings joined) longer than this is refused:
# SPF, DKIM key and DMARC records are a few hundred octets (an RSA-4096 key
# is about 750); a bigger one is a mistake or an attack (issue 17).
MAX_TXT_OCTETS = 4096
_GRACE = 1.0  # seconds a worker waits past the deadline for the reactor's reply
MAX_ANSWERS = 64  # records of one answer looked at; the rest ignored


class DnsTemporary(Exception):
    """No answer within the deadline, SERVFAIL, refused: a temporary error
    (SPF, DKIM and DMARC all report it as temperror)."""


class OversizeRecord(Exception):
    """A TXT record over MAX_TXT_OCTETS: a permanent error."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One resource record, decoded: `data` is a str for A/AAAA/CNAME/PTR
    (an address or a name), (preference, name) for MX and a tuple of the
    character-strings (bytes) for TXT."""

    name: str
    type: int
    data: Any


# RFC 1035 §4.1.1 RCODEs a resolver reports as errors that mean "no such
# data" (NXDOMAIN) rather than "could not tell".
_NO_DATA = (error.DNSNameError, error.DomainError, error.AuthoritativeDomainError)


class DnsBridge:
    """One message's DNS: a resolver, the reactor, a deadline.

    `ask` is called from worker threads, `ask_async` on the reactor.  An
    empty list means NXDOMAIN or no records of that type; `DnsTemporary`
    means no usable answer (timeout, server failure, deadline passed, or
    the stage was cancelled)."""

    def __init__(self, resolver: Any, reactor: Any, budget: float,
                 query_timeout: float = QUERY_TIMEOUT, clock: Any = time.monotonic):
        self.resolver = resolver
        self.reactor = reactor
        self.query_timeout = query_timeout
        self._clock = clock
        self.deadline = clock() + budget
        self._cancelled = threading.Event()
        self.asked = 0  # questions sent (logs, tests)

    def cancel(self) -> None:
        """The stage gave up (its timeout): answer no more questions, so the
        worker threads still evaluating end promptly."""
        self._cancelled.set()

    def remaining(self) -> float:
        return self.deadline - self._clock()

    # -- from a worker thread ----------------------------------------------------------------
    def ask(self, name: str, qtype: int) -> list[Answer]:
        if threadable.isInIOThread():
            raise RuntimeError("DnsBridge.ask called on the reactor thread; use ask_async")
        if self._cancelled.is_set():
            raise DnsTemporary("authentication check cancelled")
        # Not blockingCallFromThread: that waits for the reactor without
        # end, and a reactor shutting down joins this very thread (FilterWork
        # stops its pool during shutdown) -- a deadlock.  We wait until the
        # deadline and a little more, then give up with a temporary error.
        replies: queue.Queue[Any] = queue.Queue(maxsize=1)

        def start() -> None:
            self.ask_async(name, qtype).addBoth(replies.put)

        self.reactor.callFromThread(start)
        try:
            reply = replies.get(timeout=max(self.remaining(), 0.0) + _GRACE)
        except queue.Empty:
            raise DnsTemporary(f"no answer for {name} from the reactor in time") from None
        if isinstance(reply, Failure):
            reply.raiseException()
        return reply

    # -- on the reactor ----------------------------------------------------------------------
    def ask_async(self, name: str, qtype: int) -> defer.Deferred[list[Answer]]:
        timeout = min(self.query_timeout, self.remaining())
        if self._cancelled.is_set():
            return defer.fail(DnsTemporary("authentication check cancelled"))
        if timeout <= 0:
            return defer.fail(DnsTemporary("DNS deadline passed"))
        try:
            query = dns.Query(name.rstrip("."), qtype)
        except Exception as e:  # a name twisted.names cannot encode (bad label)
            return defer.succeed([]) if isinstance(e, ValueError) else defer.fail(e)
        self.asked += 1
        if hasattr(self.resolver, "queryUDP") and hasattr(self.resolver, "filterAnswers"):
            # twisted.names' client.Resolver ([dns] servers): read the reply
            # ourselves to check it answers our question -- its decoder takes
            # a cut-off or garbage datagram for an empty answer, which would
            # read as "no such record" instead of "could not tell".
            d = self.resolver.queryUDP([query], _attempts(timeout))
            d.addCallback(self._answering, query)
        else:  # the system resolver chain (hosts file, cache, resolv.conf)
            d = defer.maybeDeferred(self.resolver.query, query, timeout=_attempts(timeout))
        d.addTimeout(timeout, self.reactor)
        d.addCallbacks(self._decoded, self._failed, callbackArgs=(qtype,), errbackArgs=(name,))
        return d

    def _answering(self, message: Any, query: dns.Query) -> Any:
        """RFC 5452 §9.1: a reply's question section must be our question."""
        if message.queries != [query]:
            raise DnsTemporary(f"reply to the DNS query for {query.name} does not answer it")
        return self.resolver.filterAnswers(message)  # rcode, truncation (retried over TCP)

    @staticmethod
    def _decoded(result: Any, qtype: int) -> list[Answer]:
        answers, _authority, _additional = result
        out: list[Answer] = []
        for rr in answers[:MAX_ANSWERS]:
            owner = rr.name.name.decode("ascii", "replace").rstrip(".").lower()
            payload = rr.payload
            if rr.type == dns.CNAME:
                out.append(Answer(owner, dns.CNAME, payload.name.name.decode("ascii", "replace")))
            elif rr.type != qtype:
                continue
            elif qtype == dns.TXT:
                strings = tuple(payload.data)
                if sum(len(s) for s in strings) > MAX_TXT_OCTETS:
                    raise OversizeRecord(f"TXT record of {owner} is over {MAX_TXT_OCTETS} octets")
                out.append(Answer(owner, qtype, strings))
            elif qtype in (dns.A, dns.AAAA):
                out.append(Answer(owner, qtype, payload.dottedQuad() if qtype == dns.A
                                  else _ipv6(payload.address)))
            elif qtype == dns.MX:
                out.append(Answer(owner, qtype, (payload.preference,
                                                 payload.name.name.decode("ascii", "replace"))))
            elif qtype == dns.PTR:
                out.append(Answer(owner, qtype, payload.name.name.decode("ascii", "replace")))
        return out

    @staticmethod
    def _failed(failure: Any, name: str) -> list[Answer]:
        if failure.check(*_NO_DATA):
            return []  # NXDOMAIN: no records (SPF counts it as a void lookup)
        if failure.check(OversizeRecord):
            failure.raiseException()
        raise DnsTemporary(f"DNS lookup of {name} failed: "
                           f"{failure.type.__name__} {failure.getErrorMessage()}".strip())

    # -- conveniences -------------------------------------------------------------------------
    def txt(self, name: str) -> list[bytes]:
        """TXT records of name (each record's strings joined), from a thread."""
        return [b"".join(a.data) for a in self.ask(name, dns.TXT) if a.type == dns.TXT]


def _attempts(timeout: float) -> tuple[float, ...]:
    """twisted.names' retransmission schedule within timeout: a lost UDP
    datagram is asked again after a second."""
    return (1.0, timeout - 1.0) if timeout > 1.5 else (timeout,)


def _ipv6(packed: bytes) -> str:
    import ipaddress

    return str(ipaddress.IPv6Address(packed))
