# -*- test-case-name: tests.filter.test_pipeline -*-
"""One delivery pipeline of named stages (issue 17).

A stage is an object with a `name`, a `timeout` (seconds, 0 = none), an
`on_failure` policy and `review(review) -> None | Deferred`: it reads
`review.transaction` and what earlier stages put into `review.facts`,
and may add header fields, file recipients into Junk, discard a
recipient's copy or decide (REJECT / TEMPFAIL / HOLD).  `applies(tx)`
lets a stage sit out (an inbound-only check on a submission, say).

Failure policies, applied when a stage raises or outlives its timeout:
- TEMPFAIL: `451 4.7.1`, nothing delivered unscanned (scanners' default,
  `[filter] on_scanner_failure = "tempfail"`);
- ACCEPT: go on, the message marked `X-Spam-Status: unscanned` and the
  fault logged (`on_scanner_failure = "accept"`);
- IGNORE: go on, logged (checks whose own result already says "could not
  tell", such as SPF's temperror).

Stages run in order; a TEMPFAIL or REJECT ends the review.  Later
capabilities (Sieve, approval holds, the journal) are further stages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xmail.filter.interfaces import (
    MX,
    STAGE_FIELDS,
    IDeliveryPipeline,
    Review,
    Transaction,
    Verdict,
)
from xmail.message import scan_header_section

TEMPFAIL = "tempfail"
ACCEPT = "accept"
IGNORE = "ignore"

UNSCANNED = "X-Spam-Status"
# A header section bigger than this is read in the thread pool.
INLINE_HEADER = 64 * 1024
_FROM_FIELD = re.compile(rb"(?im)^from[ \t]*:")


class Stage:
    """A base for stages: subclasses set `name` and implement `review`."""

    name = "stage"
    timeout: float = 0.0
    on_failure: str = IGNORE

    def applies(self, transaction: Transaction) -> bool:
        return True

    def review(self, review: Review) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@implementer(IDeliveryPipeline)
class DeliveryPipeline:
    _log = Logger()

    def __init__(self, stages: Iterable[Any], reactor: Any, hostname: str,
                 sender_check: Callable[[str, str], Verdict | None] | None = None,
                 own_fields: Iterable[str] = (), work: Any = None,
                 srs_reverse: Callable[[str], str | None] | None = None):
        self.stages = list(stages)
        self.srs_reverse = srs_reverse
        # FilterWork: a big header section is read there, off the reactor.
        self.work = work
        # Header fields a stage writes (X-Spam-Status ...): arriving ones
        # are removed on MX, or a sender could forge "No" for the users'
        # client-side filter rules.
        own_fields = tuple(own_fields)
        self._own_fields = _field_pattern(own_fields)
        self._own_names = tuple(n.lower().encode("ascii") for n in own_fields)
        self.reactor = reactor
        self.hostname = hostname
        # (envelope sender, local user) -> refusal at RCPT time (the lists).
        self.sender_check = sender_check

    # -- at RCPT ----------------------------------------------------------------------------
    def check_sender(self, mail_from: str, user: str) -> Verdict | None:
        if self.sender_check is None or not mail_from:
            return None
        return self.sender_check(mail_from, user)

    def bounce_target(self, address: str) -> str | None:
        if self.srs_reverse is None:
            return None
        return self.srs_reverse(address)

    # -- while the body streams in -----------------------------------------------------------
    def check_header_section(self, mode: str, section: bytes) -> tuple[bytes, Verdict | None]:
        if mode != MX:
            return section, None
        # RFC 5322 §3.6: exactly one From.  Two From fields let a reader
        # show one author while DMARC checks the other: refused.  Counted
        # on the bytes (this runs on the reactor while DATA streams in; a
        # full read of a 1 MB header section would hold it up).
        if len(_FROM_FIELD.findall(section)) > 1:
            return section, Verdict.reject("Message has more than one From header field",
                                           status="5.7.1", stage="headers")
        section = remove_forged_results(section, self.hostname)
        if self._own_fields is not None:
            lowered = section.lower()
            if any(name in lowered for name in self._own_names):  # the regex pass only when needed
                section = self._own_fields.sub(b"", section)
        return section, None

    # -- once the message is spooled --------------------------------------------------------
    @defer.inlineCallbacks
    def review(self, transaction: Transaction) -> Any:
        review = Review(transaction)
        section = transaction.header_section
        if self.work is not None and len(section) > INLINE_HEADER:
            review.header = yield self.work.run(scan_header_section, section, STAGE_FIELDS)
        else:
            review.header = scan_header_section(section, STAGE_FIELDS)
        for stage in self.stages:
            if review.final:
                break
            if not stage.applies(transaction):
                continue
            started = time.monotonic()
            try:
                d = defer.maybeDeferred(stage.review, review)
                if stage.timeout:
                    d.addTimeout(stage.timeout, self.reactor)
                yield d
            except Exception:
                self._stage_failed(stage, review, Failure(), time.monotonic() - started)
        return review

    def _stage_failed(self, stage: Any, review: Review, failure: Failure, elapsed: float) -> None:
        tx = review.transaction
        timed_out = failure.check(defer.TimeoutError, defer.CancelledError) is not None
        why = f"timed out after {elapsed:.1f} s" if timed_out else failure.getErrorMessage() or \
            failure.type.__name__
        review.notes.append(f"{stage.name}: failed ({why})")
        policy = getattr(stage, "on_failure", IGNORE)
        if timed_out:
            self._log.warn("{id}: stage {stage} {why}; policy {policy}", id=tx.id, stage=stage.name,
                           why=why, policy=policy)
        else:
            self._log.failure("{id}: stage {stage} failed; policy {policy}", failure, id=tx.id,
                              stage=stage.name, policy=policy)
        if policy == TEMPFAIL:
            review.decide(Verdict.tempfail(f"{stage.name} unavailable, try again later", stage=stage.name))
        elif policy == ACCEPT and not review.facts.get("unscanned"):
            review.facts["unscanned"] = True
            review.add_header(UNSCANNED, "unscanned")


def _field_pattern(names: Iterable[str]) -> re.Pattern[bytes] | None:
    """Whole fields (folded lines included) with one of these names."""
    names = [re.escape(n.encode("ascii")) for n in names]
    if not names:
        return None
    return re.compile(rb"(?im)^(?:" + b"|".join(names) + rb")[ \t]*:(?:[^\r\n]|\r\n[ \t])*\r\n")


# A field name at the start of a line, then its value with folded lines.
_FIELD = re.compile(rb"(?im)^authentication-results[ \t]*:((?:[^\r\n]|\r\n[ \t])*)\r\n")
_AUTHSERV_ID = re.compile(rb"^[ \t\r\n]*(?:\([^)]*\)[ \t\r\n]*)*([^ \t\r\n;(]+)")


def remove_forged_results(section: bytes, authserv_id: str) -> bytes:
    """Drop Authentication-Results fields that claim to be ours (RFC 8601
    §5: an MTA "MUST" remove or rename such fields arriving from outside,
    or a sender could forge our verdict).  Linear: one regex pass, and
    none without such a field."""
    if b"authentication-results" not in section.lower():
        return section
    ours = authserv_id.lower().encode("ascii", "replace")

    def keep(match: re.Match[bytes]) -> bytes:
        found = _AUTHSERV_ID.match(match.group(1))
        if found and found.group(1).lower() == ours:
            return b""
        return match.group(0)

    return _FIELD.sub(keep, section)
