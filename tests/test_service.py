"""The real service in a subprocess: `twistd -n xmail [--config FILE]`,
`twistd -ny tac/xmail.tac` with XMAIL_CONFIG; started, probed over TCP,
stopped with SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import STARTED, Daemon, twistd_argv

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, extra: str = "") -> Path:
    listen = "\n".join(
        f'{name} = ["tcp:0:interface=127.0.0.1"]'
        for name in ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http",
                     "managesieve"))
    path = tmp_path / "xmail.toml"
    path.write_text(f'[server]\nhostname = "mail.test.example"\ndata_dir = "{tmp_path / "data"}"\n'
                    f"[listen]\n{listen}\n{extra}")
    return path


@pytest.fixture
def daemons():
    """start(argv, cwd, env) -> a running Daemon of tests.support; killed after the test."""
    started: list[Daemon] = []

    def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(cwd, argv=args, env=env).spawn()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill9()


def _greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.settimeout(10)
        return conn.recv(512)


def _check_running(daemon: Daemon, data_dir: Path) -> None:
    daemon.wait_for(STARTED)
    assert (data_dir / "index").is_dir()
    assert (data_dir / "tls" / "cert.pem").is_file()
    assert (data_dir / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    ports = daemon.bound_ports()
    # Every protocol that exists has a listener on a real port.
    assert ports, daemon.output
    for name, greeting in (("smtp", b"220 "), ("pop3", b"+OK"), ("imap", b"* OK")):
        if name in ports:
            assert _greeting(ports[name]).startswith(greeting), name


def test_twistd_help_lists_the_xmail_plugin(tmp_path):
    out = subprocess.run([*twistd_argv(), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^\s+xmail\s+xmail: SMTP, POP3 and IMAP4 mail server", out.stdout, re.M), out.stdout
    helped = subprocess.run([*twistd_argv(), "xmail", "--help"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and "--config" in helped.stdout


def test_twistd_xmail_with_a_config_starts_and_stops_on_sigterm(tmp_path, daemons):
    config = _config(tmp_path)
    daemon = daemons([*twistd_argv(), "-n", "--pidfile", str(tmp_path / "twistd.pid"), "xmail",
                      "--config", str(config)], tmp_path)
    _check_running(daemon, tmp_path / "data")
    assert daemon.stop() == 0, daemon.output
    assert "Main loop terminated." in daemon.output


def test_a_second_sigterm_while_stopping_is_harmless(tmp_path, daemons):
    daemon = daemons([*twistd_argv(), "-n", "--pidfile", str(tmp_path / "twistd.pid"), "xmail",
                      "--config", str(_config(tmp_path))], tmp_path)
    daemon.wait_for(STARTED)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.stop() == 0, daemon.output
    assert "Traceback" not in daemon.output


def test_the_certificate_is_generated_once_and_reused(tmp_path, daemons):
    config = _config(tmp_path)
    args = [*twistd_argv(), "-n", "--pidfile", str(tmp_path / "twistd.pid"), "xmail", "--config", str(config)]
    first = daemons(args, tmp_path)
    first.wait_for(STARTED)
    cert = (tmp_path / "data" / "tls" / "cert.pem").read_bytes()
    key = (tmp_path / "data" / "tls" / "key.pem").read_bytes()
    assert first.stop() == 0
    second = daemons(args, tmp_path)
    second.wait_for(STARTED)
    assert (tmp_path / "data" / "tls" / "cert.pem").read_bytes() == cert
    assert (tmp_path / "data" / "tls" / "key.pem").read_bytes() == key
    assert second.stop() == 0


def test_tac_file_reads_xmail_config(tmp_path, daemons):
    config = _config(tmp_path)
    daemon = daemons([*twistd_argv(), "-ny", str(REPO / "tac" / "xmail.tac"), "--pidfile",
                      str(tmp_path / "twistd.pid")], tmp_path, {"XMAIL_CONFIG": str(config)})
    _check_running(daemon, tmp_path / "data")
    assert daemon.stop() == 0, daemon.output


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def test_twistd_xmail_without_options_runs_on_the_embedded_default(tmp_path, daemons):
    ports = [2525, 2587, 2465, 2110, 2995, 2143, 2993, 8080, 24190]
    if not _ports_free(ports):
        pytest.skip("a default port (2525, 2587, 2465, 2110, 2995, 2143, 2993, 8080, 24190) is in use")
    daemon = daemons([*twistd_argv(), "-n", "xmail"], tmp_path)
    daemon.wait_for(STARTED)
    assert (tmp_path / "xmail-data" / "tls" / "cert.pem").is_file()
    bound = daemon.bound_ports()
    assert set(bound.values()) <= set(ports)
    if "smtp" in bound:
        assert bound["smtp"] == 2525 and _greeting(2525).startswith(b"220 ")
    assert daemon.stop() == 0, daemon.output


@pytest.mark.parametrize("text, expected", [
    ("[server]\ncolour = 'blue'\n", "unknown key 'server.colour'"),
    ("[limits]\nrecycle_days = 'five'\n", "limits.recycle_days must be an integer"),
])
def test_a_config_error_stops_twistd_with_the_key_and_file(tmp_path, text, expected):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    out = subprocess.run([*twistd_argv(), "-n", "--pidfile", str(tmp_path / "twistd.pid"), "xmail",
                          "--config", str(config)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"{config}: {expected}" in out.stdout + out.stderr


def test_a_config_error_stops_the_tac_with_the_key_and_file(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[listen]\nimap = 143\n")
    out = subprocess.run([*twistd_argv(), "-ny", str(REPO / "tac" / "xmail.tac"), "--pidfile",
                          str(tmp_path / "twistd.pid")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "XMAIL_CONFIG": str(config)})
    assert out.returncode != 0
    assert f"{config}: listen.imap must be a list" in out.stdout + out.stderr
