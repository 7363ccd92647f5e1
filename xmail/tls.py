# -*- test-case-name: tests.test_tls -*-
"""TLS for every listener: the configured certificate, or a self-signed one.

A self-signed certificate is generated once under data_dir/tls on first start
(so `twistd -n xmail` works on a fresh machine) and reused afterwards.
ServerTLS serves it, and replaces it without a restart on SIGHUP.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

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
    # Several workers may start on a fresh data dir at once: one generates,
    # the others wait and then use its pair (never a key of one and the
    # certificate of another).
    lock_fd = os.open(os.path.join(tls_dir, ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if not (os.path.exists(cert_path) and os.path.exists(key_path)):
            cert_pem, key_pem = _self_signed(settings.server.hostname or socket.getfqdn())
            # The key first: the certificate's presence marks a complete pair.
            _write_durably(key_path, key_pem, 0o600)
            _write_durably(cert_path, cert_pem, 0o644)
    finally:
        os.close(lock_fd)  # releases the lock
    return cert_path, key_path


def _self_signed(hostname: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for hostname (and localhost), ten years."""
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
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_durably(path: str, data: bytes, mode: int) -> None:
    """Write to a temporary name, fsync, rename: a crash never leaves half a file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def server_context_factory(settings: Settings) -> ssl.CertificateOptions:
    """Options for the [tls] certificate (ServerTLS serves them)."""
    cert_path, key_path = ensure_certificate(settings)
    return _options(cert_path, key_path)


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """The server certificate(s) of every listener and STARTTLS, replaceable
    while running: each new TLS connection takes the context current at its
    start, so `reload()` (SIGHUP) serves renewed files to new connections
    while established ones keep theirs.

    Files are read on first use or `load()`, which the service calls after
    twistd has dropped privileges: the service user must be able to read
    them, as it must for a reload.  [[tls.sni]] entries are served to
    clients that ask for their name (RFC 6066 §3 server_name); other clients
    get the [tls] certificate.
    """

    _log = Logger()

    def __init__(self, settings: Settings):
        self.settings = settings
        self._default: SSL.Context | None = None
        self._by_name: dict[str, SSL.Context] = {}
        self.loads = 0  # successful loads (tests, stats)

    def load(self) -> None:
        """Read the certificate files now; raises when they cannot be used
        (the running contexts stay as they were)."""
        default = server_context_factory(self.settings).getContext()
        by_name = {}
        for entry in self.settings.tls.sni:
            options = _options(entry.cert, entry.key or entry.cert)
            by_name[entry.name.lower().rstrip(".")] = options.getContext()
        if by_name:
            default.set_tlsext_servername_callback(self._choose)
        self._default, self._by_name = default, by_name
        self.loads += 1

    def reload(self) -> bool:
        """load(), logging instead of raising: a bad file keeps the old
        certificate in service."""
        try:
            self.load()
        except Exception as e:
            self._log.error("TLS certificate not reloaded, the old one stays: {error}", error=e)
            return False
        self._log.info("TLS certificate reloaded")
        return True

    def _choose(self, connection: SSL.Connection) -> None:
        requested = connection.get_servername()
        if not requested:
            return
        name = requested.decode("ascii", "replace").lower().rstrip(".")
        context = self._by_name.get(name)
        if context is None and "." in name:
            context = self._by_name.get("*." + name.split(".", 1)[1])
        if context is not None:
            connection.set_context(context)

    def getContext(self) -> SSL.Context:
        if self._default is None:
            self.load()
        assert self._default is not None
        return self._default

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self.getContext(), None)


def _options(cert_path: str, key_path: str) -> ssl.CertificateOptions:
    with open(cert_path, "rb") as f:
        chain_pem = f.read()
    with open(key_path, "rb") as f:
        key_pem = f.read()
    certs = x509.load_pem_x509_certificates(chain_pem)
    # cryptography objects as they are: pyOpenSSL (>= 24.3) takes them, and
    # warns (DeprecationWarning, hundreds a test run) for its own X509/PKey.
    return ssl.CertificateOptions(
        privateKey=serialization.load_pem_private_key(key_pem, None),
        certificate=certs[0],
        extraCertChain=certs[1:],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


def client_context_factory(hostname: str, verify: bool = False) -> ssl.IOpenSSLClientConnectionCreator:
    """For outbound STARTTLS: opportunistic (no verification) unless asked."""
    if verify:
        return ssl.optionsForClientTLS(hostname)
    return ssl.CertificateOptions(verify=False)


def close_notify_without_waiting(transport: Any) -> None:
    """Before loseConnection() on a TLS connection: send our close_notify
    and close TCP without waiting for the peer's, as RFC 8446 §6.1 allows
    once the session is over (nothing more is read).  Twisted's TLS layer
    otherwise waits for the client's close_notify, and clients such as
    mbsync, or a drained session's idle client, wait for our EOF first:
    both would hang.  A no-op on a connection that is not TLS."""
    try:
        handle = transport.getHandle()
    except Exception:
        return
    if isinstance(handle, SSL.Connection):
        handle.set_shutdown(handle.get_shutdown() | SSL.RECEIVED_SHUTDOWN)
