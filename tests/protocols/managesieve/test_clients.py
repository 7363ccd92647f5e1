# -*- test-case-name: tests.protocols.managesieve.test_clients -*-
"""Real ManageSieve clients against the real service: the Python
`managesieve` library and Debian's `sieve-connect` (Perl; it negotiates
STARTTLS whenever the server offers it).  Scripts are checked by the real
engine (ISieveScripts.check in the factory's thread pool)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import managesieve

from tests.conftest import PASSWORD, RunningServer
from tests.protocols.managesieve.support import ALICE
from xmail.sieve.interfaces import MAX_SCRIPT_SIZE

GOOD = 'require ["fileinto"];\r\nif header :contains "subject" "report" {\r\n  fileinto "Reports";\r\n}\r\n'
# The error is on line 3: an unknown command.
BAD = 'require ["fileinto"];\r\nkeep;\r\nfrobnicate "x";\r\n'


def python_client(server: RunningServer, *, tls: bool = False) -> Any:
    client = managesieve.MANAGESIEVE("127.0.0.1", server.port("managesieve"), use_tls=tls,
                                     tls_verify=False, timeout=10)
    assert client.login("", ALICE, PASSWORD) == "OK"
    return client


def sieve_connect(server: RunningServer, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess:
    read, write = os.pipe()
    os.write(write, password.encode() + b"\n")
    os.close(write)
    try:
        return subprocess.run(
            ["sieve-connect", "--user", ALICE, "--passwordfd", str(read), "--server", "127.0.0.1",
             "--port", str(server.port("managesieve")), "--notlsverify", "--nosrv", *args],
            pass_fds=(read,), capture_output=True, text=True, timeout=60)
    finally:
        os.close(read)


# -- the Python managesieve client -----------------------------------------------------------
def test_python_client_put_list_activate_get_rename_delete(server: RunningServer):
    client = python_client(server)
    assert client.implementation == "xmail"
    assert set(client.capabilities) == set(server.ctx.sieve_scripts.extensions)
    assert "fileinto" in client.capabilities
    assert client.havespace("rules", len(GOOD)) == "OK"
    assert client.putscript("rules", GOOD) == "OK"
    assert client.putscript("second", "keep;\r\n") == "OK"
    assert client.listscripts() == ("OK", [("rules", False), ("second", False)])
    assert client.setactive("rules") == "OK"
    assert client.listscripts() == ("OK", [("rules", True), ("second", False)])
    assert client.getscript("rules") == ("OK", GOOD)
    assert server.call(server.ctx.sieve_scripts.get, ALICE, "rules") == GOOD
    assert client.deletescript("rules") == "NO" and client.response_code == "ACTIVE"
    assert client.deletescript("second") == "OK"
    assert client.deletescript("second") == "NO" and client.response_code == "NONEXISTENT"
    assert client.setactive("") == "OK"
    assert client.deletescript("rules") == "OK"
    assert client.listscripts() == ("OK", [])
    assert client.logout() == "OK"


def test_python_client_syntax_errors_carry_the_line(server: RunningServer):
    client = python_client(server, tls=True)  # STARTTLS on the same port
    assert client.putscript("bad", BAD) == "NO"
    assert client.response_text.startswith("line 3: ")
    assert client.listscripts() == ("OK", [])  # nothing stored
    # Invalid UTF-8 is refused at upload.
    client._send(b'PUTSCRIPT "latin1" {5+}\r\nk\xe9ep\r\n')
    assert client._get_response()[0] == "NO"
    assert client.putscript("big", "#" * (MAX_SCRIPT_SIZE + 10)) == "NO"
    assert client.response_code == "QUOTA/MAXSIZE"
    assert client.havespace("big", MAX_SCRIPT_SIZE + 10) == "NO"
    assert client.response_code == "QUOTA/MAXSIZE"
    nested = "if true {" * 1000 + "}" * 1000
    assert client.putscript("deep", nested) == "NO"
    assert client.listscripts() == ("OK", [])
    assert client.putscript("ok", GOOD) == "OK"  # the connection is still usable


def test_python_client_wrong_password(server: RunningServer):
    client = managesieve.MANAGESIEVE("127.0.0.1", server.port("managesieve"), timeout=10)
    assert client.login("", ALICE, "wrong") == "NO"
    assert client.response_text == "Authentication failed"


# -- sieve-connect -------------------------------------------------------------------------------
def test_sieve_connect_upload_list_activate_download_delete(server: RunningServer, tmp_path: Path):
    local = tmp_path / "rules.sieve"
    local.write_text(GOOD)
    done = sieve_connect(server, "--upload", "--localsieve", str(local), "--remotesieve", "rules")
    assert done.returncode == 0, done.stderr
    assert server.call(server.ctx.sieve_scripts.get, ALICE, "rules") == GOOD
    done = sieve_connect(server, "--activate", "--remotesieve", "rules")
    assert done.returncode == 0, done.stderr
    listed = sieve_connect(server, "--list")
    assert listed.returncode == 0 and '"rules" ACTIVE' in listed.stdout
    copy = tmp_path / "copy.sieve"
    done = sieve_connect(server, "--download", "--remotesieve", "rules", "--localsieve", str(copy))
    assert done.returncode == 0, done.stderr
    assert copy.read_bytes() == GOOD.encode()
    done = sieve_connect(server, "--delete", "--remotesieve", "rules")
    assert done.returncode != 0  # the active script
    assert sieve_connect(server, "--deactivate").returncode == 0
    assert server.call(server.ctx.sieve_scripts.active, ALICE) is None
    assert sieve_connect(server, "--delete", "--remotesieve", "rules").returncode == 0
    assert server.call(server.ctx.sieve_scripts.list, ALICE) == []


def test_sieve_connect_checkscript_reports_the_line(server: RunningServer, tmp_path: Path):
    bad = tmp_path / "bad.sieve"
    bad.write_text(BAD)
    done = sieve_connect(server, "--checkscript", "--localsieve", str(bad))
    assert done.returncode != 0
    assert "line 3" in done.stderr
    good = tmp_path / "good.sieve"
    good.write_text(GOOD)
    assert sieve_connect(server, "--checkscript", "--localsieve", str(good)).returncode == 0


def test_sieve_connect_exec_and_a_wrong_password(server: RunningServer, tmp_path: Path):
    # sieve-connect has no rename (RENAMESCRIPT: test_server.py's transcripts).
    server.call(server.ctx.sieve_scripts.put, ALICE, "old", "keep;\r\n")
    script = tmp_path / "cmds"
    script.write_text("view old\nactivate old\nlist\n")
    done = sieve_connect(server, "--exec", str(script))
    assert done.returncode == 0, done.stderr
    assert "keep;" in done.stdout and '"old" ACTIVE' in done.stdout
    done = sieve_connect(server, "--list", password="wrong")
    assert done.returncode != 0 and "Authentication failed" in done.stderr
