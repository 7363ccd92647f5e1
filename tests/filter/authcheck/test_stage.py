"""The authentication stage as the pipeline runs it: one
Authentication-Results field with client data escaped, only MX mail, DNS
that never answers, a cancelled stage, hostile sizes."""

from __future__ import annotations

import dataclasses
import threading
import time

from twisted.names import dns

from tests.filter.authcheck.conftest import HOST, Env, Key, field, message, publish, sign, txt, unfolded
from tests.support.server import in_reactor
from xmail.filter.authcheck import AuthenticationStage
from xmail.filter.interfaces import MX, SUBMISSION, Action, Recipient, Transaction
from xmail.filter.pipeline import IGNORE
from xmail.filter.work import FilterWork


def resinfos(value: str) -> list[str]:
    """Split an unfolded field value at the ";" outside quoted-strings."""
    parts, current, quoted, escaped = [], "", False, False
    for c in value:
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            parts.append(current.strip())
            current = ""
            continue
        current += c
    assert not quoted
    return parts + [current.strip()]


def test_one_field_with_every_method_and_our_authserv_id(env: Env, ed25519: Key) -> None:
    publish(env.zone, ed25519, "example.net")
    env.zone.records[("_dmarc.example.net", dns.TXT)] = [txt("v=DMARC1; p=reject")]
    review = env.run(sign(message(), ed25519, "example.net"))
    text = field(review)
    assert text.startswith(f"Authentication-Results: {HOST};") and text.endswith("\r\n")
    assert all(len(line) <= 78 for line in text.split("\r\n"))
    assert resinfos(unfolded(review).split(": ", 1)[1]) == [
        HOST, "spf=pass smtp.mailfrom=alice@example.net",
        "dkim=pass header.d=example.net header.s=sel header.a=ed25519-sha256",
        "dmarc=pass header.from=example.net", "arc=none"]
    assert {"spf", "dkim", "dmarc", "arc"} <= set(review.facts)
    assert review.verdict.action is Action.ACCEPT
    assert any(n.startswith("authentication: spf=pass dkim=pass:example.net") for n in review.notes)


def test_cr_lf_and_specials_from_the_client_never_reach_the_field_unescaped(env: Env) -> None:
    helo = 'evil\r\nX-Injected: yes; dkim=pass (forged) "q" \\'
    mail_from = 'a;b(c)"d\r\nX-Injected: 1@x;y.example'
    for review in (env.run(message(), helo=helo, mail_from=""),
                   env.run(message(), helo=helo, mail_from=mail_from)):
        text = field(review)
        lines = text.split("\r\n")
        assert lines[-1] == "" and all(line.startswith(" ") for line in lines[1:-1])
        assert "X-Injected" not in [line.split(":")[0].strip() for line in lines]
        parts = resinfos(unfolded(review).split(": ", 1)[1])
        assert [p.split("=")[0] for p in parts[1:]] == ["spf", "dkim", "dmarc", "arc"]
        (identity,) = [p for p in parts if p.startswith("spf=")]
        value = identity.split(" ", 1)[1].split("=", 1)[1]
        assert value.startswith('"') and value.endswith('"')
        assert not any(c in value[1:-1] for c in '";()\\\r\n')
        assert all(" " <= c <= "~" for c in text.replace("\r\n", ""))


def test_a_forged_from_domain_and_selector_stay_inside_their_values(env: Env) -> None:
    forged = message(sender="x@example.org",
                     extra='DKIM-Signature: v=1; a=rsa-sha256; d=evil.example;(x)"; s=a;b; h=from;'
                           ' bh=AAAA; b=AAAA\r\n')
    review = env.run(forged)
    parts = resinfos(unfolded(review).split(": ", 1)[1])
    assert [p.split("=")[0] for p in parts[1:]] == ["spf", "dkim", "dmarc", "arc"]


