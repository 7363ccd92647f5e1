# -*- test-case-name: tests.filter.scanners.test_stages -*-
"""The scanner stages of the delivery pipeline: "antivirus" and "antispam".

Both run on MX and submission mail, with `[filter] scan_timeout` as their
timeout and `[filter] on_scanner_failure` as their failure policy
(tempfail: `451 4.7.1`, nothing delivered unscanned; accept: delivered
with `X-Spam-Status: unscanned`, logged -- the pipeline applies it).  A
message over a scanner's size limit is such a failure too: it is never
passed as clean.

- VirusStage: clamd finds a signature -> `554 5.7.1` naming it (issue
  17: never stored, never signed); `facts["virus"]` holds the name.
- SpamStage: rspamd's score against each local recipient's thresholds
  (`thresholds(user) -> (spam_score, reject_score)`, per-domain in
  DESIGN.md): every recipient at or over its reject score -> `550 5.7.1`;
  otherwise those at or over their spam score go to Junk.  A sender on an
  allow list (`facts["allowed"]`, set by the lists stage) is not scored
  -- but still virus-scanned.  For a submission there is no Junk: the
  submitter's reject score refuses, anything less is delivered (marked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.filter.interfaces import MX, SUBMISSION, Review, Transaction, Verdict
from xmail.filter.pipeline import ACCEPT, TEMPFAIL, Stage
from xmail.filter.scanners.clamd import ClamdClient
from xmail.filter.scanners.rspamd import RspamdClient, RspamdResult

Thresholds = Callable[[str], tuple[float, float]]  # user -> (spam_score, reject_score)


def failure_policy(setting: str) -> str:
    """`[filter] on_scanner_failure` -> the pipeline's policy."""
    return {"tempfail": TEMPFAIL, "accept": ACCEPT}[setting]


def _printable(text: str, limit: int = 120) -> str:
    # A signature name goes into an SMTP reply line: ASCII, no controls.
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text[:limit])


class VirusStage(Stage):
    name = "antivirus"

    def __init__(self, scanner: ClamdClient, *, timeout: float, on_failure: str = TEMPFAIL):
        self.scanner = scanner
        self.timeout = timeout
        self.on_failure = on_failure

    def applies(self, transaction: Transaction) -> bool:
        return transaction.mode in (MX, SUBMISSION)

    @defer.inlineCallbacks
    def review(self, review: Review) -> Any:
        result = yield self.scanner.scan(review.transaction.opener)
        if result.virus is None:
            return
        name = _printable(result.virus)
        review.facts["virus"] = name
        review.notes.append(f"antivirus: {name} found")
        review.decide(Verdict.reject(f"Message contains a virus ({name}), rejected",
                                     code=554, status="5.7.1", stage=self.name))


def _format(score: float) -> str:
    return f"{score:.1f}"


class SpamStage(Stage):
    name = "antispam"
    _log = Logger()

    def __init__(self, scanner: RspamdClient, thresholds: Thresholds, *, timeout: float,
                 on_failure: str = TEMPFAIL, default: tuple[float, float] = (6.0, 15.0)):
        self.scanner = scanner
        self.thresholds = thresholds
        # `[filter]`'s pair, for mail with no local user to ask about
        # (MX mail only for remote recipients, a submission without a user).
        self.default = default
        self.timeout = timeout
        self.on_failure = on_failure

    def applies(self, transaction: Transaction) -> bool:
        return transaction.mode in (MX, SUBMISSION)

    def review(self, review: Review) -> Any:
        if review.facts.get("allowed"):
            review.notes.append("antispam: sender allowed, not scored")
            return None
        return self.scanner.check(review.transaction).addCallback(self._judge, review)

    def _judge(self, result: RspamdResult, review: Review) -> None:
        tx = review.transaction
        score = result.score
        review.facts["spam_score"] = score
        review.facts["spam_symbols"] = result.symbol_names
        review.facts["spam_action"] = result.action

        # Whose thresholds: the local recipients' on MX (each may differ:
        # per-domain overrides); the submitter's own on submission.
        if tx.mode == SUBMISSION:
            users: list[str | None] = [tx.user]
        else:
            users = list(tx.local_users) or [None]
        limits = {user: self.thresholds(user) if user is not None else self.default for user in users}
        over_reject = [u for u, (_spam, reject) in limits.items() if score >= reject]
        # Over its reject score but not everyone's: that recipient gets Junk.
        over_spam = [u for u, (spam, reject) in limits.items() if score >= min(spam, reject)]
        required = min(spam for spam, _reject in limits.values())

        if tx.mode == SUBMISSION:
            # Outgoing mail carries no verdict of ours: other servers' filters
            # would read it.  The score goes to the mail log.
            review.notes.append(f"antispam: score {_format(score)}")
        else:
            review.add_header("X-Spam-Score", _format(score))
        # When the virus scan failed under the accept policy the message
        # already says `X-Spam-Status: unscanned`: that mark stays the one
        # X-Spam-Status (a second one would read as "scanned, clean").
        if tx.mode == MX and not review.facts.get("unscanned"):
            status = "Yes" if over_spam else "No"
            review.add_header("X-Spam-Status",
                              f"{status}, score={_format(score)} required={_format(required)}")

        if len(over_reject) == len(users):
            review.notes.append(f"antispam: score {_format(score)} rejected")
            review.decide(Verdict.reject(f"Message refused as spam (score {_format(score)})",
                                         code=550, status="5.7.1", stage=self.name))
            return
        if tx.mode == SUBMISSION:
            return  # a submission has no Junk: below reject it goes out, marked
        for user in over_spam:
            if user is not None:
                review.junk(user)
        if over_spam:
            who = ", ".join(map(str, over_spam))
            review.notes.append(f"antispam: score {_format(score)}, Junk for {who}")


def default_pair(settings: Any) -> tuple[float, float]:
    return float(settings.filter.spam_score), float(settings.filter.reject_score)


def default_thresholds(settings: Any) -> Thresholds:
    """`[filter] spam_score` / `reject_score` for everyone (per-domain
    overrides: xmail.filter.policy.thresholds replaces this callable)."""
    pair = default_pair(settings)
    return lambda _user: pair


def scanner_stages(settings: Any, reactor: Any, work: Any,
                   thresholds: Thresholds | None = None) -> list[Stage]:
    """The configured scanner stages, virus first (a virus is refused
    whatever its spam score, and rspamd need not see it): none, one or
    both, from `[filter] clamd` and `[filter] rspamd`."""
    f = settings.filter
    policy = failure_policy(f.on_scanner_failure)
    stages: list[Stage] = []
    if f.clamd:
        stages.append(VirusStage(ClamdClient(f.clamd, reactor, work, timeout=f.scan_timeout),
                                 timeout=f.scan_timeout, on_failure=policy))
    if f.rspamd:
        stages.append(SpamStage(RspamdClient(f.rspamd, reactor, work, timeout=f.scan_timeout),
                                thresholds or default_thresholds(settings),
                                timeout=f.scan_timeout, on_failure=policy, default=default_pair(settings)))
    return stages
