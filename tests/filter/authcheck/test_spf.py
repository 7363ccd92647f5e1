"""SPF (RFC 7208) through the stage: results, limits, the HELO identity,
and pyspf never using its own (blocking) resolver."""

from __future__ import annotations

import threading

import spf as pyspf
from twisted.names import dns

from tests.filter.authcheck.conftest import Env, txt, unfolded
from xmail.filter.authcheck import spf as spfcheck  # noqa: F401  (installs the DNS hook)

MSG = b"From: alice@example.net\r\nSubject: hi\r\n\r\nhi\r\n"


def test_pass_fail_softfail_neutral_none(env: Env) -> None:
    env.zone.records[("soft.example", dns.TXT)] = [txt("v=spf1 ~all")]
    env.zone.records[("neutral.example", dns.TXT)] = [txt("v=spf1 ?all")]
    env.zone.records[("nospf.example", dns.TXT)] = [txt("some other text")]
    cases = [("alice@example.net", "192.0.2.10", "pass"),
             ("alice@example.net", "198.51.100.7", "fail"),
             ("x@soft.example", "192.0.2.10", "softfail"),
             ("x@neutral.example", "192.0.2.10", "neutral"),
             ("x@nospf.example", "192.0.2.10", "none"),
             ("x@nowhere.example", "192.0.2.10", "none")]
    for mail_from, ip, expected in cases:
        review = env.run(MSG, mail_from=mail_from, client_ip=ip)
        assert review.facts["spf"].result == expected, (mail_from, review.facts["spf"])
        assert f"spf={expected} smtp.mailfrom={mail_from};" in unfolded(review)


def test_the_null_reverse_path_checks_the_helo_name(env: Env) -> None:
    review = env.run(MSG, mail_from="", helo="out.example.net", client_ip="198.51.100.7")
    spf = review.facts["spf"]
    assert (spf.identity, spf.domain, spf.result) == ("helo", "out.example.net", "fail")
    assert "spf=fail smtp.helo=out.example.net;" in unfolded(review)


def test_an_include_loop_is_a_permerror(env: Env) -> None:
    env.zone.records[("loop.example", dns.TXT)] = [txt("v=spf1 include:loop2.example -all")]
    env.zone.records[("loop2.example", dns.TXT)] = [txt("v=spf1 include:loop.example -all")]
    review = env.run(MSG, mail_from="x@loop.example", client_ip="198.51.100.7")
    assert review.facts["spf"].result == "permerror"
    # the loop ended on a limit, not by running until the stage's timeout
    assert env.zone.asked.count(("loop.example", dns.TXT)) <= 11


def test_more_than_ten_dns_terms_is_a_permerror(env: Env) -> None:
    # RFC 7208 §4.6.4: 11 "a" terms, each naming a host that exists (so no
    # void lookup), none matching the client.
    terms = " ".join(f"a:h{i}.ten.example" for i in range(1, 12))
    env.zone.records[("ten.example", dns.TXT)] = [txt(f"v=spf1 {terms} -all")]
    for i in range(1, 12):
        env.zone.records[(f"h{i}.ten.example", dns.A)] = [dns.Record_A(f"203.0.113.{i}")]
    review = env.run(MSG, mail_from="x@ten.example")
    spf = review.facts["spf"]
    assert spf.result == "permerror" and "Too many DNS lookups" in spf.reason
    assert ("h11.ten.example", dns.A) not in env.zone.asked


def test_ten_dns_terms_are_allowed(env: Env) -> None:
    terms = " ".join(f"a:h{i}.ten.example" for i in range(1, 11))
    env.zone.records[("ten.example", dns.TXT)] = [txt(f"v=spf1 {terms} ip4:192.0.2.0/24 -all")]
    for i in range(1, 11):
        env.zone.records[(f"h{i}.ten.example", dns.A)] = [dns.Record_A(f"203.0.113.{i}")]
    assert env.run(MSG, mail_from="x@ten.example").facts["spf"].result == "pass"


def test_a_third_void_lookup_is_a_permerror(env: Env) -> None:
    # RFC 7208 §4.6.4: at most two lookups that find nothing (NXDOMAIN or no records)
    env.zone.records[("void.example", dns.TXT)] = [
        txt("v=spf1 a:v1.void.example a:v2.void.example a:v3.void.example -all")]
    review = env.run(MSG, mail_from="x@void.example")
    spf = review.facts["spf"]
    assert spf.result == "permerror" and "Void lookup limit" in spf.reason


def test_two_void_lookups_are_allowed(env: Env) -> None:
    env.zone.records[("void.example", dns.TXT)] = [
        txt("v=spf1 a:v1.void.example a:v2.void.example ip4:192.0.2.0/24 -all")]
    assert env.run(MSG, mail_from="x@void.example").facts["spf"].result == "pass"


def test_mx_and_include_mechanisms_use_the_loopback_zone(env: Env) -> None:
    env.zone.records[("mxsender.example", dns.TXT)] = [txt("v=spf1 mx include:example.net -all")]
    env.zone.records[("mxsender.example", dns.MX)] = [dns.Record_MX(10, b"mail.mxsender.example")]
    env.zone.records[("mail.mxsender.example", dns.A)] = [dns.Record_A("198.51.100.25")]
    for ip, expected in (("198.51.100.25", "pass"), ("192.0.2.99", "pass"), ("203.0.113.1", "fail")):
        assert env.run(MSG, mail_from="x@mxsender.example", client_ip=ip).facts["spf"].result == expected


def test_an_oversized_spf_record_is_a_permerror(env: Env) -> None:
    env.zone.records[("big.example", dns.TXT)] = [txt("v=spf1 " + "ip4:192.0.2.1 " * 400 + "-all")]
    review = env.run(MSG, mail_from="x@big.example")
    assert review.facts["spf"].result == "permerror"


def test_pyspf_without_a_bridge_never_asks_a_resolver_of_its_own() -> None:
    # Any pyspf query in this process outside check_spf (no bridge for the
    # thread) is a temperror, not a blocking lookup through dnspython.
    out: list[tuple[str, int, str]] = []
    thread = threading.Thread(target=lambda: out.append(
        pyspf.query(i="192.0.2.1", s="a@example.net", h="h.example.net").check()))
    thread.start()
    thread.join(10)
    assert out and out[0][0] == "temperror" and "no resolver" in out[0][2]
