# -*- test-case-name: tests.autoconfig.test_mobileconfig -*-
"""Apple configuration profiles (iPhone, iPad, macOS Mail).

A profile holds one com.apple.mail.managed payload (Apple's "Mail"
payload reference).  Its identifiers derive from the address with uuid5,
so installing the profile twice replaces the account instead of adding a
second one.  Signed (CMS SignedData, RFC 5652) with the server's
certificate when a CA issued it, so iOS shows "Verified".
"""

from __future__ import annotations

import plistlib
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from xmail.autoconfig.model import IMAP, SMTP, Address, ClientSettings

CONTENT_TYPE = "application/x-apple-aspen-config"

# Fixed namespace for uuid5: the same address gives the same UUIDs on every
# server run and every xmail install.
PROFILE_NAMESPACE = uuid.UUID("6f1c3b0e-8a51-5d57-9a0e-3f7e1f6c2a41")


class ProfileError(ValueError):
    """No profile can be made (e.g. no IMAP or no submission listener)."""


def _reverse_dns(hostname: str) -> str:
    return ".".join(reversed(hostname.split(".")))


def profile_uuids(address: Address) -> tuple[str, str]:
    """(profile UUID, mail payload UUID), stable for an address."""
    return (
        str(uuid.uuid5(PROFILE_NAMESPACE, f"profile:{address}")).upper(),
        str(uuid.uuid5(PROFILE_NAMESPACE, f"mail:{address}")).upper(),
    )


def profile_identifiers(address: Address, settings: ClientSettings) -> tuple[str, str]:
    """(profile PayloadIdentifier, mail PayloadIdentifier): reverse-DNS of
    the server plus the UUID, so they contain nothing typed by a user."""
    profile_uuid, mail_uuid = profile_uuids(address)
    base = f"{_reverse_dns(settings.hostname)}.xmail"
    return f"{base}.profile.{profile_uuid}", f"{base}.mail.{mail_uuid}"


def profile(address: Address, settings: ClientSettings, organization: str = "") -> dict[str, object]:
    """The profile as a dict, ready for plistlib."""
    incoming = settings.preferred(IMAP)
    outgoing = settings.preferred(SMTP)
    if incoming is None or outgoing is None:
        raise ProfileError("no IMAP or no SMTP submission listener to advertise")
    profile_uuid, mail_uuid = profile_uuids(address)
    profile_id, mail_id = profile_identifiers(address, settings)
    organization = organization or address.domain
    mail_payload = {
        "EmailAccountDescription": str(address),
        "EmailAccountName": str(address),
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": str(address),
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        # iOS does STARTTLS on a cleartext port when UseSSL is set; never
        # send a password without TLS.
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": str(address),
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": str(address),
        "OutgoingPasswordSameAsIncomingPassword": True,
        "PayloadDescription": f"Mail account {address}",
        "PayloadDisplayName": str(address),
        "PayloadIdentifier": mail_id,
        "PayloadType": "com.apple.mail.managed",
        "PayloadUUID": mail_uuid,
        "PayloadVersion": 1,
        "PreventAppSheet": False,
        "PreventMove": False,
        "SMIMEEnabled": False,
        "allowMailDrop": True,
    }
    return {
        "PayloadContent": [mail_payload],
        "PayloadDescription": f"Sets up the mail account {address}",
        "PayloadDisplayName": f"Mail: {address}",
        "PayloadIdentifier": profile_id,
        "PayloadOrganization": organization,
        "PayloadRemovalDisallowed": False,
        "PayloadType": "Configuration",
        "PayloadUUID": profile_uuid,
        "PayloadVersion": 1,
    }


def profile_plist(address: Address, settings: ClientSettings, organization: str = "") -> bytes:
    """The unsigned profile: an XML plist (plistlib escapes every string)."""
    return plistlib.dumps(profile(address, settings, organization), fmt=plistlib.FMT_XML, sort_keys=True)


# --- signing ------------------------------------------------------------------


@dataclass(frozen=True)
class SigningIdentity:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]  # intermediates, leaf excluded


def is_self_signed(certificate: x509.Certificate) -> bool:
    """Issued by itself: iOS could not verify a signature made with it."""
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_signing_identity(cert_pem: bytes, key_pem: bytes) -> SigningIdentity | None:
    """The identity to sign profiles with, or None for a self-signed
    certificate (an unverifiable signature only makes iOS show a warning)."""
    certificates = x509.load_pem_x509_certificates(cert_pem)
    leaf = certificates[0]
    if is_self_signed(leaf):
        return None
    key = serialization.load_pem_private_key(key_pem, None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        # PKCS7SignatureBuilder signs with RSA and ECDSA keys only.
        return None
    return SigningIdentity(leaf, key, tuple(certificates[1:]))


def sign_profile(data: bytes, identity: SigningIdentity) -> bytes:
    """CMS SignedData (DER) with the profile embedded and the chain attached."""
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(
        identity.certificate, identity.key, hashes.SHA256()
    )
    for certificate in identity.chain:
        builder = builder.add_certificate(certificate)
    # Binary: embed the plist byte for byte (the default would rewrite LF
    # as CRLF, canonical S/MIME text).
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
