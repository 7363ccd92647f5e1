"""The delivery pipeline's order, verdicts and failure policies."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from xmail.filter.interfaces import MX, SUBMISSION, Action, Recipient, Transaction, Verdict
from xmail.filter.pipeline import ACCEPT, IGNORE, TEMPFAIL, DeliveryPipeline, Stage, remove_forged_results


def transaction(mode: str = MX, **kw: Any) -> Transaction:
    values: dict[str, Any] = dict(
        mode=mode, id="T1", client_ip="192.0.2.1", helo="mx.example.net", mail_from="a@example.net",
        recipients=(Recipient("bob@example.com", "bob@example.com"), Recipient("x@remote.net", None)),
        user=None, header_section=b"From: a@example.net\r\n\r\n", size=30, hostname="mail.example.com",
        source=lambda: b"From: a@example.net\r\n\r\nhello\r\n")
    values.update(kw)
    return Transaction(**values)


class Recording(Stage):
    def __init__(self, name: str, ran: list[str], *, result: Any = None, policy: str = IGNORE,
                 timeout: float = 0.0, only: str | None = None):
        self.name, self.ran, self.result, self.on_failure, self.timeout = name, ran, result, policy, timeout
        self.only = only

    def applies(self, transaction: Transaction) -> bool:
        return self.only is None or transaction.mode == self.only

    def review(self, review: Any) -> Any:
        self.ran.append(self.name)
        if callable(self.result):
            return self.result(review)
        return self.result


def run(pipeline: DeliveryPipeline, tx: Transaction, clock: task.Clock | None = None) -> Any:
    results: list[Any] = []
    pipeline.review(tx).addBoth(results.append)
    return results


def test_stages_run_in_order_and_a_reject_ends_the_review() -> None:
    ran: list[str] = []
    stages = [Recording("lists", ran),
              Recording("virus", ran, result=lambda r: r.decide(Verdict.reject("virus", code=554))),
              Recording("spam", ran)]
    (review,) = run(DeliveryPipeline(stages, task.Clock(), "mail.example.com"), transaction())
    assert ran == ["lists", "virus"]
    assert review.verdict.action is Action.REJECT and review.verdict.code == 554


def test_a_stage_that_does_not_apply_is_skipped() -> None:
    ran: list[str] = []
    stages = [Recording("spf", ran, only=MX), Recording("virus", ran)]
    (review,) = run(DeliveryPipeline(stages, task.Clock(), "h"), transaction(SUBMISSION))
    assert ran == ["virus"]
    assert review.verdict.action is Action.ACCEPT


def test_junk_and_discard_are_per_recipient_and_headers_accumulate() -> None:
    def mark(review: Any) -> None:
        review.add_header("Authentication-Results", "mail.example.com; spf=pass")
        review.junk("bob@example.com")

    (review,) = run(DeliveryPipeline([Recording("a", [], result=mark)], task.Clock(), "h"), transaction())
    assert review.folder("bob@example.com") == "Junk"
    assert review.folder("carol@example.com") == "INBOX"
    assert review.prefix() == b"Authentication-Results: mail.example.com; spf=pass\r\n"


def test_a_failing_stage_follows_its_policy() -> None:
    def boom(review: Any) -> None:
        raise ConnectionRefusedError("scanner down")

    (review,) = run(DeliveryPipeline([Recording("clamd", [], result=boom, policy=TEMPFAIL)],
                                     task.Clock(), "h"), transaction())
    verdict = review.verdict
    assert (verdict.action, verdict.code, verdict.status) == (Action.TEMPFAIL, 451, "4.7.1")

    (review,) = run(DeliveryPipeline([Recording("clamd", [], result=boom, policy=ACCEPT),
                                      Recording("rspamd", [], result=boom, policy=ACCEPT)],
                                     task.Clock(), "h"), transaction())
    assert review.verdict.action is Action.ACCEPT
    assert review.prefix() == b"X-Spam-Status: unscanned\r\n"  # once, however many failed

    (review,) = run(DeliveryPipeline([Recording("spf", [], result=boom, policy=IGNORE)],
                                     task.Clock(), "h"), transaction())
    assert review.verdict.action is Action.ACCEPT and review.prefix() == b""
    assert review.notes == ["spf: failed (scanner down)"]


def test_a_stage_that_outlives_its_timeout_is_cancelled() -> None:
    clock = task.Clock()
    hung = defer.Deferred()
    stages = [Recording("rspamd", [], result=lambda r: hung, policy=TEMPFAIL, timeout=20)]
    results = run(DeliveryPipeline(stages, clock, "h"), transaction(), clock)
    clock.advance(19.9)
    assert results == []
    clock.advance(0.2)
    (review,) = results
    assert review.verdict.action is Action.TEMPFAIL and "rspamd" in review.verdict.text


def test_two_from_fields_are_refused_on_mx_only() -> None:
    pipeline = DeliveryPipeline([], task.Clock(), "mail.example.com")
    section = b"From: a@example.net\r\nFrom: ceo@example.com\r\nSubject: x\r\n\r\n"
    _section, verdict = pipeline.check_header_section(MX, section)
    assert verdict is not None and (verdict.code, verdict.status) == (550, "5.7.1")
    assert pipeline.check_header_section(SUBMISSION, section) == (section, None)


def test_forged_authentication_results_with_our_id_are_removed() -> None:
    section = (b"Authentication-Results: Mail.Example.com; dkim=pass\r\n"
               b"Subject: hi\r\n"
               b"Authentication-Results: (comment) mail.example.com;\r\n\tspf=pass\r\n"
               b"Authentication-Results: other.example.org; spf=fail\r\n"
               b"Authentication-Results: mail.example.com.evil; spf=pass\r\n\r\n")
    assert remove_forged_results(section, "mail.example.com") == (
        b"Subject: hi\r\n"
        b"Authentication-Results: other.example.org; spf=fail\r\n"
        b"Authentication-Results: mail.example.com.evil; spf=pass\r\n\r\n")


def test_removing_forged_results_is_linear() -> None:
    section = b"Authentication-Results: " + b"(" * 200_000 + b"\r\n\r\n"
    assert remove_forged_results(section, "h") == section


def test_fields_a_stage_writes_are_removed_from_arriving_mail() -> None:
    pipeline = DeliveryPipeline([], task.Clock(), "mx.example.com",
                                own_fields=("X-Spam-Status", "X-Spam-Flag"))
    section = (b"X-Spam-Status: No, score=-5\r\n\tforged=yes\r\nSubject: x\r\nx-spam-flag:NO\r\n"
               b"X-Spam-Statusx: kept\r\n\r\n")
    assert pipeline.check_header_section(MX, section) == (b"Subject: x\r\nX-Spam-Statusx: kept\r\n\r\n", None)
    assert pipeline.check_header_section(SUBMISSION, section) == (section, None)
