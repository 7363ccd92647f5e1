"""The scanner daemons of tests/support/scanners.py are what they claim:
started fast, on loopback, really stopped -- and the session's rspamd
checks DKIM against the loopback zone, an independent verifier for
xmail's own signatures (issue 17)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import dkim
from twisted.names import dns

from tests.filter.scanners.support import message, transaction
from tests.support.scanners import clamd_ping, start_clamd
from tests.support.server import in_reactor, reactor_running
from xmail.filter.scanners.rspamd import RspamdClient


def test_clamd_starts_answers_and_stops(tmp_path: Any) -> None:
    daemon = start_clamd(str(tmp_path / "clamd"), stream_max_length=4096)
    try:
        assert daemon.started_in < 30 and clamd_ping(daemon.port)
        assert os.path.exists(daemon.socket_path)
    finally:
        daemon.stop()
    assert daemon.process.returncode is not None


def test_rspamd_verifies_dkim_with_keys_from_the_loopback_zone(rspamd: Any, scanner_zone: Any,
                                                              work: Any, tmp_path: Any) -> None:
    key = tmp_path / "k.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                            capture_output=True).stdout
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    # TXT strings are at most 255 octets each (RFC 1035 §3.3.14).
    scanner_zone.records[("sel._domainkey.example.net", dns.TXT)] = [
        dns.Record_TXT(*[record[i:i + 255] for i in range(0, len(record), 255)])]
    original = message("Signed")
    signature = dkim.sign(original, b"sel", b"example.net", key.read_bytes(),
                          include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    client = RspamdClient(rspamd.url, reactor_running(), work, timeout=10)
    good = in_reactor(client.check, transaction(signature + original))
    assert "R_DKIM_ALLOW" in good.symbol_names, good.symbol_names
    forged = (signature + original).replace(b"Subject: Signed", b"Subject: Changed")
    bad = in_reactor(client.check, transaction(forged))
    assert "R_DKIM_REJECT" in bad.symbol_names, bad.symbol_names
