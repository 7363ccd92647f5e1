# -*- test-case-name: tests.test_operator_faults -*-
"""What an operator can get wrong, checked before the daemon forks anything.

`twistd xmail` (and tac/xmail.tac) call `preflight(settings)` while
building the service: before twistd daemonizes, before the supervisor binds
or starts a worker.  Each fault becomes one StartupError whose message is
the one line an operator needs -- the listener, key or path and what is
wrong -- and twistd exits 1 with it (issue 16).  Without the check a missing
certificate made every worker die at start and be restarted forever while
the supervisor held the ports, and a port in use or an unknown endpoint type
ended in a 30-line traceback (or, with one process, a server without
sockets).

The same faults can still appear later (a file removed after the check, a
port taken in between, a service user that cannot read what root could):
the places that meet them raise StartupError too (xmail.service,
xmail.workers.supervisor), and a worker that fails at start the same way
twice stops the daemon.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from typing import Any

from twisted.internet import endpoints

from xmail.config import Settings


class StartupError(Exception):
    """The server cannot start; str() is one line naming the listener, key
    or path at fault."""


def preflight(settings: Settings, reactor: Any = None) -> None:
    """Raise StartupError for the first fault found, else return None.
    Nothing is created or kept open."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    check_data_dir(settings.data_dir)
    check_tls_files(settings)
    for name, description in listener_descriptions(settings):
        endpoint = parse_endpoint(reactor, name, description)
        probe_bind(name, description, endpoint)


def listener_descriptions(settings: Settings) -> Iterator[tuple[str, str]]:
    """(listener name, endpoint description) for every configured one."""
    from dataclasses import fields

    for f in fields(settings.listen):
        for description in getattr(settings.listen, f.name):
            yield f.name, description


def parse_endpoint(reactor: Any, name: str, description: str) -> Any:
    """The endpoint a description names, or StartupError for a typo."""
    try:
        return endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        # Twisted says "Unknown endpoint type: 'tpc'" or names the bad argument.
        raise StartupError(f"listener {name}: cannot use {description!r}: {e}") from None


def probe_bind(name: str, description: str, endpoint: Any) -> None:
    """Bind a TCP listener's address for a moment, the way the server will
    (SO_REUSEADDR), so that a port in use or a privileged port is named now
    and not as a traceback after the fork.  Port 0 and adopted descriptors
    (systemd) need no probe."""
    if not isinstance(endpoint, endpoints.TCP4ServerEndpoint | endpoints.TCP6ServerEndpoint):
        return
    port = endpoint._port
    if not port:
        return
    family = socket.AF_INET6 if isinstance(endpoint, endpoints.TCP6ServerEndpoint) else socket.AF_INET
    interface = endpoint._interface or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((interface, port))
        except OSError as e:
            raise StartupError(bind_error(name, description, e)) from None


def bind_error(name: str, description: str, error: BaseException) -> str:
    """The line for a listener that cannot bind."""
    reason = getattr(error, "strerror", None) or str(error)
    if getattr(error, "errno", None) == errno.EADDRINUSE:
        reason = "address already in use (another server on that port?)"
    elif getattr(error, "errno", None) == errno.EACCES:
        reason = "permission denied (ports below 1024 need root: twistd --uid)"
    return f"listener {name}: cannot listen on {description}: {reason}"


def check_data_dir(data_dir: str) -> None:
    """[server] data_dir must be a directory the server may write, or one
    it can create: the nearest existing ancestor must be a writable
    directory.  Nothing is created here (twistd may still run as root and
    drop privileges later)."""
    path = os.path.abspath(data_dir)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise StartupError(f"[server] data_dir {path}: not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise StartupError(f"[server] data_dir {path}: not writable")
        return
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise StartupError(f"[server] data_dir {path}: cannot be created, {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StartupError(f"[server] data_dir {path}: cannot be created, {parent} is not writable")


def check_tls_files(settings: Settings) -> None:
    """The configured certificate and key files (and [[tls.sni]] ones) can
    be read and used.  No [tls] cert: a self-signed pair is generated under
    data_dir/tls at start, nothing to check."""
    pairs = []
    if settings.tls.cert:
        pairs.append(("[tls] cert", settings.tls.cert, "[tls] key", settings.tls.key or settings.tls.cert))
    for entry in settings.tls.sni:
        pairs.append((f"[[tls.sni]] {entry.name} cert", entry.cert,
                      f"[[tls.sni]] {entry.name} key", entry.key or entry.cert))
    for cert_key, cert_path, key_key, key_path in pairs:
        check_tls_pair(cert_key, cert_path, key_key, key_path)


def check_tls_pair(cert_key: str, cert_path: str, key_key: str, key_path: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_pem = _read(cert_key, cert_path)
    key_pem = _read(key_key, key_path)
    try:
        x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise StartupError(f"{cert_key} {cert_path}: no PEM certificate in the file") from None
    try:
        serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError):
        raise StartupError(f"{key_key} {key_path}: no unencrypted PEM private key in the file") from None


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise StartupError(f"{key} {path}: {e.strerror or e}") from None


def describe(error: BaseException) -> str:
    """One line for an exception met while starting (a worker's or the
    one-process server's start): StartupError and OSError say it
    themselves; anything else names its type."""
    if isinstance(error, StartupError):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    from OpenSSL import SSL

    if isinstance(error, SSL.Error) and error.args and isinstance(error.args[0], list):
        # [('x509 certificate routines', '', 'key values mismatch')] -> the reasons
        reasons = [str(r[-1]) for r in error.args[0] if isinstance(r, tuple) and r]
        if reasons:
            return "; ".join(reasons)
    return f"{type(error).__name__}: {error}"
