"""Outbound DKIM signing (xmail.filter.dkimsign): what the stage signs
verifies with dkimpy (keys fetched from a real loopback DNS server) and
with libopendkim's verifier (`opendkim-testmsg`, Debian's opendkim-tools).

opendkim-testmsg has no option for a key file or a resolver: libopendkim
asks the system resolver, which reads /etc/resolv.conf and speaks to port
53 only.  So the test serves the zone on port 53 of a loopback address of
its own (127.x.y.z, the rest of 127/8 is free) and runs opendkim-testmsg
in a private mount namespace (`unshare -m`, root) where /etc/resolv.conf is
a bind mount naming that address: the host's resolv.conf is untouched.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import CannotListenError
from twisted.names import dns, server

from tests.support.dns import Zone, serve_zone
from tests.support.server import in_reactor, reactor_running
from xmail.auth.directory import Directory
from xmail.autoconfig.dnszone import txt_strings
from xmail.config import DnsSettings, Settings
from xmail.db.environment import IndexEnvironment
from xmail.dns import make_resolver
from xmail.filter.dkimkeys import ED25519, RSA, DkimKeyStore
from xmail.filter.dkimsign import (
    CHUNK,
    MAX_INSTANCES,
    DkimSignStage,
    RelaxedBodyHash,
    author_domain,
    body_hash,
    header_fields,
    relaxed_header,
)
from xmail.filter.interfaces import MX, SUBMISSION, Action, Recipient, Review, Transaction, Verdict
from xmail.filter.pipeline import DeliveryPipeline, Stage
from xmail.filter.work import FilterWork

HEADER = (b"From: Alice Example <alice@example.com>\r\n"
          b"To: bob@example.org,\r\n  carol@example.org\r\n"
          b"Subject:  Quarterly   figures \t\r\n"
          b"Date: Sun, 6 Dec 2026 03:00:00 +0000\r\n"
          b"Message-ID: <figures-1@example.com>\r\n"
          b"MIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n"
          b"X-Mailer: test\r\n"
          b"\r\n")
BODY = b"Hello  Bob, \t\r\n\r\nthe figures are  in.\r\n\r\n\r\n"
RECEIVED = (b"Received: from client (client [127.0.0.1])\r\n"
            b"\tby mail.example.com (xmail) with ESMTPSA id 1;\r\n"
            b"\tSun, 6 Dec 2026 03:00:01 +0000\r\n")


# -- the signer's canonicalization against dkimpy's -------------------------------------------

BODIES = [b"", b"\r\n", b"\r\n\r\n", b"a", b"a\r\n", b"a \t \r\n\r\n \r\n", b" a  b \r\nc\t\r\n",
          b"a\r\r\n", b"a \r", b"x\ny\r\n", b"a\r\n \r\n\tb\r\n\r\n", b"\t\r\n  x", b"a" * 10000 + b"  ",
          b" ", b"\r\n\r\n \t", b"a\r\n\r\n  \r"]


def dkimpy_body_hash(body: bytes) -> bytes:
    return hashlib.sha256(Relaxed.canonicalize_body(body)).digest()


def fed(body: bytes, size: int) -> bytes:
    digest = RelaxedBodyHash()
    for i in range(0, len(body), size):
        digest.update(body[i:i + size])
    return digest.digest()


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_relaxed_body_hash_whole_and_byte_by_byte(body: bytes) -> None:
    expected = dkimpy_body_hash(body)
    assert fed(body, max(len(body), 1)) == expected
    assert fed(body, 1) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b"a", b"b c"]), max_size=60),
       st.integers(1, 7))
def test_relaxed_body_hash_any_chunking(pieces: list[bytes], size: int) -> None:
    body = b"".join(pieces)
    assert fed(body, size) == dkimpy_body_hash(body)


@pytest.mark.parametrize("header_size", [CHUNK - 4, CHUNK - 3, CHUNK - 2, CHUNK - 1, CHUNK, CHUNK + 1])
def test_body_hash_finds_the_body_across_chunk_boundaries(header_size: int) -> None:
    filler = b"X-Filler: " + b"f" * (header_size - len(b"X-Filler: ") - 2) + b"\r\n"
    message = filler + b"\r\n" + BODY
    assert message.index(b"\r\n\r\n") == header_size - 2
    assert body_hash(io.BytesIO(message)) == dkimpy_body_hash(BODY)


def test_relaxed_header_matches_dkimpy() -> None:
    fields = header_fields(HEADER)
    assert [n for n, _ in fields] == [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version",
                                      b"content-type", b"x-mailer"]
    for _name, raw in fields:
        value = raw.partition(b":")[2] + b"\r\n"
        [(cname, cvalue)] = Relaxed.canonicalize_headers([(raw.partition(b":")[0], value)])
        assert relaxed_header(raw) == cname + b":" + cvalue


@pytest.mark.parametrize("section, domain", [
    (HEADER, "example.com"),
    (b"From: a@Example.COM, b@example.com\r\n\r\n", "example.com"),
    (b"From: a@example.com, b@example.net\r\n\r\n", None),  # two authors, two domains
    (b"From: a@example.com\r\nFrom: a@example.net\r\n\r\n", None),
    (b"To: b@example.org\r\n\r\n", None),
    (b"From: undisclosed\r\n\r\n", None),
])
def test_author_domain(section: bytes, domain: str | None) -> None:
    assert author_domain(section) == domain


# -- the stage in a real pipeline ----------------------------------------------------------------

class Signing:
    """A hosted example.com (+ alias domain example.cn), its key store and a
    pipeline whose last stage signs; `review(...)` runs a submission."""

    def __init__(self, tmp_path: Path, before: list[Any] | None = None):
        reactor = reactor_running()
        self.env = IndexEnvironment(str(tmp_path / "index"))
        self.env.open()
        self.directory = Directory(self.env, Settings())
        self.directory.add_domain("example.com")
        self.directory.add_domain("example.net")
        self.directory.add_alias_domain("example.cn", "example.com")
        self.keys = DkimKeyStore(str(tmp_path / "dkim"))
        self.work = FilterWork(reactor)
        self.stage = DkimSignStage(self.keys, self.directory.is_local_domain, self.work)
        self.pipeline = DeliveryPipeline([*(before or []), self.stage], reactor, "mail.example.com")
        self.spool = tmp_path / "spool"
        self.opened_in: list[str] = []

    def review(self, header: bytes = HEADER, body: bytes = BODY,
               mode: str = SUBMISSION) -> tuple[Review, bytes]:
        """-> (review, the message as it will be sent: prefix + spool)."""
        content = RECEIVED + header + body
        self.spool.write_bytes(content)

        def source() -> str:
            self.opened_in.append(threading.current_thread().name)
            return str(self.spool)

        tx = Transaction(mode=mode, id="T1", client_ip="127.0.0.1", helo="client",
                         mail_from="alice@example.com",
                         recipients=(Recipient("bob@example.org", None),), user="alice@example.com",
                         header_section=header, size=len(content), hostname="mail.example.com",
                         source=source)
        review = in_reactor(self.pipeline.review, tx)
        return review, review.prefix() + content

    def records(self, domain: str = "example.com") -> dict[tuple[str, int], list[Any]]:
        out: dict[tuple[str, int], list[Any]] = {}
        for s in self.keys.selectors(domain):
            strings = [part.encode() for part in txt_strings(self.keys.txt_record(domain, s.name))]
            out[(f"{s.name}._domainkey.{domain}", dns.TXT)] = [dns.Record_TXT(*strings)]
        return out

    def close(self) -> None:
        self.work.stop()
        self.env.close()


@pytest.fixture
def signing(tmp_path: Path) -> Iterator[Signing]:
    s = Signing(tmp_path)
    yield s
    s.close()


def signature_fields(message: bytes) -> list[dict[str, str]]:
    out = []
    for name, raw in header_fields(message):
        if name == b"dkim-signature":
            value = raw.partition(b":")[2].decode()
            tags = {}
            for part in value.split(";"):
                k, _, v = part.partition("=")
                tags[k.strip()] = "".join(v.split())
            out.append(tags)
    return out


def loopback_dnsfunc(zone: Zone) -> Callable[..., bytes | None]:
    """dkimpy's key lookup, answered by the loopback server through
    twisted.names (from the test thread: dkimpy's own resolver never runs)."""
    resolver = make_resolver(DnsSettings(servers=[f"127.0.0.1:{zone.port}"]), reactor_running())

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answers, _, _ = in_reactor(resolver.lookupText, name.decode().rstrip("."))
        except Exception:
            return None
        texts = [b"".join(a.payload.data) for a in answers if a.type == dns.TXT]
        return texts[0] if texts else None

    return dnsfunc


def dkimpy_verify(message: bytes, zone: Zone) -> list[bool]:
    """Each signature's result, as dkimpy finds it."""
    dnsfunc = loopback_dnsfunc(zone)
    count = len(signature_fields(message))
    results = []
    for i in range(count):
        try:
            results.append(dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc))
        except dkim.ValidationError:  # a body hash mismatch is raised, not returned
            results.append(False)
    return results


