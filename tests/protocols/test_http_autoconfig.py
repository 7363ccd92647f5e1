"""Acceptance: the `http` listener of a running xmail server, over real
sockets; every document parsed and checked against the server's config and
bound ports, then used as a client would use it (IMAP, POP3, SMTP logins
with exactly the advertised settings)."""

from __future__ import annotations

import http.client
import imaplib
import plistlib
import poplib
import shutil
import smtplib
import socket
import ssl
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.autoconfig.certs import ca_chain
from tests.conftest import PASSWORD, RunningServer
from xmail.autoconfig.autodiscover import OUTLOOK_NS, REQUEST_NS, RESPONSE_NS

# Listener -> (clientConfig type, socketType) it must be advertised as.
ADVERTISED = {
    "imaps": ("imap", "SSL"), "imap": ("imap", "STARTTLS"),
    "pop3s": ("pop3", "SSL"), "pop3": ("pop3", "STARTTLS"),
    "submissions": ("smtp", "SSL"), "submission": ("smtp", "STARTTLS"),
}


def expose_bound_ports(server: RunningServer) -> None:
    """The service publishes ctx.bound_ports as its listeners bind; this
    checks it holds what the listeners report."""
    assert server.ctx.bound_ports == {name: server.port(name) for name in server.service.listeners}


@pytest.fixture
def web(server: RunningServer) -> RunningServer:
    expose_bound_ports(server)
    server.ctx.directory.add_alias_domain("example.cn", "example.com")
    return server


