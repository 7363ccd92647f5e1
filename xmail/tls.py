# -*- test-case-name: tests.test_tls -*-
"""TLS for every listener: the configured certificate, or a self-signed one.

A self-signed certificate is generated once under data_dir/tls on first start
(so `twistd -n xmail` works on a fresh machine) and reused afterwards.
"""

from __future__ import annotations

import datetime
import os
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl

from xmail.config import Settings


def ensure_certificate(settings: Settings) -> tuple[str, str]:
    """(cert_path, key_path): the configured pair, or a generated one."""
    if settings.tls.cert:
        return settings.tls.cert, settings.tls.key or settings.tls.cert
    tls_dir = settings.path("tls")
    cert_path = os.path.join(tls_dir, "cert.pem")
    key_path = os.path.join(tls_dir, "key.pem")
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    os.makedirs(tls_dir, mode=0o700, exist_ok=True)
    hostname = settings.server.hostname or socket.getfqdn()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        sans.append(x509.DNSName("localhost"))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Write to temporary names then rename: a crash never leaves half a key.
    for path, data, mode in (
        (key_path, key_pem, 0o600),
        (cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644),
    ):
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return cert_path, key_path


def server_context_factory(settings: Settings) -> ssl.CertificateOptions:
    """Options for implicit TLS listeners and STARTTLS/STLS upgrades."""
    cert_path, key_path = ensure_certificate(settings)
    with open(cert_path, "rb") as f:
        chain_pem = f.read()
    with open(key_path, "rb") as f:
        key_pem = f.read()
    certs = x509.load_pem_x509_certificates(chain_pem)
    from OpenSSL import crypto

    leaf = crypto.X509.from_cryptography(certs[0])
    extra = [crypto.X509.from_cryptography(c) for c in certs[1:]]
    pkey = crypto.PKey.from_cryptography_key(serialization.load_pem_private_key(key_pem, None))
    return ssl.CertificateOptions(
        privateKey=pkey,
        certificate=leaf,
        extraCertChain=extra,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


def client_context_factory(hostname: str, verify: bool = False) -> ssl.IOpenSSLClientConnectionCreator:
    """For outbound STARTTLS: opportunistic (no verification) unless asked."""
    if verify:
        return ssl.optionsForClientTLS(hostname)
    return ssl.CertificateOptions(method=SSL.TLS_METHOD, verify=False)
