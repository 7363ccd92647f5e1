"""Test certificates: a CA, an intermediate and a server certificate it
issued, and a self-signed one (like the one xmail generates)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _issue(subject: str, key, issuer: Issued | None, ca: bool, hostname: str | None = None) -> Issued:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    if hostname:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def ca_chain(hostname: str = "mail.example.com", rsa_leaf: bool = False) -> tuple[Issued, Issued, Issued]:
    """(root CA, intermediate CA, server certificate issued by the intermediate)."""
    root = _issue("xmail test root CA", ec.generate_private_key(ec.SECP256R1()), None, True)
    intermediate = _issue("xmail test intermediate CA", ec.generate_private_key(ec.SECP256R1()), root, True)
    leaf_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_leaf
                else ec.generate_private_key(ec.SECP256R1()))
    leaf = _issue(hostname, leaf_key, intermediate, False, hostname)
    return root, intermediate, leaf


def self_signed(hostname: str = "mail.example.com") -> Issued:
    return _issue(hostname, ec.generate_private_key(ec.SECP256R1()), None, False, hostname)
