"""mbsync (Debian isync) syncs a folder tree both ways with the real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.protocols.imap_support import Wire, deliver, message

pytestmark = pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")


def _config(tmp: Path, port: int, tls: str) -> Path:
    local = tmp / "mail"
    local.mkdir(exist_ok=True)
    cfg = tmp / "mbsyncrc"
    cfg.write_text(f"""
IMAPAccount xmail
Host 127.0.0.1
Port {port}
User alice@example.com
Pass "{PASSWORD}"
SSLType {tls}
CertificateFile /etc/ssl/certs/ca-certificates.crt
AuthMechs PLAIN
Timeout 20

IMAPStore xmail-remote
Account xmail

MaildirStore xmail-local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel xmail
Far :xmail-remote:
Near :xmail-local:
Patterns *
Create Both
Remove Both
Expunge Both
CopyArrivalDate yes
SyncState *
""")
    return cfg


def _run(cfg: Path) -> None:
    result = subprocess.run(["mbsync", "-c", str(cfg), "-a"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") for p in (folder / sub).glob("*"))


def test_mbsync_both_ways(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("inbox one"))
    deliver(server, "alice@example.com", message("inbox two"), flags=("\\Seen",))
    with Wire(server.port("imap")) as w:
        w.login()
        w.ok("CREATE Projects/Alpha")
    deliver(server, "alice@example.com", message("alpha"), folder="Projects/Alpha")

    cfg = _config(tmp_path, server.port("imap"), "None")
    _run(cfg)
    local = tmp_path / "mail"
    assert len(_files(local / "INBOX")) == 2
    assert len(_files(local / "Projects" / "Alpha")) == 1
    assert (local / "Sent").is_dir() and (local / "Trash").is_dir()
    seen = [p for p in _files(local / "INBOX") if p.name.endswith(",S")]
    assert len(seen) == 1

    # Local changes: a new folder with a message, a flag change, a deletion.
    notes = local / "Notes"
    for sub in ("cur", "new", "tmp"):
        (notes / sub).mkdir(parents=True)
    (notes / "new" / f"{int(time.time())}.1.local").write_bytes(message("from mbsync"))
    unseen = [p for p in _files(local / "INBOX") if not p.name.endswith(",S")][0]
    unseen.rename(unseen.parent.parent / "cur" / (unseen.name.split(":")[0] + ":2,FS"))
    _run(cfg)

    with Wire(server.port("imap")) as w:
        w.login()
        assert b"(MESSAGES 1)" in w.ok("STATUS Notes (MESSAGES)")[0]
        w.ok("SELECT INBOX")
        flags = w.ok("FETCH 1:* FLAGS")
        assert sorted(flags) == [b"* 1 FETCH (FLAGS (\\Flagged \\Seen))", b"* 2 FETCH (FLAGS (\\Seen))"]
        # A server-side change flows back too.
        w.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        w.ok("EXPUNGE")
    _run(cfg)
    assert len(_files(local / "INBOX")) == 1
    assert os.path.isdir(local / "Notes")


def test_mbsync_over_starttls(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("tls"))
    cfg = _config(tmp_path, server.port("imap"), "STARTTLS")
    text = cfg.read_text().replace("CertificateFile /etc/ssl/certs/ca-certificates.crt\n", "")
    # isync 1.4 has no switch to skip verification; trust the test certificate.
    cert = Path(server.settings.path("tls"))
    pems = sorted(cert.glob("*.pem")) if cert.is_dir() else []
    certs = [p for p in pems if "key" not in p.name]
    assert certs, f"no generated certificate in {cert}"
    text = text.replace("AuthMechs PLAIN", f"AuthMechs PLAIN\nCertificateFile {certs[0]}")
    cfg.write_text(text)
    result = subprocess.run(["mbsync", "-c", str(cfg), "-a"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(_files(tmp_path / "mail" / "INBOX")) == 1
