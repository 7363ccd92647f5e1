"""DKIM verification (RFC 6376) through the stage: keys made here and
published in the loopback zone, messages signed with dkimpy."""

from __future__ import annotations

import dataclasses

from tests.filter.authcheck.conftest import Env, Key, message, publish, sign, txt, unfolded
from xmail.filter.interfaces import Action


def test_rsa2048_signature_passes(env: Env, rsa2048: Key) -> None:
    publish(env.zone, rsa2048, "example.net")
    review = env.run(sign(message(), rsa2048, "example.net"))
    (result,) = review.facts["dkim"]
    assert (result.result, result.domain, result.selector) == ("pass", "example.net", "sel")
    assert "dkim=pass header.d=example.net header.s=sel header.a=rsa-sha256;" in unfolded(review)
    assert review.verdict.action is Action.ACCEPT


def test_rsa1024_signature_passes(env: Env, rsa1024: Key) -> None:
    publish(env.zone, rsa1024, "example.net", "old")
    review = env.run(sign(message(), rsa1024, "example.net", "old"))
    assert [d.result for d in review.facts["dkim"]] == ["pass"]


def test_ed25519_signature_passes(env: Env, ed25519: Key) -> None:
    publish(env.zone, ed25519, "example.net", "ed")
    review = env.run(sign(message(), ed25519, "example.net", "ed"))
    (result,) = review.facts["dkim"]
    assert (result.result, result.algorithm) == ("pass", "ed25519-sha256")
    assert "dkim=pass header.d=example.net header.s=ed header.a=ed25519-sha256" in unfolded(review)


def test_rsa_and_ed25519_together(env: Env, rsa2048: Key, ed25519: Key) -> None:
    publish(env.zone, rsa2048, "example.net", "rsa")
    publish(env.zone, ed25519, "example.net", "ed")
    signed = sign(sign(message(), rsa2048, "example.net", "rsa"), ed25519, "example.net", "ed")
    review = env.run(signed)
    assert [(d.selector, d.result) for d in review.facts["dkim"]] == [("ed", "pass"), ("rsa", "pass")]


def test_a_changed_body_fails(env: Env, rsa2048: Key) -> None:
    publish(env.zone, rsa2048, "example.net")
    signed = sign(message(body="Pay 10 EUR.\r\n"), rsa2048, "example.net")
    review = env.run(signed.replace(b"10 EUR", b"9999 EUR"))
    (result,) = review.facts["dkim"]
    assert result.result == "fail" and "body hash mismatch" in result.reason
    assert "dkim=fail reason=" in unfolded(review)


def test_a_changed_signed_header_fails(env: Env, ed25519: Key) -> None:
    publish(env.zone, ed25519, "example.net")
    signed = sign(message(), ed25519, "example.net")
    review = env.run(signed.replace(b"Subject: lunch", b"Subject: invoice"))
    assert [d.result for d in review.facts["dkim"]] == ["fail"]


def test_a_missing_key_is_a_permerror(env: Env, rsa2048: Key) -> None:
    # RFC 6376 §6.1.2 step 3: no key record -> PERMFAIL (RFC 8601: permerror)
    review = env.run(sign(message(), rsa2048, "example.net", "gone"))
    (result,) = review.facts["dkim"]
    assert (result.result, result.reason) == ("permerror", "no key")
    assert ("gone._domainkey.example.net", 16) in env.zone.asked


def test_a_key_of_another_signer_fails(env: Env, rsa2048: Key, rsa1024: Key) -> None:
    publish(env.zone, rsa1024, "example.net")
    review = env.run(sign(message(), rsa2048, "example.net"))
    assert [d.result for d in review.facts["dkim"]] == ["fail"]


def test_a_garbage_key_record_is_a_permerror(env: Env, rsa2048: Key) -> None:
    env.zone.records[("sel._domainkey.example.net", 16)] = [txt("v=DKIM1; k=rsa; p=!!!not base64")]
    review = env.run(sign(message(), rsa2048, "example.net"))
    assert [d.result for d in review.facts["dkim"]] == ["permerror"]


def test_a_key_record_over_4k_is_a_permerror(env: Env, rsa2048: Key) -> None:
    env.zone.records[("sel._domainkey.example.net", 16)] = [txt(rsa2048.record + "; n=" + "x" * 5000)]
    review = env.run(sign(message(), rsa2048, "example.net"))
    (result,) = review.facts["dkim"]
    assert (result.result, result.reason) == ("permerror", "key record too large")
    assert review.verdict.action is Action.ACCEPT


def test_only_the_first_n_of_50_signatures_are_evaluated(env: Env, ed25519: Key) -> None:
    env.settings = dataclasses.replace(env.settings, dkim_max_signatures=3)
    signed = message()
    for i in range(50):
        publish(env.zone, ed25519, f"d{i}.example")
        signed = sign(signed, ed25519, f"d{i}.example")
    review = env.run(signed)
    # the topmost three (the last added), each with its own result
    assert [(d.domain, d.result) for d in review.facts["dkim"]] == [
        ("d49.example", "pass"), ("d48.example", "pass"), ("d47.example", "pass")]
    assert unfolded(review).count("dkim=") == 3
    assert any("47 more not evaluated" in n for n in review.notes)
    asked = {name for name, _t in env.zone.asked if "_domainkey" in name}
    assert asked == {"sel._domainkey.d49.example", "sel._domainkey.d48.example",
                     "sel._domainkey.d47.example"}


def test_a_broken_signature_field_is_a_permerror(env: Env) -> None:
    msg = message(extra="DKIM-Signature: v=1; a=rsa-sha256; d=example.net; this is not a tag list\r\n")
    review = env.run(msg)
    (result,) = review.facts["dkim"]
    assert result.result == "permerror"


def test_an_unsigned_message_is_dkim_none_and_is_not_read(env: Env) -> None:
    reads: list[int] = []
    msg = message()

    def source() -> bytes:
        reads.append(1)
        return msg

    review = env.run(msg, source=source)
    assert review.facts["dkim"] == [] and "dkim=none;" in unfolded(review)
    assert reads == []  # no DKIM-Signature or ARC-Seal in the header section
    signed = message(extra="DKIM-Signature: v=1; a=rsa-sha256; d=x.example; s=s; h=from; bh=; b=\r\n")
    env.run(signed, source=lambda: reads.append(1) or signed)
    assert reads == [1]