def fetch(server: RunningServer, method: str, target: str, host: str = "example.com",
          body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=10)
    try:
        connection.request(method, target, body=body, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def clientconfig_servers(body: bytes) -> list[dict[str, str]]:
    provider = ET.fromstring(body).find("emailProvider")
    return [{"type": e.get("type", ""), "direction": e.tag} | {c.tag: c.text or "" for c in e}
            for e in provider if e.tag in ("incomingServer", "outgoingServer")]


def test_thunderbird_document_matches_config_and_bound_ports(web: RunningServer) -> None:
    for target in ("/mail/config-v1.1.xml?emailaddress=alice%40example.com",
                   "/.well-known/autoconfig/mail/config-v1.1.xml"):
        status, headers, body = fetch(web, "GET", target, host="autoconfig.example.com")
        assert status == 200 and headers["content-type"].startswith("text/xml")
        root = ET.fromstring(body)
        assert root.get("version") == "1.1"
        assert root.find("emailProvider/domain").text == "example.com"
        found = clientconfig_servers(body)
        expected = [(kind, web.port(name), security) for name, (kind, security) in ADVERTISED.items()
                    if name in web.service.listeners]
        assert [(s["type"], int(s["port"]), s["socketType"]) for s in found] == expected
        for server in found:
            assert server["hostname"] == web.settings.server.hostname == "mail.example.com"
            assert server["username"] == "%EMAILADDRESS%"
            assert server["authentication"] == "password-cleartext"


def test_alias_domain_answers_and_other_domains_do_not(web: RunningServer) -> None:
    status, _, body = fetch(web, "GET", "/mail/config-v1.1.xml", host="autoconfig.example.cn")
    assert status == 200 and ET.fromstring(body).find("emailProvider/domain").text == "example.cn"
    assert fetch(web, "GET", "/mail/config-v1.1.xml", host="autoconfig.other.org")[0] == 404
    assert fetch(web, "GET", "/mobileconfig?email=a@other.org")[0] == 404
    request = (f'<Autodiscover xmlns="{REQUEST_NS}"><Request><EMailAddress>a@other.org</EMailAddress>'
               f"</Request></Autodiscover>").encode()
    assert fetch(web, "POST", "/autodiscover/autodiscover.xml", body=request)[0] == 404


def test_outlook_autodiscover_matches_config(web: RunningServer) -> None:
    request = (f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{REQUEST_NS}"><Request>'
               f"<EMailAddress>Alice@example.com</EMailAddress><AcceptableResponseSchema>{OUTLOOK_NS}"
               f"</AcceptableResponseSchema></Request></Autodiscover>").encode()
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        status, headers, body = fetch(web, "POST", path, host="autodiscover.example.com", body=request,
                                      headers={"Content-Type": "text/xml"})
        assert status == 200
        root = ET.fromstring(body)
        assert root.tag == f"{{{RESPONSE_NS}}}Autodiscover"
        a = f"{{{OUTLOOK_NS}}}"
        assert root.find(f"{a}Response/{a}User/{a}AutoDiscoverSMTPAddress").text == "alice@example.com"
        protocols = {p.findtext(f"{a}Type"): p for p in root.iter(f"{a}Protocol")}
        implicit = {"IMAP": "imaps", "POP3": "pop3s", "SMTP": "submissions"}
        assert set(protocols) == {k for k, v in implicit.items() if v in web.service.listeners}
        for kind, protocol in protocols.items():
            assert protocol.findtext(f"{a}Server") == "mail.example.com"
            assert int(protocol.findtext(f"{a}Port")) == web.port(implicit[kind])
            assert protocol.findtext(f"{a}LoginName") == "alice@example.com"
            assert protocol.findtext(f"{a}SSL") == "on"
            assert protocol.findtext(f"{a}SPA") == "off"
            assert protocol.findtext(f"{a}AuthRequired") == "on"
            assert protocol.find(f"{a}Encryption") is None


def test_autodiscover_get_is_answered(web: RunningServer) -> None:
    status, _, body = fetch(web, "GET", "/autodiscover/autodiscover.xml", host="autodiscover.example.com")
    assert status == 200
    assert ET.fromstring(body).findtext(f".//{{{RESPONSE_NS}}}ErrorCode") == "600"


def test_mobileconfig_matches_config(web: RunningServer) -> None:
    status, headers, body = fetch(web, "GET", "/mobileconfig?email=alice@example.com")
    assert status == 200
    assert headers["content-type"] == "application/x-apple-aspen-config"
    # The fixture's certificate is the generated self-signed one: unsigned.
    profile = plistlib.loads(body)
    mail = profile["PayloadContent"][0]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["IncomingMailServerHostName"] == mail["OutgoingMailServerHostName"] == "mail.example.com"
    if "imaps" in web.service.listeners:
        assert mail["IncomingMailServerPortNumber"] == web.port("imaps")
    if "submissions" in web.service.listeners:
        assert mail["OutgoingMailServerPortNumber"] == web.port("submissions")
    assert mail["IncomingMailServerUsername"] == mail["OutgoingMailServerUsername"] == "alice@example.com"
    again = plistlib.loads(fetch(web, "GET", "/mobileconfig?email=ALICE@example.com")[2])
    assert again["PayloadUUID"] == profile["PayloadUUID"]
    assert again["PayloadContent"][0]["PayloadUUID"] == mail["PayloadUUID"]


def test_page_links_to_the_profile(web: RunningServer) -> None:
    status, headers, body = fetch(web, "GET", "/?email=alice@example.com",
                                  headers={"Accept-Language": "zh-CN"})
    assert status == 200 and headers["content-language"] == "zh-CN"
    assert b'href="/mobileconfig?email=alice@example.com"' in body
    assert "设置邮箱".encode() in body


def test_oversized_request_body_is_refused_unread(web: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", web.port("http")), timeout=10) as sock:
        sock.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.com\r\n"
                     b"Content-Length: 1048576\r\n\r\n" + b"x" * 1000)
        reply = b""
        while chunk := sock.recv(4096):  # the server closes: recv returns b""
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 ")


# --- end to end: configure a client from the Thunderbird document and log in --------------------


def _tls_context(server: RunningServer) -> ssl.SSLContext:
    """Verify the server certificate and the advertised host name, trusting
    the server's own (self-signed) certificate."""
    from xmail.tls import ensure_certificate

    return ssl.create_default_context(cafile=ensure_certificate(server.settings)[0])


def _login(entry: dict[str, str], address: str, password: str, context: ssl.SSLContext) -> None:
    host, port, security = entry["hostname"], int(entry["port"]), entry["socketType"]
    username = entry["username"].replace("%EMAILADDRESS%", address)
    assert entry["authentication"] == "password-cleartext"
    if entry["type"] == "imap":
        if security == "SSL":
            client = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=10)
        else:
            client = imaplib.IMAP4(host, port, timeout=10)
            client.starttls(ssl_context=context)
        assert client.login(username, password)[0] == "OK"
        assert client.select("INBOX")[0] == "OK"
        client.logout()
    elif entry["type"] == "pop3":
        if security == "SSL":
            client = poplib.POP3_SSL(host, port, context=context, timeout=10)
        else:
            client = poplib.POP3(host, port, timeout=10)
            client.stls(context=context)
        client.user(username)
        assert client.pass_(password).startswith(b"+OK")
        client.stat()
        client.quit()
    else:
        if security == "SSL":
            client = smtplib.SMTP_SSL(host, port, context=context, timeout=10)
        else:
            client = smtplib.SMTP(host, port, timeout=10)
            client.starttls(context=context)
        assert client.login(username, password)[0] == 235
        client.quit()


