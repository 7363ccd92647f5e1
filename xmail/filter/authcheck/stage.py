# -*- test-case-name: tests.filter.authcheck.test_stage -*-
"""The authentication stage: SPF, DKIM, DMARC and ARC on MX mail, one
Authentication-Results field, the DMARC policy applied.

SPF and DKIM+ARC run at once in the pipeline's worker pool (FilterWork:
pyspf and dkimpy block), DMARC's policy lookup meanwhile on the reactor;
all DNS goes through one DnsBridge per message (twisted.names, under one
deadline shorter than the stage's timeout, so a dead resolver yields
temperror results rather than a cancelled stage).  Every check turns its
faults into results (temperror, permerror): the stage does not raise.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.config import FilterSettings
from xmail.filter.authcheck import results
from xmail.filter.authcheck.dkim import ArcResult, DkimReport, DkimResult, verify_message
from xmail.filter.authcheck.dmarc import (
    QUARANTINE,
    REJECT,
    DmarcResult,
    check_dmarc,
    find_policy,
    organizational_domain,
)
from xmail.filter.authcheck.dnsbridge import QUERY_TIMEOUT, DnsBridge
from xmail.filter.authcheck.spf import HELO, SpfResult, check_spf
from xmail.filter.interfaces import MX, Review, Transaction, Verdict
from xmail.filter.pipeline import IGNORE, Stage

TIMEOUT = 30.0  # seconds for the whole stage (the pipeline cancels it then)


class AuthenticationStage(Stage):
    name = "authentication"
    on_failure = IGNORE  # a fault means "could not tell": the message goes on
    _log = Logger()

    def __init__(self, resolver: Any, work: Any, settings: FilterSettings, reactor: Any,
                 dmarc_reject_to_junk: Callable[[str], bool] = lambda domain: False, *,
                 timeout: float = TIMEOUT, query_timeout: float = QUERY_TIMEOUT,
                 chance: Callable[[], float] = random.random):
        """resolver: an IResolver (xmail.dns.make_resolver); work: FilterWork;
        dmarc_reject_to_junk(recipient domain): file mail that DMARC says to
        reject into Junk instead; chance: DMARC pct sampling (§6.6.4)."""
        self.resolver = resolver
        self.work = work
        self.settings = settings
        self.reactor = reactor
        self.reject_to_junk = dmarc_reject_to_junk
        self.timeout = timeout
        self.query_timeout = query_timeout
        self.chance = chance
        organizational_domain("example.com")  # read the suffix list now, not on the reactor later

    def applies(self, transaction: Transaction) -> bool:
        return transaction.mode == MX and self.settings.authenticate

    def review(self, review: Review) -> defer.Deferred[None]:
        # DNS answers stop a second (or a sixth) before the pipeline's
        # timeout, so the checks end with temperror results of their own.
        budget = max(self.timeout - 1.0, self.timeout * 5 / 6)
        bridge = DnsBridge(self.resolver, self.reactor, budget, self.query_timeout)
        d = self._review(review, bridge)

        def stopped(failure: Any) -> Any:
            bridge.cancel()  # cancelled or failed: worker threads stop asking
            return failure

        d.addErrback(stopped)
        return d

    @defer.inlineCallbacks
    def _review(self, review: Review, bridge: DnsBridge) -> Any:
        tx = review.transaction
        froms = review.fields("from")
        policy_d = find_policy(bridge, froms[0] if len(froms) == 1 else None)
        spf_d = self.work.run(check_spf, bridge, tx.client_ip, tx.mail_from, tx.helo, tx.hostname)
        signatures, arc_sets = len(review.fields("dkim-signature")), len(review.fields("arc-seal"))
        if signatures or arc_sets:
            dkim_d = self.work.run(self._verify, tx, bridge, signatures, arc_sets)
        else:  # nothing to verify: no trip through the pool
            dkim_d = defer.succeed(DkimReport([], 0, ArcResult("none")))
        try:
            spf, report, policy = yield defer.gatherResults([spf_d, dkim_d, policy_d], consumeErrors=True)
        except defer.FirstError as e:
            # the one underlying failure, so a cancellation reaches the
            # pipeline as one (its timeout policy) rather than as a fault
            e.subFailure.raiseException()
        dmarc = check_dmarc(policy, spf, report.signatures, self.chance)
        review.facts.update(spf=spf, dkim=report.signatures, dmarc=dmarc, arc=report.arc)
        review.add_header(results.FIELD, self._field(tx, spf, report, dmarc))
        review.notes.append(self._note(spf, report, dmarc))
        self._apply(review, dmarc)

    def _verify(self, tx: Transaction, bridge: DnsBridge, signatures: int, arc_sets: int) -> DkimReport:
        """In a worker thread: DKIM and ARC, streaming the message."""
        try:
            return verify_message(tx.open, bridge, self.settings.dkim_max_signatures, signatures, arc_sets)
        except OSError as e:
            self._log.warn("{id}: cannot read the message for DKIM: {e}", id=tx.id, e=e)
            failed = [DkimResult("temperror", "", "", reason="message unreadable")] if signatures else []
            return DkimReport(failed, 0, ArcResult("none", 0, "message unreadable" if arc_sets else ""))

    # -- the results ------------------------------------------------------------------------
    @staticmethod
    def _field(tx: Transaction, spf: SpfResult, report: DkimReport, dmarc: DmarcResult) -> str:
        items = [results.resinfo("spf", spf.result, [
            ("smtp.helo", spf.value) if spf.identity == HELO else ("smtp.mailfrom", spf.value)])]
        if report.signatures:
            for sig in report.signatures:
                props = [(k, v) for k, v in (("header.d", sig.domain), ("header.s", sig.selector),
                                             ("header.a", sig.algorithm)) if v]
                items.append(results.resinfo("dkim", sig.result, props,
                                             reason=sig.reason if sig.result != "pass" else ""))
        else:
            items.append(results.resinfo("dkim", "none"))
        items.append(results.resinfo("dmarc", dmarc.result,
                                     [("header.from", dmarc.from_domain)] if dmarc.from_domain else [],
                                     reason=dmarc.reason if dmarc.result in ("permerror", "temperror")
                                     else ""))
        items.append(results.resinfo("arc", report.arc.result))
        return results.field_value(tx.hostname, items)

    @staticmethod
    def _note(spf: SpfResult, report: DkimReport, dmarc: DmarcResult) -> str:
        dkim = ",".join(f"{s.result}:{s.domain}" for s in report.signatures) or "none"
        ignored = f" ({report.ignored} more not evaluated)" if report.ignored else ""
        return (f"authentication: spf={spf.result} dkim={dkim}{ignored} dmarc={dmarc.result}"
                f" policy={dmarc.policy} disposition={dmarc.disposition} arc={report.arc.result}")

    def _apply(self, review: Review, dmarc: DmarcResult) -> None:
        """RFC 7489 §6.6.4 / §10.3: the receiver applies the disposition;
        reject becomes Junk where every local recipient's domain asks so."""
        if dmarc.disposition == QUARANTINE:
            review.junk()
        elif dmarc.disposition == REJECT:
            domains = {r.address.rpartition("@")[2].lower()
                       for r in review.transaction.recipients if r.user is not None}
            if domains and all(self.reject_to_junk(d) for d in domains):
                review.junk()
                review.notes.append(f"authentication: DMARC reject of {dmarc.from_domain} filed into Junk")
            else:
                # from_domain passed author_domain's host-name check: ASCII letters,
                # digits, "-", "_" and dots only, safe in the SMTP reply.
                review.decide(Verdict.reject(
                    f"Message rejected: DMARC policy of {dmarc.from_domain} says reject",
                    code=550, status="5.7.1", stage=self.name))
