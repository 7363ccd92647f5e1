"""The "antivirus" and "antispam" stages in the delivery pipeline, against
the session's real clamd and rspamd (and servers that misbehave): the
verdicts, Junk, headers and failure policies of issue 17."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from tests.filter.scanners.support import (
    MisbehavingServer,
    closed_port,
    eicar_message,
    message,
    spool,
    transaction,
)
from tests.support.scanners import EICAR_NAME
from tests.support.server import in_reactor, reactor_running
from xmail.config import FilterSettings, Settings
from xmail.filter.interfaces import SUBMISSION, Action, Recipient, Review
from xmail.filter.pipeline import DeliveryPipeline, Stage
from xmail.filter.scanners.stages import SpamStage, VirusStage, scanner_stages

BOB = "bob@example.com"
CAROL = "carol@example.org"


def settings(**filter_settings: Any) -> Settings:
    return dataclasses.replace(Settings(), filter=FilterSettings(**filter_settings))


def pipeline(work: Any, *, before: list[Stage] = (), thresholds: Any = None, **filter_settings: Any) -> Any:
    reactor = reactor_running()
    stages = scanner_stages(settings(**filter_settings), reactor, work, thresholds)
    return DeliveryPipeline([*before, *stages], reactor, "mail.example.com")


def review(p: Any, tx: Any) -> Review:
    return in_reactor(p.review, tx)


def header(r: Review, name: str) -> list[str]:
    prefix = name.lower().encode() + b":"
    return [h.split(b":", 1)[1].strip().decode() for h in r.headers if h.lower().startswith(prefix)]


def daemons(clamd: Any, rspamd: Any, **kw: Any) -> dict[str, Any]:
    return dict(clamd=clamd.tcp, rspamd=rspamd.url, **kw)


def test_stages_are_built_from_settings(work: Any) -> None:
    assert scanner_stages(settings(), reactor_running(), work) == []
    virus, spam = scanner_stages(settings(clamd="unix:/x", rspamd="http://127.0.0.1:1", scan_timeout=7,
                                          on_scanner_failure="accept"), reactor_running(), work)
    assert isinstance(virus, VirusStage) and isinstance(spam, SpamStage)
    assert (virus.name, spam.name) == ("antivirus", "antispam")
    assert virus.timeout == spam.timeout == 7 and virus.on_failure == spam.on_failure == "accept"


def test_a_clean_message_is_accepted_and_marked(clamd: Any, rspamd: Any, work: Any, tmp_path: Any) -> None:
    r = review(pipeline(work, **daemons(clamd, rspamd)), transaction(spool(tmp_path, message())))
    assert r.verdict.action is Action.ACCEPT
    assert r.folder(BOB) == "INBOX"
    assert "virus" not in r.facts and r.facts["spam_score"] < 6
    (score,) = header(r, "X-Spam-Score")
    assert header(r, "X-Spam-Status") == [f"No, score={score} required=6.0"]


def test_a_virus_is_refused_554_naming_it(clamd: Any, rspamd: Any, work: Any, tmp_path: Any) -> None:
    for mode, user in (("mx", None), (SUBMISSION, "alice@example.net")):
        r = review(pipeline(work, **daemons(clamd, rspamd)),
                   transaction(spool(tmp_path, eicar_message()), mode=mode, user=user))
        assert r.verdict.action is Action.REJECT
        assert (r.verdict.code, r.verdict.status, r.verdict.stage) == (554, "5.7.1", "antivirus")
        assert EICAR_NAME in r.verdict.text and r.facts["virus"].startswith(EICAR_NAME)
        assert "spam_score" not in r.facts  # a refused message is not scored


def test_a_spammy_message_goes_to_junk(clamd: Any, rspamd: Any, work: Any, tmp_path: Any) -> None:
    p = pipeline(work, **daemons(clamd, rspamd))
    r = review(p, transaction(spool(tmp_path, message("XMAIL-SCORE=7.5"))))
    assert r.verdict.action is Action.ACCEPT
    assert r.folder(BOB) == "Junk"
    assert header(r, "X-Spam-Score") == ["7.5"]
    assert header(r, "X-Spam-Status") == ["Yes, score=7.5 required=6.0"]
    assert r.facts["spam_score"] == 7.5 and "XMAIL_TEST_SCORE" in r.facts["spam_symbols"]


def test_spam_over_the_reject_score_is_refused_550(clamd: Any, rspamd: Any, work: Any) -> None:
    r = review(pipeline(work, **daemons(clamd, rspamd)), transaction(message("XMAIL-TEST-SPAM")))
    assert r.verdict.action is Action.REJECT
    assert (r.verdict.code, r.verdict.status, r.verdict.stage) == (550, "5.7.1", "antispam")


def test_thresholds_are_per_recipient(clamd: Any, rspamd: Any, work: Any) -> None:
    limits = {BOB: (6.0, 15.0), CAROL: (8.0, 25.0)}
    p = pipeline(work, thresholds=lambda user: limits[user], **daemons(clamd, rspamd))
    both = (Recipient(BOB, BOB), Recipient(CAROL, CAROL), Recipient("x@remote.net", None))
    r = review(p, transaction(message("XMAIL-SCORE=7.5"), recipients=both))
    assert (r.verdict.action, r.folder(BOB), r.folder(CAROL)) == (Action.ACCEPT, "Junk", "INBOX")
    # 20: over bob's reject score but not carol's: no refusal, both in Junk.
    r = review(p, transaction(message("XMAIL-TEST-SPAM"), recipients=both))
    assert (r.verdict.action, r.folder(BOB), r.folder(CAROL)) == (Action.ACCEPT, "Junk", "Junk")
    limits[CAROL] = (8.0, 19.0)
    r = review(p, transaction(message("XMAIL-TEST-SPAM"), recipients=both))
    assert (r.verdict.action, r.verdict.code) == (Action.REJECT, 550)


def test_without_local_recipients_the_filter_defaults_apply(clamd: Any, rspamd: Any, work: Any) -> None:
    # The thresholds callable is asked about local users only (it looks
    # up the user's domain); remote-only mail gets [filter]'s pair.
    p = pipeline(work, thresholds=lambda user: {BOB: (1.0, 2.0)}[user], reject_score=30.0,
                 **daemons(clamd, rspamd))
    remote = (Recipient("x@remote.net", None),)
    r = review(p, transaction(message("XMAIL-TEST-SPAM"), recipients=remote))
    assert r.verdict.action is Action.ACCEPT
    assert header(r, "X-Spam-Status") == ["Yes, score=20.0 required=6.0"]
    r = review(p, transaction(message("XMAIL-SCORE=3"), recipients=(Recipient(BOB, BOB),)))
    assert (r.verdict.action, r.verdict.code) == (Action.REJECT, 550)


class Allow(Stage):
    name = "lists"

    def review(self, review: Review) -> None:
        review.facts["allowed"] = True


def test_an_allowed_sender_skips_spam_scoring_but_not_virus_scanning(clamd: Any, rspamd: Any,
                                                                     work: Any) -> None:
    p = pipeline(work, before=[Allow()], **daemons(clamd, rspamd))
    r = review(p, transaction(message("XMAIL-TEST-SPAM")))
    assert r.verdict.action is Action.ACCEPT and r.folder(BOB) == "INBOX"
    assert "spam_score" not in r.facts and header(r, "X-Spam-Status") == []
    r = review(p, transaction(eicar_message()))
    assert (r.verdict.action, r.verdict.code) == (Action.REJECT, 554)


def test_a_submission_is_scanned_and_has_no_junk(clamd: Any, rspamd: Any, work: Any) -> None:
    p = pipeline(work, **daemons(clamd, rspamd))
    sub = dict(mode=SUBMISSION, user="alice@example.net", recipients=(Recipient(BOB, BOB),))
    r = review(p, transaction(message("XMAIL-SCORE=7.5"), **sub))
    assert r.verdict.action is Action.ACCEPT and r.folders == {}
    # Outgoing mail carries no verdict header; the score is in the mail log's notes.
    assert header(r, "X-Spam-Status") == [] and header(r, "X-Spam-Score") == []
    assert "antispam: score 7.5" in r.notes and r.facts["spam_score"] == 7.5
    r = review(p, transaction(message("XMAIL-TEST-SPAM"), **sub))
    assert (r.verdict.action, r.verdict.code, r.verdict.status) == (Action.REJECT, 550, "5.7.1")


def test_scanners_down_tempfail_451_at_once(work: Any, tmp_path: Any) -> None:
    for down in (dict(clamd=f"tcp:127.0.0.1:{closed_port()}"), dict(clamd=f"unix:{tmp_path}/none.sock"),
                 dict(rspamd=f"http://127.0.0.1:{closed_port()}")):
        started = time.monotonic()
        r = review(pipeline(work, scan_timeout=1, **down), transaction(message()))
        assert (r.verdict.action, r.verdict.code, r.verdict.status) == (Action.TEMPFAIL, 451, "4.7.1")
        assert time.monotonic() - started < 2  # scan_timeout + 1 s


def test_scanners_that_hang_tempfail_within_scan_timeout(work: Any) -> None:
    silent = MisbehavingServer(None)
    try:
        for hanging in (dict(clamd=f"tcp:127.0.0.1:{silent.port}"), dict(rspamd=f"http://127.0.0.1:{silent.port}")):
            started = time.monotonic()
            r = review(pipeline(work, scan_timeout=1, **hanging), transaction(message()))
            elapsed = time.monotonic() - started
            assert (r.verdict.action, r.verdict.code, r.verdict.status) == (Action.TEMPFAIL, 451, "4.7.1")
            assert 1 <= elapsed < 2, elapsed
    finally:
        silent.stop()


def test_scanners_down_with_the_accept_policy_mark_the_message_unscanned(work: Any) -> None:
    port = closed_port()
    r = review(pipeline(work, scan_timeout=1, on_scanner_failure="accept", clamd=f"tcp:127.0.0.1:{port}",
                        rspamd=f"http://127.0.0.1:{port}"), transaction(message("XMAIL-TEST-SPAM")))
    assert r.verdict.action is Action.ACCEPT
    assert header(r, "X-Spam-Status") == ["unscanned"]  # once, for both stages
    assert r.facts["unscanned"] and any("antivirus: failed" in n for n in r.notes)


def test_a_failed_virus_scan_stays_marked_unscanned_though_spam_scored(rspamd: Any, work: Any) -> None:
    p = pipeline(work, scan_timeout=1, on_scanner_failure="accept", clamd=f"tcp:127.0.0.1:{closed_port()}",
                 rspamd=rspamd.url)
    r = review(p, transaction(message("XMAIL-SCORE=7.5")))
    assert r.verdict.action is Action.ACCEPT and r.folder(BOB) == "Junk"
    assert header(r, "X-Spam-Status") == ["unscanned"] and header(r, "X-Spam-Score") == ["7.5"]


def test_garbage_and_cut_off_replies_follow_the_policy(work: Any) -> None:
    garbage = MisbehavingServer(b"HTTP/1.0 200 OK\r\n\r\nhello")
    try:
        for scanner in (dict(clamd=f"tcp:127.0.0.1:{garbage.port}"),
                        dict(rspamd=f"http://127.0.0.1:{garbage.port}")):
            r = review(pipeline(work, scan_timeout=5, **scanner), transaction(message()))
            assert (r.verdict.action, r.verdict.code) == (Action.TEMPFAIL, 451)
            r = review(pipeline(work, scan_timeout=5, on_scanner_failure="accept", **scanner),
                       transaction(message()))
            assert r.verdict.action is Action.ACCEPT and header(r, "X-Spam-Status") == ["unscanned"]
    finally:
        garbage.stop()


def test_a_message_over_the_stream_limit_follows_the_policy(clamd: Any, work: Any, tmp_path: Any) -> None:
    lines = clamd.stream_max_length // 1000 + 50
    path = spool(tmp_path, message("Huge", body=("z" * 998 + "\r\n") * lines))
    r = review(pipeline(work, clamd=clamd.tcp), transaction(path))
    assert (r.verdict.action, r.verdict.code, r.verdict.status) == (Action.TEMPFAIL, 451, "4.7.1")
    assert any("StreamMaxLength" in n for n in r.notes)
    r = review(pipeline(work, clamd=clamd.tcp, on_scanner_failure="accept"), transaction(path))
    assert r.verdict.action is Action.ACCEPT and header(r, "X-Spam-Status") == ["unscanned"]
