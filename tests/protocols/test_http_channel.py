"""The HTTP listener at the byte level: raw requests into the real Site on a
StringTransport (twisted's protocol-test standard), a task.Clock for time.

Request limits, routing, methods and status codes live here; the
acceptance tests (test_http_autoconfig.py) talk to a running server.
"""

from __future__ import annotations

import dataclasses
import plistlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tests.autoconfig.certs import ca_chain
from tests.autoconfig.conftest import PRODUCTION_TOML
from xmail.autoconfig.autodiscover import OUTLOOK_NS, REQUEST_NS, RESPONSE_NS
from xmail.config import parse
from xmail.context import CoreServices, ServerContext
from xmail.protocols.http.server import MAX_BODY_SIZE, HTTPFactory
from xmail.service import http_root


class HostedDomains:
    """Just IDirectory.is_local_domain, for the byte-level tests."""

    def __init__(self, *domains: str):
        self.domains = set(domains)

    def is_local_domain(self, domain: str) -> bool:
        return domain in self.domains


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool


def parse_response(raw: bytes) -> tuple[Response, bytes]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        length = int(headers["content-length"])
        body, rest = rest[:length], rest[length:]
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            chunk, rest = rest[:size], rest[size + 2:]
            if size == 0:
                break
            body += chunk
    else:
        body, rest = rest, b""
    return Response(status, headers, body, False), rest


class Client:
    def __init__(self, factory: HTTPFactory):
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def responses(self) -> list[Response]:
        raw, out = self.transport.value(), []
        while raw:
            response, raw = parse_response(raw)
            out.append(response)
        if out:
            out[-1].closed = self.transport.disconnecting
        return out


@pytest.fixture
def clock() -> task.Clock:
    return task.Clock()


@pytest.fixture
def ctx(tmp_path: Path, clock: task.Clock) -> ServerContext:
    settings = parse(PRODUCTION_TOML.replace("[server]\n", f'[server]\ndata_dir = "{tmp_path}"\n'), "t")
    return ServerContext(settings=settings, reactor=clock,
                         core=CoreServices(directory=HostedDomains("example.com", "example.cn")))


@pytest.fixture
def factory(ctx: ServerContext) -> HTTPFactory:
    factory = HTTPFactory(ctx, implicit_tls=False, root=http_root)
    factory.resource.run_in_thread = lambda f, *a: defer.maybeDeferred(f, *a)
    return factory


def request(factory: HTTPFactory, method: str, target: str, body: bytes = b"", host: str = "example.com",
            headers: dict[str, str] | None = None) -> Response:
    client = Client(factory)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    client.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    (response,) = client.responses()
    return response


def outlook_body(address: str, schema: str = OUTLOOK_NS) -> bytes:
    return (f'<Autodiscover xmlns="{REQUEST_NS}"><Request><EMailAddress>{address}</EMailAddress>'
            f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>").encode()


# --- routing and status codes ---------------------------------------------------------


@pytest.mark.parametrize("target", [
    "/mail/config-v1.1.xml",
    "/mail/config-v1.1.xml?emailaddress=alice%40example.com",
    "/.well-known/autoconfig/mail/config-v1.1.xml",
    "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.com",
])
def test_clientconfig_paths(factory: HTTPFactory, target: str) -> None:
    response = request(factory, "GET", target, host="autoconfig.example.com")
    assert response.status == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert ET.fromstring(response.body).find("emailProvider").get("id") == "example.com"


def test_clientconfig_domain_from_the_address_wins_over_host(factory: HTTPFactory) -> None:
    response = request(factory, "GET", "/mail/config-v1.1.xml?emailaddress=bob@example.cn",
                       host="autoconfig.example.com")
    assert ET.fromstring(response.body).find("emailProvider/domain").text == "example.cn"


@pytest.mark.parametrize("target, host", [
    ("/mail/config-v1.1.xml", "autoconfig.other.org"),
    ("/mail/config-v1.1.xml", "127.0.0.1:8080"),
    ("/mail/config-v1.1.xml?emailaddress=alice@other.org", "autoconfig.example.com"),
    ("/autodiscover/autodiscover.xml", "autodiscover.other.org"),
    ("/autodiscover/autodiscover.xml?email=alice@other.org", "autodiscover.example.com"),
    ("/mobileconfig?email=alice@other.org", "example.com"),
    ("/nothing-here", "example.com"),
    ("/mail/", "example.com"),
])
def test_not_hosted_or_unknown_is_404(factory: HTTPFactory, target: str, host: str) -> None:
    assert request(factory, "GET", target, host=host).status == 404


def test_clientconfig_with_an_unusable_address_falls_back_to_the_host(factory: HTTPFactory) -> None:
    # Some clients send the placeholder itself; 400 would break them.
    response = request(factory, "GET", "/mail/config-v1.1.xml?emailaddress=%25EMAILADDRESS%25",
                       host="autoconfig.example.com")
    assert response.status == 200


@pytest.mark.parametrize("method, target, allowed", [
    ("POST", "/mail/config-v1.1.xml", "GET, HEAD"),
    ("DELETE", "/autodiscover/autodiscover.xml", "GET, HEAD, POST"),
    ("PUT", "/", "GET, HEAD"),
    ("POST", "/mobileconfig", "GET, HEAD"),
])
def test_wrong_method_is_405_with_allow(factory: HTTPFactory, method: str, target: str, allowed: str) -> None:
    response = request(factory, method, target)
    assert response.status == 405 and response.headers["allow"] == allowed


def test_head_has_headers_and_no_body(factory: HTTPFactory) -> None:
    response = request(factory, "HEAD", "/mail/config-v1.1.xml")
    assert response.status == 200 and response.body == b""
    assert int(response.headers["content-length"]) > 0


def test_common_headers(factory: HTTPFactory) -> None:
    response = request(factory, "GET", "/")
    assert response.headers["server"] == "xmail"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["vary"] == "Accept-Language"


# --- Outlook ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml",
                                  "/AUTODISCOVER/AUTODISCOVER.XML"])
