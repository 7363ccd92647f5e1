"""STARTTLS, implicit TLS and the plaintext-login rule (RFC 3501 §6.2.1,
§11.1; RFC 8314), including the STARTTLS command-injection regression."""

from __future__ import annotations

import imaplib
import ssl

from tests.conftest import PASSWORD
from tests.protocols.imap_support import Wire


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_non_loopback_client_must_use_tls(server) -> None:  # type: ignore[no-untyped-def]
    # 127.0.0.2 plays a remote client (ServerContext.is_loopback).
    with Wire(server.port("imap"), source="127.0.0.2") as w:
        assert b"LOGINDISABLED" in w.greeting and b"AUTH=PLAIN" not in w.greeting
        tagged, _ = w.expect("NO", f'LOGIN alice@example.com "{PASSWORD}"')
        assert b"[PRIVACYREQUIRED]" in tagged
        w.expect("NO", "AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHg=")
        w.ok("STARTTLS")
        w.starttls()
        [caps] = w.ok("CAPABILITY")
        assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
        w.login()
        w.ok("SELECT INBOX")


def test_loopback_exemption_can_be_switched_off(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server("[server]\nloopback_plaintext_auth = false\n")
    with Wire(server.port("imap")) as w:
        assert b"LOGINDISABLED" in w.greeting


def test_starttls_twice_and_after_login(server) -> None:  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        w.ok("STARTTLS")
        w.starttls()
        w.expect("BAD", "STARTTLS")
        w.login()
        w.expect("BAD", "STARTTLS")


def test_imaplib_starttls(server) -> None:  # type: ignore[no-untyped-def]
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    m.starttls(_tls_context())
    m.login("alice@example.com", PASSWORD)
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def test_implicit_tls(server) -> None:  # type: ignore[no-untyped-def]
    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=_tls_context())
    assert "STARTTLS" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
    m.login("alice@example.com", PASSWORD)
    assert m.list()[0] == "OK"
    m.logout()
