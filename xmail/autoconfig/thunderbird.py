# -*- test-case-name: tests.autoconfig.test_thunderbird -*-
"""Thunderbird's clientConfig 1.1 document (also read by K-9, FairEmail,
Evolution and GNOME Online Accounts).

Format: https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from xmail.autoconfig.model import IMAP, POP3, SMTP, ClientSettings, ServerEndpoint
from xmail.autoconfig.xmldoc import serialize

# The client substitutes the address the user typed; the server never has to
# echo it back (one document serves the whole domain).
USERNAME_PLACEHOLDER = "%EMAILADDRESS%"

_SERVER_TYPES = {IMAP: "imap", POP3: "pop3", SMTP: "smtp"}


def _server(parent: ET.Element, tag: str, endpoint: ServerEndpoint) -> None:
    server = ET.SubElement(parent, tag, type=_SERVER_TYPES[endpoint.protocol])
    ET.SubElement(server, "hostname").text = endpoint.host
    ET.SubElement(server, "port").text = str(endpoint.port)
    # socketType: "SSL" is implicit TLS, "STARTTLS" upgrades the cleartext port.
    ET.SubElement(server, "socketType").text = endpoint.security
    # Plain password over TLS: the server stores salted hashes, so CRAM-MD5
    # and friends are impossible; TLS protects the password.
    ET.SubElement(server, "authentication").text = "password-cleartext"
    ET.SubElement(server, "username").text = USERNAME_PLACEHOLDER


def clientconfig_xml(domain: str, settings: ClientSettings) -> bytes:
    """The clientConfig document for `domain` (already validated)."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = f"{domain} mail"
    ET.SubElement(provider, "displayShortName").text = domain
    # Clients offer the incoming servers in document order: preferred first.
    for endpoint in settings.incoming:
        _server(provider, "incomingServer", endpoint)
    for endpoint in settings.outgoing:
        _server(provider, "outgoingServer", endpoint)
    return serialize(root)