@pytest.mark.parametrize("listener", list(ADVERTISED))
def test_clients_log_in_with_exactly_the_advertised_settings(make_server: Any, listener: str) -> None:
    # The advertised host must be one the test can reach and that the
    # generated certificate names (its SANs: the hostname and localhost).
    server = make_server('[autoconfig]\nhost = "localhost"\n')
    server.add_domain("example.com")
    server.add_user("alice@example.com")
    expose_bound_ports(server)
    status, _, body = fetch(server, "GET", "/mail/config-v1.1.xml?emailaddress=alice@example.com",
                            host="autoconfig.example.com")
    assert status == 200
    kind, security = ADVERTISED[listener]
    (entry,) = [s for s in clientconfig_servers(body)
                if (s["type"], s["socketType"]) == (kind, security)]
    assert (entry["hostname"], int(entry["port"])) == ("localhost", server.port(listener))
    _login(entry, "alice@example.com", PASSWORD, _tls_context(server))
    # The same settings with a wrong password fail: the login above proved something.
    with pytest.raises((imaplib.IMAP4.error, poplib.error_proto, smtplib.SMTPAuthenticationError)):
        _login(entry, "alice@example.com", "wrong password", _tls_context(server))


# --- the profile signed with a CA-issued server certificate ------------------------------------


def test_mobileconfig_is_signed_with_a_ca_issued_certificate(make_server: Any, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    root, intermediate, leaf = ca_chain("mail.example.com")
    (tmp_path / "chain.pem").write_bytes(leaf.cert_pem() + intermediate.cert_pem())
    (tmp_path / "key.pem").write_bytes(leaf.key_pem())
    (tmp_path / "root.pem").write_bytes(root.cert_pem())
    server = make_server(f'[tls]\ncert = "{tmp_path / "chain.pem"}"\nkey = "{tmp_path / "key.pem"}"\n')
    server.add_domain("example.com")
    expose_bound_ports(server)
    status, headers, body = fetch(server, "GET", "/mobileconfig?email=alice@example.com")
    assert status == 200 and headers["content-type"] == "application/x-apple-aspen-config"
    (tmp_path / "profile.mobileconfig").write_bytes(body)
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-in", "profile.mobileconfig", "-CAfile", "root.pem",
         "-purpose", "any", "-binary", "-out", "profile.plist"],
        cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    mail = plistlib.loads((tmp_path / "profile.plist").read_bytes())["PayloadContent"][0]
    assert mail["EmailAddress"] == "alice@example.com"
    assert mail["IncomingMailServerPortNumber"] == server.port("imaps")