def test_autodiscover_post(factory: HTTPFactory, path: str) -> None:
    response = request(factory, "POST", path, outlook_body("Alice@Example.com"),
                       host="autodiscover.example.com")
    assert response.status == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(response.body)
    assert root.find(f".//{{{OUTLOOK_NS}}}AutoDiscoverSMTPAddress").text == "alice@example.com"


def test_autodiscover_mobilesync_schema_gets_error_600(factory: HTTPFactory) -> None:
    body = outlook_body("alice@example.com",
                        "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006")
    response = request(factory, "POST", "/autodiscover/autodiscover.xml", body)
    assert response.status == 200
    assert ET.fromstring(response.body).findtext(f".//{{{RESPONSE_NS}}}ErrorCode") == "600"


@pytest.mark.parametrize("body", [
    b"not xml", b"<Autodiscover/>",
    b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
])
def test_autodiscover_bad_body_is_400(factory: HTTPFactory, body: bytes) -> None:
    response = request(factory, "POST", "/autodiscover/autodiscover.xml", body)
    assert response.status == 400
    assert ET.fromstring(response.body).findtext(f".//{{{RESPONSE_NS}}}ErrorCode") == "600"
    assert b"passwd" not in response.body and b"root:" not in response.body


@pytest.mark.parametrize("address", ["a<b@example.com", "a@b@example.com", "x", "&lt;script&gt;@example.com"])
def test_autodiscover_bad_address_is_400(factory: HTTPFactory, address: str) -> None:
    response = request(factory, "POST", "/autodiscover/autodiscover.xml", outlook_body(address))
    assert response.status == 400
    assert b"<script" not in response.body


def test_autodiscover_get_without_address_answers_invalid_request(factory: HTTPFactory) -> None:
    response = request(factory, "GET", "/autodiscover/autodiscover.xml", host="autodiscover.example.com")
    assert response.status == 200
    assert ET.fromstring(response.body).findtext(f".//{{{RESPONSE_NS}}}ErrorCode") == "600"


def test_autodiscover_get_with_address_shows_the_settings(factory: HTTPFactory) -> None:
    response = request(factory, "GET", "/Autodiscover/Autodiscover.xml?email=bob@example.com")
    assert response.status == 200
    assert ET.fromstring(response.body).find(f".//{{{OUTLOOK_NS}}}LoginName").text == "bob@example.com"


# --- request body limits ------------------------------------------------------------------


def test_announced_oversized_body_is_refused_before_it_is_read(factory: HTTPFactory) -> None:
    client = Client(factory)
    client.send(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.com\r\n"
                b"Content-Length: %d\r\n\r\n" % (MAX_BODY_SIZE + 1))
    (response,) = client.responses()
    assert response.status == 413 and response.closed
    client.send(b"x" * 1000)  # whatever still arrives is dropped
    assert len(client.responses()) == 1


