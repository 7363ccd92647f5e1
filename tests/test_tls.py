"""TLS: the self-signed certificate is generated once under data_dir/tls and
reused across restarts; a configured certificate is served as is.  Checked
with real handshakes against the implicit-TLS listeners."""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import ssl
import stat

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import RunningServer, make_settings
from xmail import tls
from xmail.config import TLSSettings

IMPLICIT_TLS = ("submissions", "pop3s", "imaps")


def _peer_certificate(port: int) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="mail.example.com") as conn:
            assert conn.version() in ("TLSv1.2", "TLSv1.3")
            return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True))


def _tls_port(server: RunningServer) -> int:
    # Every implicit-TLS listener exists (DESIGN.md); the first serves.
    assert set(IMPLICIT_TLS) <= set(server.service.listeners), server.service.listeners
    return server.port(IMPLICIT_TLS[0])


def _file_certificate(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def test_self_signed_certificate_is_generated_once(tmp_path):
    settings = make_settings(str(tmp_path / "data"))
    cert_path, key_path = tls.ensure_certificate(settings)
    assert cert_path == settings.path("tls", "cert.pem") and key_path == settings.path("tls", "key.pem")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    cert = _file_certificate(cert_path)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mail.example.com"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mail.example.com" in names.get_values_for_type(x509.DNSName)
    assert cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=365)
    before = (open(cert_path, "rb").read(), open(key_path, "rb").read(), os.stat(cert_path).st_mtime_ns)
    assert tls.ensure_certificate(settings) == (cert_path, key_path)
    after = (open(cert_path, "rb").read(), open(key_path, "rb").read(), os.stat(cert_path).st_mtime_ns)
    assert before == after
    assert not [name for name in os.listdir(settings.path("tls")) if name.endswith(".tmp")]


def test_the_running_server_presents_the_same_certificate_after_a_restart(tmp_path):
    settings = make_settings(str(tmp_path / "data"))
    first = RunningServer(settings)
    try:
        presented = _peer_certificate(_tls_port(first))
    finally:
        first.stop()
    on_disk = _file_certificate(settings.path("tls", "cert.pem"))
    assert presented == on_disk
    second = RunningServer(settings)
    try:
        assert _peer_certificate(_tls_port(second)) == on_disk
    finally:
        second.stop()


def _write_pair(directory, hostname: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    cert_path, key_path = str(directory / "site.pem"), str(directory / "site.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def test_a_configured_certificate_is_used_and_nothing_is_generated(tmp_path):
    cert_path, key_path = _write_pair(tmp_path, "mx.configured.example")
    settings = make_settings(str(tmp_path / "data"))
    settings = dataclasses.replace(settings, tls=TLSSettings(cert=cert_path, key=key_path))
    assert tls.ensure_certificate(settings) == (cert_path, key_path)
    server = RunningServer(settings)
    try:
        presented = _peer_certificate(_tls_port(server))
    finally:
        server.stop()
    assert presented == _file_certificate(cert_path)
    assert not os.path.exists(settings.path("tls"))


def test_certificate_options_raise_no_deprecation_warning(tmp_path):
    # pyOpenSSL warns for its own X509/PKey objects (637 warnings a suite
    # run, issue 14): the files are handed over as cryptography objects.
    import warnings

    from xmail import tls as tls_module

    cert_pem, key_pem = tls_module._self_signed("mail.test.example")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        tls_module._options(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")).getContext()
