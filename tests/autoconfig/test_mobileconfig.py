"""The Apple profile, parsed back with plistlib; and its CMS signature,
verified by OpenSSL against a CA made in the test."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs7

from xmail.autoconfig.mobileconfig import (
    ProfileError,
    is_self_signed,
    load_signing_identity,
    profile_plist,
    sign_profile,
)
from xmail.autoconfig.model import ClientSettings, client_settings, parse_address
from xmail.config import parse

from .certs import ca_chain, self_signed
from .conftest import PRODUCTION_TOML


def mail_payload(data: bytes) -> dict:
    top = plistlib.loads(data)
    assert len(top["PayloadContent"]) == 1
    return top["PayloadContent"][0]


def test_profile_matches_the_config(servers: ClientSettings) -> None:
    data = profile_plist(parse_address("Alice@Example.com"), servers)
    top = plistlib.loads(data)
    assert top["PayloadType"] == "Configuration"
    assert top["PayloadVersion"] == 1
    assert top["PayloadOrganization"] == "example.com"
    assert top["PayloadRemovalDisallowed"] is False
    mail = mail_payload(data)
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["PayloadVersion"] == 1
    assert mail["EmailAccountType"] == "EmailTypeIMAP"
    assert mail["EmailAddress"] == "alice@example.com"
    assert mail["EmailAccountDescription"] == "alice@example.com"
    assert mail["IncomingMailServerHostName"] == "mail.example.com"
    assert mail["IncomingMailServerPortNumber"] == 993
    assert mail["IncomingMailServerUseSSL"] is True
    assert mail["IncomingMailServerAuthentication"] == "EmailAuthPassword"
    assert mail["IncomingMailServerUsername"] == "alice@example.com"
    assert mail["OutgoingMailServerHostName"] == "mail.example.com"
    assert mail["OutgoingMailServerPortNumber"] == 465
    assert mail["OutgoingMailServerUseSSL"] is True
    assert mail["OutgoingMailServerAuthentication"] == "EmailAuthPassword"
    assert mail["OutgoingMailServerUsername"] == "alice@example.com"
    assert mail["OutgoingPasswordSameAsIncomingPassword"] is True


def test_identifiers_are_stable_per_address_and_distinct(servers: ClientSettings) -> None:
    def ids(address: str) -> tuple[str, str, str, str]:
        top = plistlib.loads(profile_plist(parse_address(address), servers))
        mail = top["PayloadContent"][0]
        return top["PayloadIdentifier"], top["PayloadUUID"], mail["PayloadIdentifier"], mail["PayloadUUID"]

    alice = ids("alice@example.com")
    assert ids("Alice@EXAMPLE.com") == alice  # installing again replaces the account
    bob = ids("bob@example.com")
    assert not set(alice) & set(bob)
    assert len(set(alice)) == 4
    for value in (alice[1], alice[3]):
        assert uuid.UUID(value).version == 5 and value == value.upper()
    assert alice[0].startswith("com.example.mail.xmail.profile.")
    assert alice[2].startswith("com.example.mail.xmail.mail.")
    # Identifiers hold nothing typed by the user.
    assert "alice" not in alice[0] + alice[2]


def test_starttls_only_still_requires_tls() -> None:
    toml = PRODUCTION_TOML.replace('imaps = "tcp:993"', "imaps = []").replace('submissions = "tcp:465"',
                                                                            "submissions = []")
    mail = mail_payload(profile_plist(parse_address("a@example.com"), client_settings(parse(toml, "t"))))
    assert (mail["IncomingMailServerPortNumber"], mail["IncomingMailServerUseSSL"]) == (143, True)
    assert (mail["OutgoingMailServerPortNumber"], mail["OutgoingMailServerUseSSL"]) == (587, True)


def test_no_imap_means_no_profile() -> None:
    toml = PRODUCTION_TOML.replace('imaps = "tcp:993"', "imaps = []").replace('imap = "tcp:143"', "imap = []")
    with pytest.raises(ProfileError):
        profile_plist(parse_address("a@example.com"), client_settings(parse(toml, "t")))


def test_address_characters_are_escaped(servers: ClientSettings) -> None:
    data = profile_plist(parse_address("o'neil&co@example.com"), servers)
    assert b"o'neil&amp;co@example.com" in data
    assert mail_payload(data)["EmailAddress"] == "o'neil&co@example.com"


def test_self_signed_certificate_is_not_used_for_signing() -> None:
    own = self_signed()
    assert is_self_signed(own.cert)
    assert load_signing_identity(own.cert_pem(), own.key_pem()) is None


def test_ca_issued_certificate_is_used_for_signing() -> None:
    root, intermediate, leaf = ca_chain()
    assert not is_self_signed(leaf.cert)
    identity = load_signing_identity(leaf.cert_pem() + intermediate.cert_pem(), leaf.key_pem())
    assert identity is not None
    assert identity.certificate == leaf.cert and identity.chain == (intermediate.cert,)


@pytest.mark.parametrize("rsa_leaf", [False, True], ids=["ecdsa", "rsa"])
def test_signed_profile_verifies_against_the_ca(tmp_path: Path, servers: ClientSettings,
                                                rsa_leaf: bool) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    root, intermediate, leaf = ca_chain(rsa_leaf=rsa_leaf)
    identity = load_signing_identity(leaf.cert_pem() + intermediate.cert_pem(), leaf.key_pem())
    data = profile_plist(parse_address("alice@example.com"), servers)
    signed = sign_profile(data, identity)
    # The chain travels inside the signature, so iOS can build it.
    assert set(pkcs7.load_der_pkcs7_certificates(signed)) == {leaf.cert, intermediate.cert}
    (tmp_path / "profile.p7").write_bytes(signed)
    (tmp_path / "ca.pem").write_bytes(root.cert_pem())
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-in", "profile.p7", "-CAfile", "ca.pem",
         "-purpose", "any", "-binary", "-out", "content.plist"],
        cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    content = (tmp_path / "content.plist").read_bytes()
    assert content == data
    assert mail_payload(content)["EmailAddress"] == "alice@example.com"
    # And a different root does not verify it: the check above can fail.
    other_root, _, _ = ca_chain()
    (tmp_path / "other.pem").write_bytes(other_root.cert_pem())
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-in", "profile.p7", "-CAfile", "other.pem",
         "-purpose", "any", "-out", "/dev/null"],
        cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode != 0