def test_submissions_and_a_disabled_stage_are_left_alone(env: Env) -> None:
    stage = env.stage()
    tx = Transaction(mode=SUBMISSION, id="T", client_ip="192.0.2.1", helo="h", mail_from="a@example.net",
                     recipients=(), user="alice@example.net", header_section=b"\r\n", size=0, hostname=HOST)
    assert not stage.applies(tx)
    assert stage.applies(dataclasses.replace(tx, mode=MX))
    off = env.stage(settings=dataclasses.replace(env.settings, authenticate=False))
    assert not off.applies(dataclasses.replace(tx, mode=MX))
    assert (stage.name, stage.on_failure) == ("authentication", IGNORE) and stage.timeout > 0


def test_a_dns_server_that_never_answers_gives_temperror_within_the_deadline(
        silent_env: Env, ed25519: Key) -> None:
    signed = sign(message(), ed25519, "example.net")
    started = time.monotonic()
    review = silent_env.run(signed, timeout=4.0, query_timeout=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 4.0
    assert review.facts["spf"].result == "temperror"
    assert [d.result for d in review.facts["dkim"]] == ["temperror"]
    assert review.facts["dmarc"].result == "temperror"
    assert review.verdict.action is Action.ACCEPT and review.folders == {}
    parts = resinfos(unfolded(review).split(": ", 1)[1])
    assert parts[1].startswith("spf=temperror") and parts[2].startswith("dkim=temperror")
    assert parts[3].startswith("dmarc=temperror")
    assert not any("failed" in n for n in review.notes)


def test_a_cancelled_stage_asks_no_more_questions(env: Env) -> None:
    # One worker thread, held busy: the stage's SPF and DKIM jobs wait in
    # the queue until the pipeline's timeout cancels the stage.  Released
    # afterwards, they must end without asking DNS anything.
    env.work = FilterWork(env.reactor, threads=1)
    release = threading.Event()
    in_reactor(lambda: (env.work.run(release.wait, 30), None)[1])
    try:
        review = env.run(message(), mail_from="x@example.net", timeout=0.5, query_timeout=0.2)
    finally:
        release.set()
    assert any(n.startswith("authentication: failed (timed out") for n in review.notes)
    assert review.headers == [] and review.verdict.action is Action.ACCEPT
    in_reactor(env.work.run, lambda: None)  # FIFO with one thread: the stage's jobs have ended
    assert ("example.net", dns.TXT) not in env.zone.asked


def test_10k_character_fields_and_helo_cost_little(env: Env, ed25519: Key) -> None:
    publish(env.zone, ed25519, "example.net")
    long = message(extra="X-Long: " + "a" * 10_000 + "\r\nX-Folded: " + "b\r\n " * 5_000 + "c\r\n")
    helo = "h" * 10_000 + ".example"
    started = time.monotonic()
    review = env.run(sign(long, ed25519, "example.net"), helo=helo, mail_from="")
    assert time.monotonic() - started < 5
    assert [d.result for d in review.facts["dkim"]] == ["pass"]
    assert review.facts["spf"].result == "none"
    assert len(field(review)) < 1000


def test_the_stage_is_built_as_the_service_builds_it(env: Env) -> None:
    stage = AuthenticationStage(env.resolver, env.work, env.settings, env.reactor,
                                dmarc_reject_to_junk=lambda domain: False)
    tx = Transaction(mode=MX, id="T", client_ip="192.0.2.10", helo="out.example.net",
                     mail_from="alice@example.net", recipients=(Recipient("b@example.com", "b@example.com"),),
                     user=None, header_section=b"From: alice@example.net\r\n\r\n", size=10, hostname=HOST,
                     source=lambda: b"From: alice@example.net\r\n\r\nhi\r\n")
    from xmail.filter.pipeline import DeliveryPipeline

    review = in_reactor(DeliveryPipeline([stage], env.reactor, HOST).review, tx)
    assert review.facts["spf"].result == "pass"
