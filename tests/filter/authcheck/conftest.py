"""Fixtures for the authentication stage: a real loopback DNS server
(tests.support.dns) serving the SPF, DKIM and DMARC records a test puts
into it, keys made here, messages signed with dkimpy, and the stage driven
through a real DeliveryPipeline on the suite's reactor thread."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from typing import Any

import dkim
import nacl.encoding
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.protocol import DatagramProtocol
from twisted.names import dns

from tests.support.dns import Zone, serve_zone
from tests.support.server import in_reactor, reactor_running
from xmail.config import DnsSettings, FilterSettings
from xmail.dns import make_resolver
from xmail.filter.authcheck import AuthenticationStage
from xmail.filter.interfaces import MX, Recipient, Review, Transaction
from xmail.filter.pipeline import DeliveryPipeline
from xmail.filter.work import FilterWork

HOST = "mx.test"
CLIENT = "192.0.2.10"  # inside example.net's SPF ip4: range


def txt(text: str | bytes) -> dns.Record_TXT:
    """A TXT record, split into 255-octet character-strings (RFC 1035 §3.3.14)."""
    raw = text.encode() if isinstance(text, str) else text
    return dns.Record_TXT(*[raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""])


@dataclasses.dataclass
class Key:
    private: bytes  # what dkim.sign takes
    record: str     # the TXT record at selector._domainkey.domain
    algorithm: bytes


def rsa_key(bits: int) -> Key:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return Key(pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(spki).decode(), b"rsa-sha256")


def ed25519_key() -> Key:
    signing = nacl.signing.SigningKey.generate()
    public = signing.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()
    return Key(signing.encode(encoder=nacl.encoding.Base64Encoder), "v=DKIM1; k=ed25519; p=" + public,
               b"ed25519-sha256")


@pytest.fixture(scope="session")
def rsa2048() -> Key:
    return rsa_key(2048)


@pytest.fixture(scope="session")
def rsa1024() -> Key:
    return rsa_key(1024)


@pytest.fixture(scope="session")
def ed25519() -> Key:
    return ed25519_key()


def message(sender: str = "alice@example.net", body: str = "Hello Bob.\r\n", extra: str = "") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: bob@example.com\r\nSubject: lunch\r\n"
            f"Message-ID: <1@example.net>\r\n{extra}\r\n{body}").encode()


def sign(msg: bytes, key: Key, domain: str, selector: str = "sel") -> bytes:
    field = dkim.sign(msg, selector.encode(), domain.encode(), key.private,
                      signature_algorithm=key.algorithm,
                      include_headers=[b"from", b"to", b"subject", b"message-id"])
    return field + msg


def publish(zone: Zone, key: Key, domain: str, selector: str = "sel") -> None:
    zone.records[(f"{selector}._domainkey.{domain}", dns.TXT)] = [txt(key.record)]


class Env:
    """A zone plus what the stage needs; `run` reviews one message."""

    def __init__(self, zone: Zone, port: int):
        self.zone = zone
        self.reactor = reactor_running()
        self.resolver = make_resolver(DnsSettings(servers=(f"127.0.0.1:{port}",)), self.reactor)
        self.work = FilterWork(self.reactor)
        self.settings = FilterSettings()

    def stage(self, **kw: Any) -> AuthenticationStage:
        return AuthenticationStage(self.resolver, self.work, kw.pop("settings", self.settings),
                                   self.reactor, **kw)

    def run(self, msg: bytes, *, mail_from: str = "alice@example.net", helo: str = "out.example.net",
            client_ip: str = CLIENT, recipients: tuple[Recipient, ...] = (
                Recipient("bob@example.com", "bob@example.com"),), source: Any = None,
            **kw: Any) -> Review:
        section = msg[:msg.index(b"\r\n\r\n") + 4] if b"\r\n\r\n" in msg else msg
        tx = Transaction(mode=MX, id="T1", client_ip=client_ip, helo=helo, mail_from=mail_from,
                         recipients=recipients, user=None, header_section=section, size=len(msg),
                         hostname=HOST, source=source or (lambda: msg))
        pipeline = DeliveryPipeline([self.stage(**kw)], self.reactor, HOST)
        return in_reactor(pipeline.review, tx)


@pytest.fixture
def env() -> Iterator[Env]:
    zone_gen = serve_zone({
        # example.net: the usual sender, SPF allows 192.0.2.0/24
        ("example.net", dns.TXT): [txt("v=spf1 ip4:192.0.2.0/24 -all")],
        ("out.example.net", dns.TXT): [txt("v=spf1 ip4:192.0.2.0/24 -all")],
    })
    zone = next(zone_gen)
    env = Env(zone, zone.port)
    yield env
    env.work.stop()
    zone_gen.close()


@pytest.fixture
def silent_env() -> Iterator[Env]:
    """A "DNS server" that reads every query and never answers."""
    reactor = reactor_running()
    port = in_reactor(reactor.listenUDP, 0, DatagramProtocol(), interface="127.0.0.1")
    env = Env(Zone({}), port.getHost().port)
    yield env
    env.work.stop()
    in_reactor(port.stopListening)


def field(review: Review) -> str:
    """The one Authentication-Results field the stage added."""
    (header,) = [h for h in review.headers if h.startswith(b"Authentication-Results:")]
    return header.decode("ascii")


def unfolded(review: Review) -> str:
    return field(review).replace("\r\n ", " ").rstrip("\r\n")
