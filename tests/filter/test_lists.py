"""Sender allow/block lists: patterns, precedence, the lists stage and the RCPT check."""

from __future__ import annotations

import pytest
from twisted.internet import task

from tests.filter.test_pipeline import run, transaction
from xmail.db.environment import IndexEnvironment
from xmail.filter.interfaces import SUBMISSION, Action, Recipient
from xmail.filter.lists import (
    ALLOW,
    BLOCK,
    ListError,
    SenderLists,
    SenderListStage,
    candidates,
    normalize_pattern,
    scope_of,
    sender_check,
)
from xmail.filter.pipeline import DeliveryPipeline

BOB = "bob@example.com"
CAROL = "carol@example.com"


@pytest.fixture
def lists(tmp_path):
    environment = IndexEnvironment(str(tmp_path / "index"))
    environment.open()
    yield SenderLists(environment)
    environment.close()


def test_patterns_are_normalised_and_bad_ones_refused() -> None:
    assert normalize_pattern(" Spam@Example.NET ") == "spam@example.net"
    assert normalize_pattern("@Example.net") == "@example.net"
    assert normalize_pattern("*.Example.net") == "*.example.net"
    assert normalize_pattern("@faß.de") == "@xn--fa-hia.de"
    for bad in ("", "example.net", "a b@c.d", "@", "*.", "x\r\n@y.z", "@" + "a" * 400):
        with pytest.raises(ListError):
            normalize_pattern(bad)
    with pytest.raises(ListError):
        scope_of(domain="example.com", user=BOB)


def test_candidates_cover_the_address_its_domain_and_every_parent() -> None:
    assert candidates("Bob@Mail.Spam.example") == [
        "bob@mail.spam.example", "@mail.spam.example", "*.mail.spam.example", "*.spam.example", "*.example"]
    assert candidates("not an address") == []


def test_precedence_user_allow_then_user_block_then_domain_allow_then_domain_block(lists) -> None:
    domain, user = scope_of(domain="example.com"), scope_of(user=BOB)
    sender = ["news@shop.example.net"]
    assert lists.decision(sender, BOB) is None
    lists.add(domain, BLOCK, "*.example.net")
    assert lists.decision(sender, BOB) == BLOCK
    assert lists.decision(sender, "x@other.org") is None  # another domain's recipients
    lists.add(domain, ALLOW, "@shop.example.net")
    assert lists.decision(sender, BOB) == ALLOW
    lists.add(user, BLOCK, "news@shop.example.net")
    assert lists.decision(sender, BOB) == BLOCK
    assert lists.decision(sender, CAROL) == ALLOW  # the domain's allow still holds for others
    lists.add(user, ALLOW, "*.shop.example.net")
    assert lists.decision(sender, BOB) == ALLOW
    assert lists.list(user, ALLOW) == ["*.shop.example.net"]
    assert lists.remove(user, ALLOW, "*.SHOP.example.net") is True
    assert lists.remove(user, ALLOW, "*.shop.example.net") is False
    assert lists.decision(sender, BOB) == BLOCK


def test_rcpt_check_refuses_a_blocked_envelope_sender(lists) -> None:
    lists.add(scope_of(user=BOB), BLOCK, "spam@example.net")
    check = sender_check(lists)
    verdict = check("Spam@Example.net", BOB)
    assert verdict is not None and (verdict.code, verdict.status) == (550, "5.7.1")
    assert check("spam@example.net", CAROL) is None
    pipeline = DeliveryPipeline([], task.Clock(), "h", sender_check=check)
    assert pipeline.check_sender("", BOB) is None  # bounces are never refused by a list


def test_the_stage_reads_the_from_header_too(lists) -> None:
    lists.add(scope_of(domain="example.com"), BLOCK, "@evil.example")
    stage = SenderListStage(lists)
    both = (Recipient(BOB, BOB), Recipient(CAROL, CAROL))
    header = b"From: Boss <ceo@evil.example>\r\nSubject: x\r\n\r\n"
    (review,) = run(DeliveryPipeline([stage], task.Clock(), "h"),
                    transaction(recipients=both, header_section=header))
    assert review.verdict.action is Action.REJECT and review.verdict.code == 550

    # Carol takes the sender back: her copy is delivered, Bob's dropped.
    lists.add(scope_of(user=CAROL), ALLOW, "ceo@evil.example")
    (review,) = run(DeliveryPipeline([stage], task.Clock(), "h"),
                    transaction(recipients=both, header_section=header))
    assert review.verdict.action is Action.ACCEPT
    assert review.discarded == {BOB: "sender blocked"}
    assert review.facts["allowed_users"] == {CAROL} and review.facts["allowed"] is False


def test_allowed_by_every_recipient_is_a_fact_for_the_spam_stage(lists) -> None:
    lists.add(scope_of(domain="example.com"), ALLOW, "*.partner.example")
    (review,) = run(DeliveryPipeline([SenderListStage(lists)], task.Clock(), "h"),
                    transaction(mail_from="x@mail.partner.example", recipients=(Recipient(BOB, BOB),)))
    assert review.facts["allowed"] is True


def test_the_stage_leaves_submissions_alone(lists) -> None:
    assert not SenderListStage(lists).applies(transaction(SUBMISSION))


def test_a_thousand_padding_fields_do_not_hide_the_from_author(lists) -> None:
    lists.add(scope_of(domain="example.com"), BLOCK, "@evil.example")
    padding = b"".join(b"X-Pad-%d: x\r\n" % i for i in range(1500))
    header = padding + b"From: ceo@evil.example\r\n\r\n"
    (review,) = run(DeliveryPipeline([SenderListStage(lists)], task.Clock(), "h"),
                    transaction(mail_from="bounce@other.example", recipients=(Recipient(BOB, BOB),),
                                header_section=header))
    assert review.verdict.action is Action.REJECT