def test_signed_with_rsa_and_ed25519_verifies_with_dkimpy(signing: Signing) -> None:
    rsa_sel = signing.keys.add("example.com", RSA).name
    ed_sel = signing.keys.add("example.com", ED25519).name
    review, message = signing.review()
    assert review.verdict.action is Action.ACCEPT
    tags = signature_fields(message)
    assert [(t["a"], t["s"], t["d"], t["c"]) for t in tags] == [
        ("rsa-sha256", rsa_sel, "example.com", "relaxed/relaxed"),
        ("ed25519-sha256", ed_sel, "example.com", "relaxed/relaxed")]
    assert tags[0]["h"].split(":") == ["from", "from", "to", "subject", "date", "message-id", "mime-version",
                                       "content-type"]
    assert abs(int(tags[0]["t"]) - time.time()) < 60
    assert message.startswith(b"DKIM-Signature: ")
    assert all(len(line) <= 998 for line in message.split(b"\r\n"))  # RFC 5322 §2.1.1
    # Hashing and signing ran in the filter pool, not on the reactor.
    assert signing.opened_in and all("xmail-filter" in n for n in signing.opened_in)
    zone = next(gen := serve_zone(signing.records()))
    try:
        assert dkimpy_verify(message, zone) == [True, True]
        assert (f"{rsa_sel}._domainkey.example.com", dns.TXT) in zone.asked
        assert (f"{ed_sel}._domainkey.example.com", dns.TXT) in zone.asked
        # The verifier can fail: a changed body, and a second From above the
        # signed one (over-signing, RFC 6376 §8.15), break both signatures.
        assert dkimpy_verify(message.replace(b"figures are", b"figures were"), zone) == [False, False]
        forged = message.replace(b"From: Alice", b"From: ceo@example.com\r\nFrom: Alice", 1)
        assert dkimpy_verify(forged, zone) == [False, False]
    finally:
        gen.close()


