# -*- test-case-name: tests.protocols.managesieve.test_server -*-
"""ManageSieve transcripts against the real service (tests/conftest.py:
real store, portal, throttle and audit log, the listener on a free
loopback port), one exchange at a time with a raw client."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from typing import Any

from twisted.internet import defer

from tests.conftest import PASSWORD, RunningServer, in_reactor, reactor_running, wait_until
from tests.protocols.managesieve.support import ALICE, SieveClient, capabilities
from xmail.protocols.managesieve.server import ScriptChecks
from xmail.sieve.interfaces import MAX_REDIRECTS, MAX_SCRIPT_SIZE, MAX_SCRIPTS

SCRIPT = 'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "X"; }\r\n'


def connect(server: RunningServer, source: str | None = None, tls: bool = False) -> SieveClient:
    client = SieveClient(server.port("managesieve"), source=source)
    greeting = client.reply()
    assert greeting.status == "OK", greeting
    client.greeting = greeting  # type: ignore[attr-defined]
    return client


def logged_in(server: RunningServer) -> SieveClient:
    client = connect(server)
    assert client.login().status == "OK"
    return client


def store_put(server: RunningServer, name: str, text: str = SCRIPT, owner: str = ALICE) -> None:
    """A script written straight into the real store (no engine needed)."""
    server.call(server.ctx.sieve_scripts.put, owner, name, text)


def audit_lines(server: RunningServer, kind: str) -> list[dict[str, Any]]:
    path = os.path.join(server.settings.data_dir, "log", f"{kind}.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


# -- greeting and CAPABILITY -------------------------------------------------------------------
def test_the_greeting_is_the_capability_list(server: RunningServer):
    client = connect(server)
    caps = capabilities(client.greeting)  # type: ignore[attr-defined]
    assert caps["IMPLEMENTATION"] == "xmail"
    assert caps["SASL"] == "PLAIN LOGIN"  # loopback: plaintext allowed
    assert "STARTTLS" in caps and caps["VERSION"] == "1.0"
    assert caps["MAXREDIRECTS"] == str(MAX_REDIRECTS)
    assert "UNAUTHENTICATE" in caps and "OWNER" not in caps
    assert caps["SIEVE"] == " ".join(server.ctx.sieve_scripts.extensions)
    again = client.cmd("CAPABILITY")
    assert again.status == "OK" and capabilities(again) == caps
    assert client.login().status == "OK"
    after = capabilities(client.cmd("capability"))
    assert after["OWNER"] == ALICE and "STARTTLS" not in after


def test_a_remote_client_gets_no_mechanism_before_starttls(server: RunningServer):
    client = connect(server, source="127.0.0.2")
    caps = capabilities(client.greeting)  # type: ignore[attr-defined]
    assert caps["SASL"] == "" and "STARTTLS" in caps
    refused = client.login()
    assert (refused.status, refused.code) == ("NO", "ENCRYPT-NEEDED")
    reply = client.cmd("STARTTLS")
    assert reply.status == "OK"
    client.starttls()
    # RFC 5804 §2.2: the capabilities again, at once, over TLS.
    after = client.reply()
    assert after.status == "OK"
    caps = capabilities(after)
    assert caps["SASL"] == "PLAIN LOGIN" and "STARTTLS" not in caps
    assert client.cmd("STARTTLS").status == "NO"  # once
    assert client.login().status == "OK"
    assert client.cmd("LISTSCRIPTS").status == "OK"


def test_plaintext_pipelined_after_starttls_is_discarded(server: RunningServer):
    client = connect(server, source="127.0.0.2")
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    client.send(f'STARTTLS\r\nAUTHENTICATE "PLAIN" "{token}"\r\nLISTSCRIPTS\r\n'.encode())
    assert client.reply().status == "OK"
    client.starttls()
    assert client.reply().status == "OK"  # the re-issued capabilities
    # Not logged in: the injected commands were never run.
    reply = client.cmd("LISTSCRIPTS")
    assert reply.status == "NO" and "Authenticate first" in reply.text


# -- AUTHENTICATE ----------------------------------------------------------------------------------
def test_plain_with_a_continuation_and_login(server: RunningServer):
    client = connect(server)
    client.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert client.line() == b'""\r\n'  # RFC 5804 §2.1: an empty challenge
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    client.send(b"{%d+}\r\n" % len(token) + token + b"\r\n")
    assert client.reply().status == "OK"
    assert client.cmd("UNAUTHENTICATE").status == "OK"
    client.send(b'AUTHENTICATE "LOGIN"\r\n')
    assert base64.b64decode(client.line()[1:-3]) == b"Username:"
    client.send(b'"' + base64.b64encode(ALICE.encode()) + b'"\r\n')
    assert base64.b64decode(client.line()[1:-3]) == b"Password:"
    client.send(b'"' + base64.b64encode(PASSWORD.encode()) + b'"\r\n')
    assert client.reply().status == "OK"


def test_cancel_wrong_password_and_too_many_failures(server: RunningServer):
    client = connect(server)
    client.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert client.line() == b'""\r\n'
    cancelled = client.cmd('"*"')
    assert cancelled.status == "NO" and "cancelled" in cancelled.text
    assert client.cmd('AUTHENTICATE "CRAM-MD5"').status == "NO"
    for _ in range(3):
        reply = client.login(password="wrong")
        assert (reply.status, reply.text) == ("NO", "Authentication failed")
    bye = client.reply()
    assert bye.status == "BYE" and client.closed()


def test_a_throttled_login_is_trylater(make_server: Any):
    server = make_server("[limits]\nlogin_failures_before_delay = 0\nlogin_failures_before_refusal = 2\n")
    server.add_domain("example.com")
    server.add_user(ALICE)
    for _ in range(2):
        client = connect(server)
        assert client.login(password="wrong").status == "NO"
        client.close()
    client = connect(server)
    reply = client.login()  # the right password, but refused for now
    assert (reply.status, reply.code) == ("NO", "TRYLATER")
    logins = [line for line in audit_lines(server, "login") if line.get("protocol") == "managesieve"]
    assert [line["result"] for line in logins] == ["fail", "fail", "throttled"]


def test_login_and_logout_are_audited_and_the_session_slot_is_released(server: RunningServer):
    client = logged_in(server)
    assert server.ctx.connections.count(ALICE, "managesieve") == 1
    assert client.cmd("UNAUTHENTICATE").status == "OK"
    assert server.ctx.connections.count(ALICE, "managesieve") == 0
    assert client.cmd("LISTSCRIPTS").status == "NO"
    assert client.login().status == "OK"
    reply = client.cmd("LOGOUT")
    assert reply.status == "OK" and client.closed()
    wait_until(lambda: server.ctx.connections.count(ALICE, "managesieve") == 0)
    events = [(line["event"], line.get("result")) for line in audit_lines(server, "login")
              if line.get("protocol") == "managesieve"]
    assert events == [("login", "ok"), ("logout", None), ("login", "ok"), ("logout", None)]


# -- bad input -------------------------------------------------------------------------------------
def test_state_and_syntax_refusals_keep_the_connection(server: RunningServer):
    client = connect(server)
    for line in ("LISTSCRIPTS", "FROBNICATE", 'GETSCRIPT "x"', "NOOP \"unterminated", "CAPABILITY extra"):
        assert client.cmd(line).status == "NO", line
    tagged = client.cmd('NOOP "abc"')
    assert (tagged.status, tagged.code) == ("OK", 'TAG "abc"')
    assert client.login().status == "OK"
    assert client.cmd('AUTHENTICATE "PLAIN" "x"').status == "NO"  # already authenticated
    assert client.cmd("STARTTLS").status == "NO"
    assert client.cmd("GETSCRIPT unquoted").status == "NO"
    assert client.cmd("NOOP").status == "OK"


def test_too_many_bad_commands_end_the_session(server: RunningServer):
    client = connect(server)
    for _ in range(9):
        assert client.cmd("BOGUS").status == "NO"
    assert client.cmd("BOGUS").status == "NO"
    assert client.reply().status == "BYE"
    assert client.closed()


def test_an_oversized_script_is_read_refused_and_the_session_goes_on(server: RunningServer):
    client = logged_in(server)
    big = b"#" * (MAX_SCRIPT_SIZE * 4)
    reply = client.put("big", big)
    assert (reply.status, reply.code) == ("NO", "QUOTA/MAXSIZE")
    assert client.cmd("NOOP").status == "OK"
    assert server.call(server.ctx.sieve_scripts.list, ALICE) == []
    # One a little over the limit is refused by size too, before any check.
    reply = client.put("big", b"#" * (MAX_SCRIPT_SIZE + 1))
    assert (reply.status, reply.code) == ("NO", "QUOTA/MAXSIZE")


def test_an_endless_literal_ends_the_connection(server: RunningServer):
    client = logged_in(server)
    client.send(b'PUTSCRIPT "x" {99999999999+}\r\n' + b"#" * 65536)
    bye = client.reply()
    assert (bye.status, bye.code) == ("BYE", "QUOTA/MAXSIZE")
    assert client.closed()
    # Before login the bound is far smaller.
    client = connect(server)
    client.send(b'AUTHENTICATE "PLAIN" {10000000+}\r\n')
    assert client.reply().status == "BYE" and client.closed()


def test_a_literal_before_login_over_its_limit_is_refused(server: RunningServer):
    client = connect(server)
    reply = client.cmd(b'NOOP {5000+}\r\n' + b"x" * 5000)
    assert reply.status == "NO" and reply.code is None
    assert client.cmd("NOOP").status == "OK"


# -- scripts (the store is the real LMDB one) -----------------------------------------------------
def test_list_get_activate_rename_delete(server: RunningServer):
    store_put(server, "one")
    store_put(server, "二")
    client = logged_in(server)
    listed = client.cmd("LISTSCRIPTS")
    assert listed.status == "OK" and sorted(listed.lines) == sorted([b'"one"\r\n', '"二"\r\n'.encode()])
    got = client.cmd('GETSCRIPT "one"')
    assert got.status == "OK" and got.lines == [b"{literal}" + SCRIPT.encode() + b"\r\n"]
    missing = client.cmd('GETSCRIPT "none"')
    assert (missing.status, missing.code) == ("NO", "NONEXISTENT")
    assert client.cmd('SETACTIVE "none"').code == "NONEXISTENT"
    assert client.cmd('SETACTIVE "one"').status == "OK"
    assert b'"one" ACTIVE\r\n' in client.cmd("LISTSCRIPTS").lines
    assert client.cmd('DELETESCRIPT "one"').code == "ACTIVE"
    assert client.cmd('RENAMESCRIPT "one" "二"').code == "ALREADYEXISTS"
    assert client.cmd('RENAMESCRIPT "none" "three"').code == "NONEXISTENT"
    assert client.cmd('RENAMESCRIPT "one" "main"').status == "OK"
    assert server.call(server.ctx.sieve_scripts.active, ALICE) == "main"  # the mark follows
    assert client.cmd('SETACTIVE ""').status == "OK"  # RFC 5804 §2.8: none active
    assert server.call(server.ctx.sieve_scripts.active, ALICE) is None
    assert client.cmd('DELETESCRIPT "main"').status == "OK"
    assert client.cmd('DELETESCRIPT "main"').code == "NONEXISTENT"
    assert [name for name, _ in server.call(server.ctx.sieve_scripts.list, ALICE)] == ["二"]
    # Another user's scripts are not visible.
    store_put(server, "bobs", owner="bob@example.com")
    assert b'"bobs"\r\n' not in client.cmd("LISTSCRIPTS").lines
    assert client.cmd('GETSCRIPT "bobs"').code == "NONEXISTENT"
    changes = [(line["command"], line["result"]) for line in audit_lines(server, "admin")
               if line.get("protocol") == "managesieve"]
    assert changes[:3] == [("SETACTIVE none", "NONEXISTENT"), ("SETACTIVE one", "ok"),
                           ("DELETESCRIPT one", "ACTIVE")]
    assert ("RENAMESCRIPT one", "ok") in changes and ("DELETESCRIPT main", "ok") in changes


def test_havespace_and_quotas(server: RunningServer):
    client = logged_in(server)
    assert client.cmd('HAVESPACE "a" 100').status == "OK"
    reply = client.cmd(f'HAVESPACE "a" {MAX_SCRIPT_SIZE + 1}')
    assert (reply.status, reply.code) == ("NO", "QUOTA/MAXSIZE")
    for i in range(MAX_SCRIPTS):
        store_put(server, f"s{i:02}")
    reply = client.cmd('HAVESPACE "one-more" 10')
    assert (reply.status, reply.code) == ("NO", "QUOTA/MAXSCRIPTS")
    assert client.cmd('HAVESPACE "s01" 10').status == "OK"  # a replacement
    assert client.cmd('HAVESPACE "a" "ten"').status == "NO"


def test_names_are_checked_and_managed_scripts_are_read_only(server: RunningServer):
    store_put(server, "xmail-vacation", 'require "vacation";\r\nvacation "away";\r\n')
    client = logged_in(server)
    assert b'"xmail-vacation"\r\n' in client.cmd("LISTSCRIPTS").lines
    assert client.cmd('GETSCRIPT "xmail-vacation"').status == "OK"
    for line in ('DELETESCRIPT "xmail-vacation"', 'RENAMESCRIPT "xmail-vacation" "mine"',
                 'SETACTIVE "xmail-vacation"', 'HAVESPACE "xmail-forward" 10'):
        reply = client.cmd(line)
        assert reply.status == "NO" and "reserved" in reply.text, line
    reply = client.put("xmail-forward", b"keep;\r\n")
    assert reply.status == "NO" and "reserved" in reply.text
    assert client.cmd(b'GETSCRIPT "bad\xff"').text == "Script name is not UTF-8"
    assert client.cmd(b'GETSCRIPT {3+}\r\na\tb').text == "Invalid script name"
    assert client.cmd('SETACTIVE ""').status == "OK"
    assert [n for n, _ in server.call(server.ctx.sieve_scripts.list, ALICE)] == ["xmail-vacation"]


# -- deadlines, caps, drain ------------------------------------------------------------------------
def test_the_login_deadline(make_server: Any):
    server = make_server("[limits]\nlogin_timeout = 1\n")
    client = connect(server)
    started = time.monotonic()
    bye = client.reply()
    assert (bye.status, bye.code) == ("BYE", "TRYLATER") and client.closed()
    assert time.monotonic() - started < 5


def test_a_trickled_command_meets_the_command_deadline(make_server: Any):
    server = make_server("[limits]\ncommand_timeout = 1\n")
    client = connect(server)
    client.send(b"NOO")
    bye = client.reply()
    assert (bye.status, bye.code) == ("BYE", "TRYLATER") and client.closed()


def test_connections_per_address_are_capped(make_server: Any):
    server = make_server("[limits]\nmax_connections_per_ip = 1\n")
    first = connect(server)
    second = SieveClient(server.port("managesieve"))
    assert second.closed()
    assert first.cmd("NOOP").status == "OK"


def test_stopping_the_server_says_bye_and_stops_the_check_pool(server: RunningServer):
    client = logged_in(server)
    factory = server.service.listeners["managesieve"].factory
    assert server.call(factory.checks.run, lambda: 42) == 42
    assert factory.checks.running
    server.stop()
    bye = client.reply()
    assert (bye.status, bye.code) == ("BYE", "TRYLATER") and client.closed()
    assert not factory.checks.running


def test_checks_run_in_a_bounded_pool_off_the_reactor():
    reactor = reactor_running()
    checks = ScriptChecks(reactor, threads=2)
    started = threading.Event()
    release = threading.Event()

    def work() -> str:
        started.set()
        release.wait(5)
        return threading.current_thread().name

    pending = in_reactor(lambda: defer.succeed([checks.run(work) for _ in range(6)]))
    assert started.wait(5)
    release.set()
    names = in_reactor(lambda: defer.gatherResults(pending))
    assert "reactor" not in names  # the reactor thread (tests.support.server)
    assert all("xmail-managesieve-check" in name for name in names)
    assert len(set(names)) <= 2  # never more than the pool's threads
    in_reactor(checks.stop)
    assert not checks.running


def test_invalid_utf8_is_refused_at_upload(server: RunningServer):
    client = logged_in(server)
    for command in (b'PUTSCRIPT "latin1" {6+}\r\nk\xe9ep;\n', b"CHECKSCRIPT {6+}\r\nk\xe9ep;\n"):
        reply = client.cmd(command)
        assert reply.status == "NO" and reply.text == "Script is not valid UTF-8 (octet 2)"
    assert server.call(server.ctx.sieve_scripts.list, ALICE) == []
