"""DMARC (RFC 7489) through the stage: policies, alignment, pct, sp and
the organizational-domain fallback, the per-domain reject-to-Junk override."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.names import dns

from tests.filter.authcheck.conftest import Env, Key, message, publish, sign, txt, unfolded
from xmail.filter.authcheck.dmarc import author_domain, organizational_domain, parse_record
from xmail.filter.interfaces import Action, Recipient

# example.org publishes DMARC but authorizes nobody by SPF: its mail here
# can only pass DMARC through an aligned DKIM signature.
FROM_ORG = message(sender="alice@example.org")


def dmarc(env: Env, domain: str, record: str) -> None:
    env.zone.records[(f"_dmarc.{domain}", dns.TXT)] = [txt(record)]


def run(env: Env, msg: bytes = FROM_ORG, **kw: Any) -> Any:
    kw.setdefault("mail_from", "bounce@elsewhere.example")
    return env.run(msg, **kw)


def test_reject_is_a_550_5_7_1(env: Env) -> None:
    dmarc(env, "example.org", "v=DMARC1; p=reject")
    review = run(env)
    assert review.facts["dmarc"].result == "fail"
    assert review.verdict.action is Action.REJECT
    assert (review.verdict.code, review.verdict.status) == (550, "5.7.1")
    assert "DMARC policy of example.org" in review.verdict.text
    assert "dmarc=fail header.from=example.org" in unfolded(review)


def test_reject_goes_to_junk_when_every_recipient_domain_asks(env: Env) -> None:
    dmarc(env, "example.org", "v=DMARC1; p=reject")
    asked: list[str] = []

    def to_junk(domain: str) -> bool:
        asked.append(domain)
        return domain == "example.com"

    review = run(env, dmarc_reject_to_junk=to_junk)
    assert review.verdict.action is Action.ACCEPT and review.folder("bob@example.com") == "Junk"
    assert asked == ["example.com"]
    both = (Recipient("bob@example.com", "bob@example.com"),
            Recipient("carol@other.example", "carol@other.example"))
    review = run(env, dmarc_reject_to_junk=to_junk, recipients=both)
    assert review.verdict.action is Action.REJECT


def test_quarantine_files_into_junk(env: Env) -> None:
    dmarc(env, "example.org", "v=DMARC1; p=quarantine")
    review = run(env)
    assert review.verdict.action is Action.ACCEPT and review.folder("bob@example.com") == "Junk"


def test_p_none_only_reports(env: Env) -> None:
    dmarc(env, "example.org", "v=DMARC1; p=none")
    review = run(env)
    assert review.facts["dmarc"].result == "fail" and review.folders == {}
    assert review.verdict.action is Action.ACCEPT


def test_no_record_is_dmarc_none(env: Env) -> None:
    review = run(env)
    assert review.facts["dmarc"].result == "none" and review.verdict.action is Action.ACCEPT
    assert "dmarc=none header.from=example.org" in unfolded(review)


def test_pct_0_applies_the_next_less_strict_policy(env: Env) -> None:
    # §6.6.4: a message not selected by pct gets quarantine instead of reject
    dmarc(env, "example.org", "v=DMARC1; p=reject; pct=0")
    review = run(env)
    assert review.verdict.action is Action.ACCEPT and review.folder("bob@example.com") == "Junk"
    dmarc(env, "example.org", "v=DMARC1; p=quarantine; pct=0")
    assert run(env).folders == {}


def test_pct_samples_with_the_given_chance(env: Env) -> None:
    dmarc(env, "example.org", "v=DMARC1; p=reject; pct=30")
    assert run(env, chance=lambda: 0.29).verdict.action is Action.REJECT
    assert run(env, chance=lambda: 0.30).verdict.action is Action.ACCEPT


def test_sp_applies_to_a_subdomain_through_the_organizational_domain(env: Env) -> None:
    dmarc(env, "example.org", "v=DMARC1; p=none; sp=reject")
    review = run(env, message(sender="alice@news.example.org"))
    assert review.facts["dmarc"].policy == "reject" and review.verdict.action is Action.REJECT
    assert ("_dmarc.news.example.org", dns.TXT) in env.zone.asked  # the author domain first
    assert run(env).verdict.action is Action.ACCEPT  # example.org itself: p=none


def test_a_record_at_the_subdomain_wins_over_the_organizational_one(env: Env) -> None:
    dmarc(env, "example.org", "v=DMARC1; p=none; sp=reject")
    dmarc(env, "news.example.org", "v=DMARC1; p=quarantine")
    review = run(env, message(sender="alice@news.example.org"))
    assert review.facts["dmarc"].policy == "quarantine" and review.folder("bob@example.com") == "Junk"


def test_aligned_spf_passes(env: Env) -> None:
    dmarc(env, "example.net", "v=DMARC1; p=reject")
    review = env.run(message(sender="alice@example.net"), mail_from="bounce@example.net")
    assert review.facts["dmarc"].result == "pass" and review.verdict.action is Action.ACCEPT
    assert "dmarc=pass header.from=example.net" in unfolded(review)


def test_spf_of_a_subdomain_is_aligned_only_when_relaxed(env: Env) -> None:
    env.zone.records[("bounces.example.net", dns.TXT)] = [txt("v=spf1 ip4:192.0.2.0/24 -all")]
    dmarc(env, "example.net", "v=DMARC1; p=reject")
    msg = message(sender="alice@example.net")
    assert env.run(msg, mail_from="b@bounces.example.net").facts["dmarc"].result == "pass"
    dmarc(env, "example.net", "v=DMARC1; p=reject; aspf=s")
    review = env.run(msg, mail_from="b@bounces.example.net")
    assert review.facts["spf"].result == "pass" and review.facts["dmarc"].result == "fail"
    assert review.verdict.action is Action.REJECT


def test_dkim_of_a_subdomain_is_aligned_only_when_relaxed(env: Env, ed25519: Key) -> None:
    publish(env.zone, ed25519, "mail.example.org")
    signed = sign(FROM_ORG, ed25519, "mail.example.org")
    dmarc(env, "example.org", "v=DMARC1; p=reject; adkim=r")
    review = run(env, signed)
    assert review.facts["dmarc"].result == "pass" and review.verdict.action is Action.ACCEPT
    dmarc(env, "example.org", "v=DMARC1; p=reject; adkim=s")
    review = run(env, signed)
    assert [d.result for d in review.facts["dkim"]] == ["pass"]
    assert review.facts["dmarc"].result == "fail" and review.verdict.action is Action.REJECT


def test_a_passing_but_unaligned_signature_does_not_pass_dmarc(env: Env, ed25519: Key) -> None:
    publish(env.zone, ed25519, "other.example")
    dmarc(env, "example.org", "v=DMARC1; p=reject")
    review = run(env, sign(FROM_ORG, ed25519, "other.example"))
    assert review.facts["dmarc"].result == "fail" and review.verdict.action is Action.REJECT


@pytest.mark.parametrize("from_field",
                         ["a@example.org, b@example.org", "undisclosed-recipients:;", "no address"])
def test_a_from_without_exactly_one_address_is_a_permerror(env: Env, from_field: str) -> None:
    dmarc(env, "example.org", "v=DMARC1; p=reject")
    msg = f"From: {from_field}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    review = run(env, msg)
    result = review.facts["dmarc"]
    assert result.result == "permerror" and result.from_domain == ""
    assert review.verdict.action is Action.ACCEPT
    assert "dmarc=permerror reason=" in unfolded(review)


def test_several_dmarc_records_mean_none(env: Env) -> None:
    env.zone.records[("_dmarc.example.org", dns.TXT)] = [txt("v=DMARC1; p=reject"), txt("v=DMARC1; p=none")]
    assert run(env).facts["dmarc"].result == "none"


def test_parse_record() -> None:
    record = parse_record(b"v=DMARC1;p=Reject; sp=none; adkim=s; aspf=r; pct=150; rua=mailto:x@y")
    assert record is not None and (record.p, record.sp, record.adkim, record.aspf, record.pct) == (
        "reject", "none", "s", "r", 100)
    assert parse_record(b"p=reject; v=DMARC1") is None  # v must come first (§6.4)
    assert parse_record(b"v=spf1 -all") is None
    bad = parse_record(b"v=DMARC1; p=block; pct=x")
    assert bad is not None and (bad.p, bad.sp, bad.pct) == ("none", "none", 100)


def test_author_domain_and_organizational_domain() -> None:
    assert author_domain("Alice <alice@Mail.Example.ORG>") == ("mail.example.org", "")
    assert author_domain(None)[1] == "no From field"
    assert author_domain("x@" + "a" * 5000)[1] == "From field too long"
    assert author_domain("x@exa\u00e9mple.org")[1] == "From address has no usable domain"
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("news.example.org") == "example.org"