def test_chunked_body_growing_too_large_is_refused(factory: HTTPFactory) -> None:
    client = Client(factory)
    client.send(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.com\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 4096
    for _ in range(MAX_BODY_SIZE // len(chunk)):
        client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert client.responses() == []
    client.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
    (response,) = client.responses()
    assert response.status == 413 and response.closed


def test_body_at_the_limit_is_accepted(factory: HTTPFactory) -> None:
    body = outlook_body("alice@example.com")
    body = body + b" " * (MAX_BODY_SIZE - len(body))
    response = request(factory, "POST", "/autodiscover/autodiscover.xml", body)
    assert response.status == 200


def test_idle_connection_is_closed(factory: HTTPFactory, clock: task.Clock) -> None:
    client = Client(factory)
    client.send(b"GET / HTTP/1.1\r\n")
    clock.advance(31)
    assert client.transport.disconnecting


def test_keepalive_serves_several_requests(factory: HTTPFactory) -> None:
    client = Client(factory)
    for _ in range(3):
        client.send(b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.com\r\n\r\n")
    assert [r.status for r in client.responses()] == [200, 200, 200]


# --- Apple ---------------------------------------------------------------------------------


def test_mobileconfig_unsigned_with_the_self_signed_certificate(factory: HTTPFactory) -> None:
    response = request(factory, "GET", "/mobileconfig?email=Alice%40Example.com")
    assert response.status == 200
    assert response.headers["content-type"] == "application/x-apple-aspen-config"
    assert response.headers["content-disposition"] == 'attachment; filename="example.com.mobileconfig"'
    profile = plistlib.loads(response.body)
    assert profile["PayloadContent"][0]["EmailAddress"] == "alice@example.com"


def test_mobileconfig_signed_with_a_ca_issued_certificate(ctx: ServerContext, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs7

    _, intermediate, leaf = ca_chain()
    (tmp_path / "cert.pem").write_bytes(leaf.cert_pem() + intermediate.cert_pem())
    (tmp_path / "key.pem").write_bytes(leaf.key_pem())
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, tls=dataclasses.replace(
        ctx.settings.tls, cert=str(tmp_path / "cert.pem"), key=str(tmp_path / "key.pem"))))
    factory = HTTPFactory(ctx, implicit_tls=False, root=http_root)
    factory.resource.run_in_thread = lambda f, *a: defer.maybeDeferred(f, *a)
    response = request(factory, "GET", "/mobileconfig?email=alice@example.com")
    assert response.status == 200
    assert response.body[:1] == b"\x30"  # DER SEQUENCE: CMS, not a bare plist
    assert leaf.cert in pkcs7.load_der_pkcs7_certificates(response.body)
    assert b"<string>alice@example.com</string>" in response.body  # embedded, not detached


@pytest.mark.parametrize("target, status", [
    ("/mobileconfig", 400),
    ("/mobileconfig?email=", 400),
    ("/mobileconfig?email=not-an-address", 400),
    ("/mobileconfig?email=a%0d%0aSet-Cookie:%20x@example.com", 400),
    ("/mobileconfig?email=%ff%fe@example.com", 400),
])
def test_mobileconfig_bad_address(factory: HTTPFactory, target: str, status: int) -> None:
    response = request(factory, "GET", target)
    assert response.status == status
    assert "set-cookie" not in response.headers


# --- the page -----------------------------------------------------------------------------------


@pytest.mark.parametrize("accept, lang", [("zh-CN,zh;q=0.9", "zh-CN"), ("en-US", "en"), ("", "en")])
def test_page_language(factory: HTTPFactory, accept: str, lang: str) -> None:
    response = request(factory, "GET", "/", headers={"Accept-Language": accept} if accept else None)
    assert response.status == 200 and response.headers["content-language"] == lang
    assert f'<html lang="{lang}">'.encode() in response.body


@pytest.mark.parametrize("target, status", [
    ("/?email=alice@example.com", 200),
    ("/?email=alice@other.org", 404),
    ("/?email=%22%3E%3Cscript%3E", 400),
])
def test_page_statuses(factory: HTTPFactory, target: str, status: int) -> None:
    response = request(factory, "GET", target)
    assert response.status == status
    assert b"<script" not in response.body


def test_request_fed_byte_by_byte(factory: HTTPFactory) -> None:
    body = outlook_body("alice@example.com")
    raw = (b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    client = Client(factory)
    for i in range(len(raw)):
        client.send(raw[i:i + 1])
    (response,) = client.responses()
    assert response.status == 200
    assert ET.fromstring(response.body).find(f".//{{{OUTLOOK_NS}}}LoginName").text == "alice@example.com"


def test_head_on_the_profile_has_its_headers_only(factory: HTTPFactory) -> None:
    response = request(factory, "HEAD", "/mobileconfig?email=alice@example.com")
    assert response.status == 200 and response.body == b""
    assert response.headers["content-type"] == "application/x-apple-aspen-config"
    assert int(response.headers["content-length"]) > 1000