def test_an_alias_domain_signs_with_its_own_keys(signing: Signing) -> None:
    signing.keys.add("example.cn", ED25519)
    _, message = signing.review(HEADER.replace(b"alice@example.com", b"alice@example.cn"))
    [tags] = signature_fields(message)
    assert tags["d"] == "example.cn"
    zone = next(gen := serve_zone(signing.records("example.cn")))
    try:
        assert dkimpy_verify(message, zone) == [True]
    finally:
        gen.close()


# -- opendkim-testmsg, through the system resolver ------------------------------------------------

class SystemResolverZone:
    """The zone on port 53 (UDP and TCP) of a random 127.x.y.z address, and a
    resolv.conf naming it for a private mount namespace."""

    def __init__(self, records: dict[tuple[str, int], list[Any]], tmp_path: Path):
        self.zone = Zone(records)
        factory = server.DNSServerFactory(authorities=[self.zone])
        reactor = reactor_running()
        rng = random.Random()
        for _ in range(20):
            self.address = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            try:
                self.udp = in_reactor(reactor.listenUDP, 53, dns.DNSDatagramProtocol(factory),
                                      interface=self.address)
            except CannotListenError:
                continue
            try:
                self.tcp = in_reactor(reactor.listenTCP, 53, factory, interface=self.address)
            except CannotListenError:
                in_reactor(self.udp.stopListening)
                continue
            break
        else:
            raise AssertionError("no free loopback address for port 53")
        self.resolv_conf = tmp_path / "resolv.conf"
        self.resolv_conf.write_text(f"nameserver {self.address}\noptions timeout:2 attempts:2\n")

    def opendkim_testmsg(self, message: bytes) -> subprocess.CompletedProcess[bytes]:
        # -C: keep CRLF line ends as they are (the message is CRLF already).
        script = 'mount --bind "$1" /etc/resolv.conf && exec opendkim-testmsg -C'
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                               str(self.resolv_conf)], input=message, capture_output=True, timeout=60)

    def close(self) -> None:
        in_reactor(self.udp.stopListening)
        in_reactor(self.tcp.stopListening)


