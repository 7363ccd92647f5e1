# -*- test-case-name: tests.protocols.test_pop3_mpop -*-
"""A real POP3 client from Debian, mpop, against the running server.

mpop keeps "leave mail on the server" state by UIDL (--only-new with
--keep), exactly what Outlook and Foxmail do, so it proves that UIDLs stay
stable across restart and reindex.  It also does STLS + AUTH PLAIN from a
non-loopback source address, and pipelines its commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.conftest import PASSWORD, RunningServer
from tests.protocols.test_pop3_server import ALICE, deliver, inbox_uids, message, stored_bytes

pytestmark = pytest.mark.skipif(shutil.which("mpop") is None, reason="mpop is not installed")


def mpop(server: RunningServer, tmp: Any, *extra: str) -> subprocess.CompletedProcess:
    maildir = tmp / "maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    args = ["mpop", "--host=127.0.0.1", f"--port={server.port('pop3')}", f"--user={ALICE}",
            f"--passwordeval=echo '{PASSWORD}'", "--timeout=30", "--received-header=off",
            f"--delivery=maildir,{maildir}", f"--uidls-file={tmp / 'uidls'}", "--half-quiet",
            "--tls=off", "--auth=user", *extra]
    env = dict(os.environ, HOME=str(tmp))
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


def fetched(tmp: Any) -> list[bytes]:
    new = tmp / "maildir" / "new"
    return sorted((new / name).read_bytes() for name in os.listdir(new))


def clear(tmp: Any) -> None:
    new = tmp / "maildir" / "new"
    for name in os.listdir(new):
        (new / name).unlink()


def lf(data: bytes) -> bytes:
    """LF line endings, and a final one (POP3 always ends the last line)."""
    data = data.replace(b"\r\n", b"\n")
    return data if data.endswith(b"\n") else data + b"\n"


def test_mpop_keeps_mail_by_uidl_across_restart_and_reindex(server: RunningServer, tmp_path: Any):
    bodies = [message("plain"), message("dots", ".one\r\n..two\r\n.\r\nend\r\n"),
              b"From: bob@example.com\nSubject: bare lf\n\n.x\nlast"]
    uids = [deliver(server, body) for body in bodies]
    stored = sorted(lf(stored_bytes(server, uid)) for uid in uids)
    # mpop delivers to a Maildir with LF line endings.
    mpop(server, tmp_path, "--keep=on", "--only-new=on")  # USER/PASS, plaintext on loopback
    assert sorted(map(lf, fetched(tmp_path))) == stored
    clear(tmp_path)
    # Nothing new: mpop recognizes every message by its UIDL.
    mpop(server, tmp_path, "--keep=on", "--only-new=on")
    assert fetched(tmp_path) == []
    server.call(server.ctx.store.reindex, ALICE)
    mpop(server, tmp_path, "--keep=on", "--only-new=on")
    assert fetched(tmp_path) == []
    settings = server.settings
    server.stop()
    again = RunningServer(settings)
    try:
        mpop(again, tmp_path, "--keep=on", "--only-new=on")
        assert fetched(tmp_path) == []
        newest = deliver(again, message("newest"))
        mpop(again, tmp_path, "--keep=on", "--only-new=on")
        assert list(map(lf, fetched(tmp_path))) == [lf(stored_bytes(again, newest))]
        clear(tmp_path)
        # Without --keep mpop deletes what it fetched (QUIT-time expunge).
        mpop(again, tmp_path, "--keep=off", "--only-new=off")
        assert len(fetched(tmp_path)) == 4
        assert inbox_uids(again) == []
    finally:
        again.stop()


def test_mpop_stls_and_auth_plain_from_a_non_loopback_address(server: RunningServer, tmp_path: Any):
    uid = deliver(server, message("over tls", "secret\r\n"))
    tls = ["--source-ip=127.0.0.2", "--tls=on", "--tls-starttls=on", "--tls-certcheck=off"]
    mpop(server, tmp_path, *tls, "--auth=plain", "--keep=on")
    assert list(map(lf, fetched(tmp_path))) == [lf(stored_bytes(server, uid))]
    # Without TLS the same client is refused before it can send a password.
    maildir = tmp_path / "plain"
    args = ["mpop", "--host=127.0.0.1", f"--port={server.port('pop3')}", "--source-ip=127.0.0.2",
            f"--user={ALICE}", f"--passwordeval=echo '{PASSWORD}'", "--tls=off", "--auth=plain",
            f"--delivery=maildir,{maildir}", f"--uidls-file={tmp_path / 'uidls2'}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, HOME=str(tmp_path)))
    assert result.returncode != 0
    # CAPA offers no SASL PLAIN before TLS here, so mpop never sends the password.
    assert "does not support authentication method PLAIN" in result.stderr
    assert inbox_uids(server) == [uid]


def test_mpop_understands_every_capability(server: RunningServer, tmp_path: Any):
    args = ["mpop", "--host=127.0.0.1", f"--port={server.port('pop3')}", "--serverinfo"]
    env = dict(os.environ, HOME=str(tmp_path))
    plain = subprocess.run([*args, "--tls=off"], capture_output=True, text=True, timeout=60, env=env)
    assert plain.returncode == 0, plain.stderr
    for capability in ("IMPLEMENTATION:\n        xmail", "PIPELINING:", "TOP:", "UIDL:", "LOGIN-DELAY 0:",
                       "EXPIRE NEVER:", "STLS:", "USER PLAIN LOGIN", "RESP-CODES:", "AUTH-RESP-CODE:"):
        assert capability in plain.stdout, capability
    tls = subprocess.run([*args, "--tls=on", "--tls-starttls=on", "--tls-certcheck=off"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert tls.returncode == 0, tls.stderr
    assert "TLS session parameters" in tls.stdout and "CN=mail.example.com" in tls.stdout
