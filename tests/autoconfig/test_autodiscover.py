"""Outlook Autodiscover: request parsing (hostile input included) and the
2006a response, parsed back and checked against the config."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmail.autoconfig.autodiscover import (
    OUTLOOK_NS,
    REQUEST_NS,
    RESPONSE_NS,
    AutodiscoverRequestError,
    error_xml,
    parse_request,
    response_xml,
)
from xmail.autoconfig.model import ClientSettings, client_settings, parse_address
from xmail.config import parse

from .conftest import PRODUCTION_TOML

A = f"{{{OUTLOOK_NS}}}"


def outlook_request(address: str, schema: str = OUTLOOK_NS) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\r\n<Autodiscover xmlns="{REQUEST_NS}">\r\n'
        f"<Request><EMailAddress>{address}</EMailAddress>\r\n"
        f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>"
    ).encode()


def protocols_of(document: bytes) -> dict[str, dict[str, str]]:
    root = ET.fromstring(document)
    assert root.tag == f"{{{RESPONSE_NS}}}Autodiscover"
    account = root.find(f"{A}Response/{A}Account")
    assert account is not None
    assert account.findtext(f"{A}AccountType") == "email"
    assert account.findtext(f"{A}Action") == "settings"
    out = {}
    for protocol in account.findall(f"{A}Protocol"):
        values = {child.tag.removeprefix(A): child.text or "" for child in protocol}
        out[values["Type"]] = values
    return out


def test_parse_request() -> None:
    assert parse_request(outlook_request("Alice@Example.com")) == ("Alice@Example.com", OUTLOOK_NS)


def test_parse_request_without_namespace_or_schema() -> None:
    body = b"<Autodiscover><Request><EMailAddress> a@example.com </EMailAddress></Request></Autodiscover>"
    assert parse_request(body) == ("a@example.com", OUTLOOK_NS)


@pytest.mark.parametrize("body", [
    b"",
    b"not xml",
    b"<Autodiscover><Request></Request></Autodiscover>",
    b"<Autodiscover><Request><EMailAddress>a@example.com</Request></Autodiscover>",
    # billion laughs: refused before any entity is defined
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    b"<Autodiscover><Request><EMailAddress>&lol2;</EMailAddress></Request></Autodiscover>",
    # XXE
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>",
    b'<!DOCTYPE a SYSTEM "http://127.0.0.1/evil.dtd"><a/>',
    b"<a>" * 100 + b"</a>" * 100,
])
def test_bad_requests_are_refused(body: bytes) -> None:
    with pytest.raises(AutodiscoverRequestError):
        parse_request(body)


@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_request_error(body: bytes) -> None:
    try:
        address, schema = parse_request(body)
    except AutodiscoverRequestError:
        return
    assert isinstance(address, str) and isinstance(schema, str)


@given(st.text(max_size=80))
def test_any_request_text_roundtrips_or_is_refused(text: str) -> None:
    body = outlook_request(text.replace("&", "&amp;").replace("<", "&lt;"))
    try:
        address, _ = parse_request(body)
    except AutodiscoverRequestError:
        return  # e.g. characters XML 1.0 cannot carry
    assert address == text.replace("\r\n", "\n").replace("\r", "\n").strip()


def test_response_matches_the_config(servers: ClientSettings) -> None:
    document = response_xml(parse_address("Alice@Example.com"), servers)
    root = ET.fromstring(document)
    user = root.find(f"{A}Response/{A}User")
    assert user.findtext(f"{A}DisplayName") == "alice@example.com"
    assert user.findtext(f"{A}AutoDiscoverSMTPAddress") == "alice@example.com"
    protocols = protocols_of(document)
    assert set(protocols) == {"IMAP", "POP3", "SMTP"}
    expected_ports = {"IMAP": 993, "POP3": 995, "SMTP": 465}
    for kind, values in protocols.items():
        assert values["Server"] == "mail.example.com"
        assert int(values["Port"]) == expected_ports[kind]
        assert values["LoginName"] == "alice@example.com"
        assert values["SSL"] == "on"
        assert values["SPA"] == "off"
        assert values["AuthRequired"] == "on"
        assert values["DomainRequired"] == "off"
        # Encryption=TLS on an implicit-TLS port makes Outlook try STARTTLS there.
        assert "Encryption" not in values


def test_starttls_only_servers_say_encryption_tls() -> None:
    toml = (PRODUCTION_TOML.replace('imaps = "tcp:993"', "imaps = []")
            .replace('submissions = "tcp:465"', "submissions = []"))
    protocols = protocols_of(response_xml(parse_address("a@example.com"), client_settings(parse(toml, "t"))))
    assert (protocols["IMAP"]["Port"], protocols["IMAP"]["Encryption"]) == ("143", "TLS")
    assert (protocols["SMTP"]["Port"], protocols["SMTP"]["Encryption"]) == ("587", "TLS")
    assert protocols["POP3"]["Port"] == "995" and "Encryption" not in protocols["POP3"]


def test_address_characters_are_escaped(servers: ClientSettings) -> None:
    address = parse_address("o'neil&co@example.com")
    document = response_xml(address, servers)
    assert b"o'neil&amp;co@example.com" in document
    assert protocols_of(document)["IMAP"]["LoginName"] == "o'neil&co@example.com"


def test_error_document() -> None:
    root = ET.fromstring(error_xml("600", "Invalid Request"))
    error = root.find(f"{{{RESPONSE_NS}}}Response/{{{RESPONSE_NS}}}Error")
    assert error.findtext(f"{{{RESPONSE_NS}}}ErrorCode") == "600"
    assert error.findtext(f"{{{RESPONSE_NS}}}Message") == "Invalid Request"
    assert error.get("Time") and error.get("Id")
