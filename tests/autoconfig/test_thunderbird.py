"""The clientConfig 1.1 document, parsed back and checked against the config."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from xmail.autoconfig.model import ClientSettings, client_settings
from xmail.autoconfig.thunderbird import clientconfig_xml
from xmail.config import parse

from .conftest import EXPECTED, PRODUCTION_TOML


def servers_of(document: bytes) -> list[dict[str, str]]:
    root = ET.fromstring(document)
    provider = root.find("emailProvider")
    assert provider is not None
    out = []
    for element in provider:
        if element.tag not in ("incomingServer", "outgoingServer"):
            continue
        out.append({"tag": element.tag, "type": element.get("type", "")}
                   | {child.tag: child.text or "" for child in element})
    return out


def test_document_shape(servers: ClientSettings) -> None:
    document = clientconfig_xml("example.com", servers)
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(document)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider.get("id") == "example.com"
    assert provider.findtext("domain") == "example.com"
    assert provider.findtext("displayName")
    assert provider.findtext("displayShortName") == "example.com"


def test_every_server_matches_the_config(servers: ClientSettings) -> None:
    found = servers_of(clientconfig_xml("example.com", servers))
    # Incoming in preference order (IMAP over TLS first), then outgoing.
    assert [(s["tag"], s["type"], int(s["port"]), s["socketType"]) for s in found] == [
        ("incomingServer", "imap", 993, "SSL"),
        ("incomingServer", "imap", 143, "STARTTLS"),
        ("incomingServer", "pop3", 995, "SSL"),
        ("incomingServer", "pop3", 110, "STARTTLS"),
        ("outgoingServer", "smtp", 465, "SSL"),
        ("outgoingServer", "smtp", 587, "STARTTLS"),
    ]
    for server in found:
        assert server["hostname"] == "mail.example.com"
        assert server["authentication"] == "password-cleartext"
        assert server["username"] == "%EMAILADDRESS%"
    assert {(s["type"], int(s["port"]), s["socketType"]) for s in found} == set(EXPECTED.values())


def test_public_overrides_appear_in_the_document() -> None:
    settings = parse(PRODUCTION_TOML + '[autoconfig.imaps]\nhost = "imap.example.net"\nport = 1993\n', "t")
    found = servers_of(clientconfig_xml("example.com", client_settings(settings)))
    assert (found[0]["hostname"], found[0]["port"]) == ("imap.example.net", "1993")
    assert all(s["hostname"] == "mail.example.com" for s in found[1:])


def test_missing_listeners_are_left_out() -> None:
    settings = parse(PRODUCTION_TOML.replace('pop3s = "tcp:995"', "pop3s = []")
                     .replace('pop3 = "tcp:110"', "pop3 = []"), "t")
    found = servers_of(clientconfig_xml("example.com", client_settings(settings)))
    assert [s["type"] for s in found] == ["imap", "imap", "smtp", "smtp"]
