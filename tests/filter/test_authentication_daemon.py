"""SPF, DMARC and DKIM end to end against a real `twistd -n xmail`, every
lookup answered by a loopback DNS server ([dns] servers).

Signing and verifying meet here: a message submitted by a hosted user is
signed by xmail's own signer (xmail/filter/dkimsign.py), then received
again on MX, where dkimpy (xmail/filter/authcheck) verifies it against the
TXT record `xmailctl dns` prints -- two independent implementations.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.names import dns

from tests.filter.daemon_support import BOB, CAROL, PASSWORD, fetch, start_daemon
from tests.support.daemon import Daemon
from tests.support.dns import Zone, serve_zone

HOST = "mail.example.com"  # the authserv-id: tests.support.daemon's host name


def txt(*strings: bytes) -> list[Any]:
    return [dns.Record_TXT(*strings)]


@pytest.fixture
def zone() -> Iterator[Zone]:
    yield from serve_zone({
        # 127.0.0.1 is the tests' client address.
        ("good.example", dns.TXT): txt(b"v=spf1 ip4:127.0.0.1 -all"),
        ("_dmarc.good.example", dns.TXT): txt(b"v=DMARC1; p=reject"),
        ("forged.example", dns.TXT): txt(b"v=spf1 ip4:192.0.2.1 -all"),
        ("_dmarc.forged.example", dns.TXT): txt(b"v=DMARC1; p=reject"),
        ("shady.example", dns.TXT): txt(b"v=spf1 ip4:192.0.2.1 -all"),
        ("_dmarc.shady.example", dns.TXT): txt(b"v=DMARC1; p=quarantine"),
    })


@pytest.fixture
def daemon(tmp_path: Any, zone: Zone) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path, f'[dns]\nservers = ["127.0.0.1:{zone.port}"]\n')
    yield daemon
    daemon.stop()


def results_field(message: bytes) -> str:
    """The one Authentication-Results field, unfolded."""
    fields = re.findall(rb"^Authentication-Results:((?:.*\r\n)(?:[ \t].*\r\n)*)", message, re.M | re.I)
    assert len(fields) == 1, message[:2000]
    return " ".join(fields[0].decode().split())


def test_spf_pass_with_dmarc_alignment_is_delivered_with_one_results_field(daemon: Daemon) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("news@good.example", [BOB],
                      b"Authentication-Results: mail.example.com; spf=pass; dmarc=pass\r\n"
                      b"From: News <news@good.example>\r\nSubject: aligned\r\n\r\nhello\r\n")
    (message,) = fetch(daemon, BOB)
    field = results_field(message)  # the forged one is gone
    assert field.startswith(f"{HOST};")
    assert "spf=pass smtp.mailfrom=news@good.example" in field
    assert "dkim=none" in field and "dmarc=pass" in field and "header.from=good.example" in field


def test_dmarc_reject_refuses_and_the_domain_may_take_it_into_junk_instead(daemon: Daemon) -> None:
    forged = b"From: Bank <alerts@forged.example>\r\nSubject: verify your account\r\n\r\nclick\r\n"
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("alerts@forged.example", [BOB], forged)
        assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (550, b"5.7.1")
    assert fetch(daemon, BOB) == []
    daemon.ctl("domain", "set", "example.com", "dmarc_reject=junk")
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        assert smtp.sendmail("alerts@forged.example", [BOB], forged) == {}
    assert fetch(daemon, BOB) == []
    (junk,) = fetch(daemon, BOB, "Junk")
    assert "spf=fail" in results_field(junk) and "dmarc=fail" in results_field(junk)


def test_dmarc_quarantine_files_into_junk(daemon: Daemon) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("x@shady.example", [BOB, CAROL], b"From: x@shady.example\r\nSubject: deal\r\n\r\nx\r\n")
    for user in (BOB, CAROL):
        assert fetch(daemon, user) == [] and len(fetch(daemon, user, "Junk")) == 1


def test_submitted_mail_is_signed_and_the_signature_verifies_on_mx(daemon: Daemon, zone: Zone) -> None:
    daemon.ctl("dkim", "add", "example.com")
    daemon.ctl("dkim", "add", "example.com", "--algorithm", "ed25519")
    # Publish what `xmailctl dns` prints, as an operator would.
    zone_text = daemon.ctl("dns", "example.com").stdout
    for name, strings in re.findall(r'^(\S+\.example\.com)\.\s+\d+ IN TXT\s+(.*)$', zone_text, re.M):
        zone.records[(name.lower(), dns.TXT)] = txt(*(s.encode() for s in re.findall(r'"([^"]*)"', strings)))
    assert ("_dmarc.example.com", dns.TXT) in zone.records
    zone.records[("example.com", dns.TXT)] = txt(b"v=spf1 ip4:127.0.0.1 -all")
    with smtplib.SMTP("127.0.0.1", daemon.ports["submission"], timeout=30) as smtp:
        smtp.login(BOB, PASSWORD)
        smtp.sendmail(BOB, [CAROL], f"From: Bob <{BOB}>\r\nTo: {CAROL}\r\nSubject: signed\r\n\r\n"
                                    "Grüße, body\r\n".encode())
    (signed,) = fetch(daemon, CAROL)
    signatures = re.findall(rb"^DKIM-Signature:.*?(?=^\S)", signed, re.M | re.S)
    assert len(signatures) == 2
    assert all(b"d=example.com" in s for s in signatures)
    assert {re.search(rb"a=([\w-]+)", s).group(1) for s in signatures} == {b"rsa-sha256", b"ed25519-sha256"}

    # The signed message arrives on MX from elsewhere: both signatures verify.
    relayed = re.sub(rb"\AReturn-Path:.*\r\n", b"", signed)
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail(BOB, [CAROL], relayed)
    field = results_field(fetch(daemon, CAROL)[-1])
    assert field.count("dkim=pass") == 2 and "header.d=example.com" in field
    assert "dmarc=pass" in field

    # A changed body breaks both.
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail(BOB, [CAROL], relayed.replace("Grüße".encode(), b"Gruesse"))
    field = results_field(fetch(daemon, CAROL)[-1])
    assert field.count("dkim=fail") == 2 and "dkim=pass" not in field


def test_hostile_headers_get_a_clear_result_and_the_connection_stays_usable(daemon: Daemon) -> None:
    signatures = "".join(f"DKIM-Signature: v=1; a=rsa-sha256; d=good.example; s=s{i}; c=relaxed/relaxed;\r\n"
                         f"\th=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hXELU=; b=AAAA\r\n"
                         for i in range(50))
    # 10,000-character fields, folded (an SMTP line stays under 1,000 octets).
    subject = "\r\n ".join(["x" * 900] * 11)
    long_field = "\r\n ".join(["a;b(c)\"d " * 90] * 12)
    hostile = (signatures + f"From: news@good.example\r\nSubject: {subject}\r\n"
               f"X-Long: {long_field}\r\n\r\nbody\r\n").encode()
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=60) as smtp:
        smtp.ehlo("evil;host(x)")
        assert smtp.sendmail("news@good.example", [BOB], hostile) == {}
        assert smtp.noop()[0] == 250
    (message,) = fetch(daemon, BOB)
    field = results_field(message)
    # At most dkim_max_signatures (5) evaluated, each failing on its body hash.
    assert field.count("dkim=fail") == 5 and field.count("dkim=") == 5
    assert "evil;" not in field
    assert "spf=pass" in field and "dmarc=" in field
    assert re.findall(r"header\.s=(\w+)", field) == ["s0", "s1", "s2", "s3", "s4"]
    assert "45 more not evaluated" in daemon.ctl("log", "mail").stdout