@pytest.mark.parametrize("algorithm", [RSA, ED25519])
def test_opendkim_verifies_what_the_stage_signed(signing: Signing, tmp_path: Path, algorithm: str) -> None:
    selector = signing.keys.add("example.com", algorithm).name
    _, message = signing.review()
    system = SystemResolverZone(signing.records(), tmp_path)
    try:
        good = system.opendkim_testmsg(message)
        assert good.returncode == 0, good.stderr.decode()
        assert (f"{selector}._domainkey.example.com", dns.TXT) in system.zone.asked
        bad = system.opendkim_testmsg(message.replace(b"figures are", b"figures were"))
        assert bad.returncode != 0 and b"Bad signature" in bad.stderr
        # Only another selector's key published: nothing to verify with.
        system.zone.records.clear()
        system.zone.records[("other._domainkey.example.com", dns.TXT)] = [dns.Record_TXT(b"v=DKIM1; p=")]
        missing = system.opendkim_testmsg(message)
        assert missing.returncode != 0 and b"Key retrieval failed" in missing.stderr
    finally:
        system.close()


def test_opendkim_verifies_a_big_message_with_long_headers(signing: Signing, tmp_path: Path) -> None:
    signing.keys.add("example.com", RSA)
    header = HEADER.replace(b"Subject:  Quarterly", b"Subject: " + b"long " * 2000 + b"Quarterly")
    body = b"".join(b"line %d \t with  spaces\r\n" % i for i in range(50000)) + b"x" * 300000 + b"\r\n\r\n"
    _, message = signing.review(header, body)
    system = SystemResolverZone(signing.records(), tmp_path)
    try:
        result = system.opendkim_testmsg(message)
        assert result.returncode == 0, result.stderr.decode()
    finally:
        system.close()


# -- when the stage does not sign ----------------------------------------------------------------

def test_mx_mail_is_not_signed(signing: Signing) -> None:
    signing.keys.add("example.com")
    review, message = signing.review(mode=MX)
    assert signature_fields(message) == [] and signing.opened_in == []


