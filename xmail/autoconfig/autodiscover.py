# -*- test-case-name: tests.autoconfig.test_autodiscover -*-
"""Outlook's POX Autodiscover: the request schema 2006 in, the response
schema 2006a out ([MS-OXDSCLI] §2.2.3 and §2.2.4).

Outlook reads one Protocol element per account type; for each protocol we
answer with the preferred server (implicit TLS when there is one).
"""

from __future__ import annotations

import datetime
import uuid
import xml.etree.ElementTree as ET

from xmail.autoconfig.model import IMAP, POP3, SMTP, Address, ClientSettings, ServerEndpoint
from xmail.autoconfig.xmldoc import XMLRequestError, serialize, text_by_local_name

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"

# [MS-OXDSCLI] §2.2.4.1.1.1.3.4: ErrorCode 600 "Invalid Request",
# 603 "... is not a valid address" would reveal less; we use 600 for both
# an unsupported schema (ActiveSync "mobilesync") and a bodiless GET.
INVALID_REQUEST = "600"

_TYPES = {IMAP: "IMAP", POP3: "POP3", SMTP: "SMTP"}


class AutodiscoverRequestError(ValueError):
    """The POST body is not a usable 2006 request."""


def parse_request(body: bytes) -> tuple[str, str]:
    """(EMailAddress, AcceptableResponseSchema) of a request body; the
    address is returned as sent and must still be validated."""
    try:
        values = text_by_local_name(body, frozenset({"Request", "EMailAddress", "AcceptableResponseSchema"}))
    except XMLRequestError as e:
        raise AutodiscoverRequestError(str(e)) from None
    if "EMailAddress" not in values:
        raise AutodiscoverRequestError("no EMailAddress in the request")
    return values["EMailAddress"], values.get("AcceptableResponseSchema", OUTLOOK_NS)


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _protocol(account: ET.Element, endpoint: ServerEndpoint, login: str) -> None:
    protocol = ET.SubElement(account, "Protocol")
    ET.SubElement(protocol, "Type").text = _TYPES[endpoint.protocol]
    ET.SubElement(protocol, "Server").text = endpoint.host
    ET.SubElement(protocol, "Port").text = str(endpoint.port)
    ET.SubElement(protocol, "DomainRequired").text = "off"
    ET.SubElement(protocol, "LoginName").text = login
    # SPA is NTLM; we take the password over TLS instead.
    ET.SubElement(protocol, "SPA").text = "off"
    ET.SubElement(protocol, "SSL").text = "on"
    if not endpoint.implicit_tls:
        # [MS-OXDSCLI] §2.2.4.1.1.2.2.x: Encryption overrides SSL.  Only for
        # a STARTTLS port: "TLS" on 993/465 makes Outlook try STARTTLS there.
        ET.SubElement(protocol, "Encryption").text = "TLS"
    ET.SubElement(protocol, "AuthRequired").text = "on"
    if endpoint.protocol == SMTP:
        ET.SubElement(protocol, "UsePOPAuth").text = "on"
        ET.SubElement(protocol, "SMTPLast").text = "off"


def response_xml(address: Address, settings: ClientSettings) -> bytes:
    """The 2006a settings response for a validated address."""
    root = ET.Element("Autodiscover", xmlns=RESPONSE_NS)
    response = ET.SubElement(root, "Response", xmlns=OUTLOOK_NS)
    user = ET.SubElement(response, "User")
    ET.SubElement(user, "DisplayName").text = str(address)
    ET.SubElement(user, "AutoDiscoverSMTPAddress").text = str(address)
    account = ET.SubElement(response, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    for protocol in (IMAP, POP3, SMTP):
        endpoint = settings.preferred(protocol)
        if endpoint is not None:
            _protocol(account, endpoint, str(address))
    return serialize(root)


def error_xml(code: str = INVALID_REQUEST, message: str = "Invalid Request",
              now: datetime.datetime | None = None) -> bytes:
    """An Autodiscover error response ([MS-OXDSCLI] §2.2.4.2)."""
    now = now or datetime.datetime.now(datetime.UTC)
    root = ET.Element("Autodiscover", xmlns=RESPONSE_NS)
    response = ET.SubElement(root, "Response")
    error = ET.SubElement(response, "Error", Time=now.strftime("%H:%M:%S.%f"),
                          Id=str(uuid.uuid4().int % 10**10))
    ET.SubElement(error, "ErrorCode").text = code
    ET.SubElement(error, "Message").text = message
    ET.SubElement(error, "DebugData").text = ""
    return serialize(root)
