"""ARC (RFC 8617) chain validation through the stage: chains sealed here
with dkimpy's arc_sign, keys in the loopback zone."""

from __future__ import annotations

import dkim

from tests.filter.authcheck.conftest import Env, Key, message, publish, unfolded


def seal(msg: bytes, key: Key, domain: str, results: str) -> bytes:
    """What a forwarder does: its own Authentication-Results, then an ARC set."""
    with_results = f"Authentication-Results: {domain}; {results}\r\n".encode() + msg
    fields = dkim.arc_sign(with_results, b"arc", domain.encode(), key.private, domain.encode())
    return b"".join(fields) + with_results


def test_no_arc_set_is_arc_none(env: Env) -> None:
    review = env.run(message())
    assert review.facts["arc"].result == "none"
    assert unfolded(review).endswith("arc=none")


def test_a_sealed_chain_passes(env: Env, rsa2048: Key) -> None:
    publish(env.zone, rsa2048, "relay.example", "arc")
    review = env.run(seal(message(), rsa2048, "relay.example", "spf=pass smtp.mailfrom=example.net"))
    arc = review.facts["arc"]
    assert (arc.result, arc.instances) == ("pass", 1)
    assert "; arc=pass" in unfolded(review)


def test_a_chain_of_two_hops_passes(env: Env, rsa2048: Key, rsa1024: Key) -> None:
    publish(env.zone, rsa2048, "relay.example", "arc")
    publish(env.zone, rsa1024, "list.example", "arc")
    once = seal(message(), rsa2048, "relay.example", "spf=pass smtp.mailfrom=example.net")
    twice = seal(once, rsa1024, "list.example", "arc=pass")
    review = env.run(twice)
    assert (review.facts["arc"].result, review.facts["arc"].instances) == ("pass", 2)


def test_a_body_changed_after_sealing_fails(env: Env, rsa2048: Key) -> None:
    publish(env.zone, rsa2048, "relay.example", "arc")
    sealed = seal(message(body="Pay 10 EUR.\r\n"), rsa2048, "relay.example", "spf=pass smtp.mailfrom=x")
    review = env.run(sealed.replace(b"10 EUR", b"9999 EUR"))
    assert review.facts["arc"].result == "fail"
    assert "; arc=fail" in unfolded(review)


def test_a_missing_sealer_key_fails(env: Env, rsa2048: Key) -> None:
    review = env.run(seal(message(), rsa2048, "relay.example", "spf=pass smtp.mailfrom=x"))
    assert review.facts["arc"].result == "fail"
    assert ("arc._domainkey.relay.example", 16) in env.zone.asked


def test_a_forged_arc_seal_fails(env: Env) -> None:
    forged = message(extra="ARC-Seal: i=1; a=rsa-sha256; cv=none; d=relay.example; s=arc; b=AAAA\r\n")
    review = env.run(forged)
    assert review.facts["arc"].result == "fail"