@pytest.mark.parametrize("header, why", [
    (HEADER.replace(b"alice@example.com", b"alice@elsewhere.org"), "elsewhere.org is not hosted"),
    (b"From: a@example.com\r\nFrom: b@example.com\r\n" + HEADER, "no single From domain"),
    (HEADER.replace(b"alice@example.com", b"alice@example.net"), "example.net has no active DKIM key"),
])
def test_what_is_not_signed_and_why(signing: Signing, header: bytes, why: str) -> None:
    signing.keys.add("example.com")
    review, message = signing.review(header)
    assert signature_fields(message) == []
    assert review.verdict.action is Action.ACCEPT
    assert any(why in note for note in review.notes), review.notes


class RejectVirus(Stage):
    """A scanner's verdict on an infected message (what clamd's stage decides)."""

    name = "clamd"

    def review(self, review: Review) -> None:
        review.decide(Verdict.reject("Virus found: Eicar-Test-Signature", code=554, stage=self.name))


def test_a_rejected_message_is_never_signed(tmp_path: Path) -> None:
    signing = Signing(tmp_path, before=[RejectVirus()])
    try:
        signing.keys.add("example.com")
        review, message = signing.review()
        assert review.verdict.action is Action.REJECT and review.verdict.stage == "clamd"
        assert signature_fields(message) == [] and signing.opened_in == []
    finally:
        signing.close()


def test_a_key_added_while_running_signs_the_next_message(signing: Signing, tmp_path: Path) -> None:
    _, message = signing.review()
    assert signature_fields(message) == []
    # xmailctl's own store object, as another process would have.
    selector = DkimKeyStore(str(tmp_path / "dkim")).add("example.com", ED25519).name
    _, message = signing.review()
    assert [t["s"] for t in signature_fields(message)] == [selector]
    rotated, _ = DkimKeyStore(str(tmp_path / "dkim")).rotate("example.com", ED25519)
    _, message = signing.review()
    assert [t["s"] for t in signature_fields(message)] == [rotated.name]


def test_a_signing_failure_delivers_unsigned_and_says_why(signing: Signing, tmp_path: Path) -> None:
    selector = signing.keys.add("example.com").name
    os.unlink(tmp_path / "dkim" / "example.com" / f"{selector}.key")
    review, message = signing.review()
    assert review.verdict.action is Action.ACCEPT  # on_failure IGNORE: not lost
    assert signature_fields(message) == []
    assert any(note.startswith("dkim-sign: failed") and selector in note
               for note in review.notes), review.notes


# -- bad input ------------------------------------------------------------------------------------

def test_hostile_headers_sign_within_bounds(signing: Signing) -> None:
    signing.keys.add("example.com", RSA)
    many_to = b"".join(b"To: r%d@example.org\r\n" % i for i in range(50))
    header = b"Subject: " + b"s" * 10000 + b"\r\n" + many_to + HEADER.replace(b"Subject:", b"X-Old-Subject:")
    review, message = signing.review(header)
    [tags] = signature_fields(message)
    names = tags["h"].split(":")
    assert names.count("to") == MAX_INSTANCES and names.count("from") == 2 and names.count("subject") == 1
    field = message.split(b"\r\nReceived:")[0]
    assert all(len(line) <= 998 for line in field.split(b"\r\n"))
    zone = next(gen := serve_zone(signing.records()))
    try:
        assert dkimpy_verify(message, zone) == [True]
    finally:
        gen.close()


def test_signatures_fold_under_the_line_limit(signing: Signing) -> None:
    signing.keys.add("example.com", RSA)
    _, message = signing.review()
    field = message.split(b"\r\nReceived:")[0]
    assert re.match(rb"DKIM-Signature: v=1; a=rsa-sha256;", field)
    assert max(len(line) for line in field.split(b"\r\n")) < 400  # b= alone on its line


def test_many_empty_lines_inside_and_at_the_end() -> None:
    body = b"a\r\n" + b"\r\n" * 200000 + b"b \r\n" + b"\r\n" * 100000
    assert fed(body, CHUNK) == dkimpy_body_hash(body)
    assert fed(body, 1000) == dkimpy_body_hash(body)
