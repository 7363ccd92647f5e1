# -*- test-case-name: tests.test_operator_faults -*-
"""Acceptance: faults an operator meets stop `twistd xmail` with one line
naming the listener, key or path, and exit status 1 -- with one process
and with workers (issue 14, issue 16).  Real twistd subprocesses."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import LISTENERS, twistd_argv
from tests.support.daemon import write_config as support_write_config
from xmail.tls import _self_signed

pytestmark = pytest.mark.timeout(120)


def write_config(tmp_path: Path, workers: int, *, listen: dict[str, str] | None = None,
                 data_dir: Path | None = None, tls: str = "") -> Path:
    """Every listener on a free loopback port unless `listen` names one; not
    checked, the daemon must find the faults itself."""
    path = tmp_path / "xmail.toml"
    support_write_config(path, data_dir or tmp_path / "data", LISTENERS, tls, workers, listen,
                         hostname="mail.test.example", check=False)
    return path


def run_twistd(tmp_path: Path, config: Path, timeout: float = 90) -> tuple[int, str]:
    out = subprocess.run([*twistd_argv(), "-n", "--pidfile=", "xmail", "--config", str(config)], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return out.returncode, out.stdout


def assert_one_line(output: str, expected: str) -> None:
    assert "Traceback" not in output, output
    hits = [line for line in output.splitlines() if expected in line]
    assert len(hits) == 1, output
    assert f"xmail: {expected}" in hits[0], output


@pytest.fixture
def busy_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_stops_the_daemon_naming_the_listener(tmp_path, busy_port, workers):
    description = f"tcp:{busy_port}:interface=127.0.0.1"
    config = write_config(tmp_path, workers, listen={"imap": description})
    code, output = run_twistd(tmp_path, config)
    assert code == 1, output
    assert_one_line(output, f"listener imap: cannot listen on {description}: address already in use")


@pytest.mark.parametrize("workers", [1, 2])
def test_an_unknown_endpoint_type_stops_the_daemon_naming_the_listener(tmp_path, workers):
    config = write_config(tmp_path, workers, listen={"pop3": "tpc:2110"})
    code, output = run_twistd(tmp_path, config)
    assert code == 1, output
    assert_one_line(output, "listener pop3: cannot use 'tpc:2110': Unknown endpoint type: 'tpc'")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_data_dir_that_cannot_be_created_stops_the_daemon_naming_it(tmp_path, workers):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    data = blocker / "data"
    code, output = run_twistd(tmp_path, write_config(tmp_path, workers, data_dir=data))
    assert code == 1, output
    assert_one_line(output, f"[server] data_dir {data}: cannot be created, {blocker} is not a directory")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_missing_certificate_stops_the_daemon_naming_the_key_and_file(tmp_path, workers):
    missing = tmp_path / "missing.pem"
    config = write_config(tmp_path, workers, tls=f'[tls]\ncert = "{missing}"\nkey = "{missing}"\n')
    code, output = run_twistd(tmp_path, config)
    assert code == 1, output
    assert_one_line(output, f"[tls] cert {missing}: No such file or directory")
    assert not (tmp_path / "data" / "run" / "workers.json").exists()  # no worker was started


@pytest.mark.parametrize("workers", [1, 2])
def test_an_unreadable_key_stops_the_daemon_naming_the_key_and_file(tmp_path, workers):
    # A file that cannot be read (tests run as root, so a directory stands
    # for the mode-0600 file of another user).
    cert_pem, _ = _self_signed("mail.test.example")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    unreadable = tmp_path / "key.pem"
    unreadable.mkdir()
    config = write_config(tmp_path, workers,
                          tls=f'[tls]\ncert = "{tmp_path / "cert.pem"}"\nkey = "{unreadable}"\n')
    code, output = run_twistd(tmp_path, config)
    assert code == 1, output
    assert_one_line(output, f"[tls] key {unreadable}: Is a directory")
    assert not (tmp_path / "data" / "run" / "workers.json").exists()  # no worker was started


@pytest.mark.parametrize("workers", [1, 2])
def test_a_certificate_that_is_not_pem_stops_the_daemon(tmp_path, workers):
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    config = write_config(tmp_path, workers, tls=f'[tls]\ncert = "{cert}"\n')
    code, output = run_twistd(tmp_path, config)
    assert code == 1, output
    assert_one_line(output, f"[tls] cert {cert}: no PEM certificate in the file")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_key_that_does_not_match_the_certificate_stops_the_daemon(tmp_path, workers):
    # Both files parse (the check before the start passes); the key is of
    # another certificate, so every start fails the same way: with workers
    # the second failed start of a worker stops the daemon.
    cert_pem, _ = _self_signed("mail.test.example")
    _, other_key = _self_signed("other.test.example")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(other_key)
    config = write_config(tmp_path, workers,
                          tls=f'[tls]\ncert = "{tmp_path / "cert.pem"}"\nkey = "{tmp_path / "key.pem"}"\n')
    code, output = run_twistd(tmp_path, config)
    assert code == 1, output
    expected = "[tls] cannot use the certificate: key values mismatch"
    assert "Traceback" not in output, output
    if workers == 1:
        assert_one_line(output, expected)
    else:
        # Restarted once after "cannot start: ...", then the daemon stops.
        stops = [line for line in output.splitlines() if f"cannot start: {expected}" in line
                 and "xmail: worker " in line]
        assert len(stops) == 1, output
        number = stops[0].split("xmail: worker ")[1].split()[0]
        assert output.count(f"worker {number}: cannot start: {expected}") == 2, output
