"""SIGHUP reloads the TLS certificate without a restart; [[tls.sni]] names.

The SIGHUP test runs the real daemon (`twistd --nodaemon xmail --config`) in
a subprocess: it replaces the certificate files, sends SIGHUP, and checks
that new connections (implicit TLS and STARTTLS) get the new certificate
while a connection opened before keeps working.
"""

from __future__ import annotations

import datetime
import imaplib
import os
import signal
import socket
import ssl
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.daemon import LISTENERS, Daemon
from tests.support.daemon import write_config as support_write_config
from xmail import tls
from xmail.config import parse


def make_certificate(directory: str, name: str, stem: str | None = None) -> tuple[str, str]:
    """A self-signed certificate for `name`: (cert_path, key_path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    stem = stem or name
    cert_path = os.path.join(directory, f"{stem}.crt")
    key_path = os.path.join(directory, f"{stem}.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _common_name(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def served_name(port: int, server_name: str = "mail.example.com") -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with _client_context().wrap_socket(raw, server_hostname=server_name) as conn:
            return _common_name(conn.getpeercert(binary_form=True))


def start_daemon(config_path: str, **kw: Any) -> Daemon:
    """The suite's daemon (tests.support.daemon) on a config written by
    write_config, spawned; its ports are read with daemon.port(name)."""
    return Daemon(os.path.dirname(config_path), config=config_path, **kw).spawn()


def write_config(path: str, data_dir: str, body: str, **listen: str) -> None:
    """Every listener on a free loopback port, `listen` overriding some;
    body appended ([tls] ...)."""
    support_write_config(path, data_dir, LISTENERS, body, listen=listen)


def test_sighup_reloads_the_certificate_for_new_connections_only(tmp_path):
    certs = str(tmp_path)
    cert_path, key_path = make_certificate(certs, "old.example", "served")
    config = str(tmp_path / "xmail.toml")
    write_config(config, str(tmp_path / "data"), f'[tls]\ncert = "{cert_path}"\nkey = "{key_path}"\n')
    daemon = start_daemon(config)
    try:
        imaps = daemon.port("imaps")
        imap = daemon.port("imap")
        assert served_name(imaps) == "old.example"

        # a session opened before the reload
        before = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=_client_context(), timeout=10)
        assert _common_name(before.sock.getpeercert(binary_form=True)) == "old.example"

        # certbot-style: new files renamed into place, then SIGHUP
        new_cert, new_key = make_certificate(certs, "new.example")
        os.replace(new_key, key_path)
        os.replace(new_cert, cert_path)
        assert served_name(imaps) == "old.example"  # nothing happens before the signal
        mark = len(daemon.lines)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("TLS certificate reloaded", start=mark)

        assert served_name(imaps) == "new.example"
        with imaplib.IMAP4("127.0.0.1", imap, timeout=10) as starttls:
            starttls.starttls(ssl_context=_client_context())
            assert _common_name(starttls.sock.getpeercert(binary_form=True)) == "new.example"
        # the old session is still up, on its old certificate
        assert before.noop()[0] == "OK"
        assert _common_name(before.sock.getpeercert(binary_form=True)) == "old.example"
        before.logout()

        # broken files: logged, the running certificate stays
        with open(cert_path, "w") as f:
            f.write("not a certificate\n")
        mark = len(daemon.lines)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("TLS certificate not reloaded", start=mark)
        assert served_name(imaps) == "new.example"
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0


def test_sni_names_get_their_own_certificate(tmp_path, make_server):
    main_cert, main_key = make_certificate(str(tmp_path), "mail.example.com")
    other_cert, other_key = make_certificate(str(tmp_path), "mail.other.com")
    wild_cert, wild_key = make_certificate(str(tmp_path), "wild.example.net")
    server = make_server(
        f'[tls]\ncert = "{main_cert}"\nkey = "{main_key}"\n'
        f'[[tls.sni]]\nname = "mail.other.com"\ncert = "{other_cert}"\nkey = "{other_key}"\n'
        f'[[tls.sni]]\nname = "*.example.net"\ncert = "{wild_cert}"\nkey = "{wild_key}"\n')
    port = server.port("imaps")
    assert served_name(port, "mail.other.com") == "mail.other.com"
    assert served_name(port, "MAIL.OTHER.COM") == "mail.other.com"
    assert served_name(port, "imap.example.net") == "wild.example.net"
    assert served_name(port, "mail.example.com") == "mail.example.com"
    assert served_name(port, "unknown.example.org") == "mail.example.com"


def test_reload_in_process_and_failed_reload_keeps_serving(tmp_path, make_server):
    cert_path, key_path = make_certificate(str(tmp_path), "first.example", "served")
    server = make_server(f'[tls]\ncert = "{cert_path}"\nkey = "{key_path}"\n')
    port = server.port("submissions")
    assert served_name(port) == "first.example"
    new_cert, new_key = make_certificate(str(tmp_path), "second.example")
    os.replace(new_key, key_path)
    os.replace(new_cert, cert_path)
    assert server.call(server.service.reload_tls) is True
    assert served_name(port) == "second.example"
    os.unlink(key_path)
    assert server.call(server.service.reload_tls) is False
    assert served_name(port) == "second.example"


def test_server_tls_reads_files_lazily(tmp_path):
    from tests.conftest import make_settings

    settings = make_settings(str(tmp_path / "data"))
    server_tls = tls.ServerTLS(settings)
    assert not os.path.exists(settings.path("tls"))  # nothing read or generated yet
    context = server_tls.getContext()
    assert context is server_tls.getContext() and server_tls.loads == 1
    assert os.path.exists(settings.path("tls", "key.pem"))


@pytest.mark.parametrize("bad", ["missing", "garbage"])
def test_load_raises_on_bad_files(tmp_path, bad):
    cert_path = str(tmp_path / "cert.pem")
    if bad == "garbage":
        with open(cert_path, "w") as f:
            f.write("garbage")
    settings = parse(f'[tls]\ncert = "{cert_path}"\n', "<test>")
    with pytest.raises(Exception):  # noqa: B017 - OSError or ValueError, both refuse
        tls.ServerTLS(settings).load()
