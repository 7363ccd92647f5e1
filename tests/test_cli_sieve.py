"""`xmailctl sieve|vacation|forward` through xmail.cli.main on a real data
directory (the scripts store in LMDB, the engine's compiler), and once as
a separate process fed on standard input, as an operator runs it."""

from __future__ import annotations

import imaplib
import io
import smtplib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.autoconfig.conftest import PRODUCTION_TOML
from tests.support.cli import hosting_config
from tests.support.server import PASSWORD
from tests.support.wait import wait_until
from xmail import cli
from xmail.config import load
from xmail.db.environment import IndexEnvironment
from xmail.sieve.interfaces import MAX_SCRIPT_SIZE, MAX_SCRIPTS
from xmail.sieve.managed import FORWARD, MAX_BODY, VACATION
from xmail.sieve.storage import SieveScripts

BOB = "bob@example.com"
RULES = (b'require ["fileinto"];\r\nif header :contains "subject" "invoice" {\r\n'
         b'  fileinto "Invoices";\r\n}\r\n')
BROKEN = b'require ["fileinto"];\nif header :contains "subject" "x" {\n  fileinto "A"\n}\n'


def run(config: str, *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `xmailctl --config CONFIG ARGV`,
    standard input a binary stream as a shell's pipe gives it."""
    stdout, stderr = io.StringIO(), io.StringIO()
    status = cli.main(["--config", config, *argv], stdout=stdout, stderr=stderr,
                      stdin=io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = hosting_config(tmp_path, PRODUCTION_TOML)
    for address in (BOB, "alice@example.com"):
        assert run(path, "user", "add", address, "--no-password")[0] == 0
    assert run(path, "alias", "add", "robert@example.com", BOB)[0] == 0
    return path


def stored(config: str) -> SieveScripts:
    env = IndexEnvironment(load(config).path("index"))
    env.open()
    return SieveScripts(env)


def chain_of(config: str, user: str) -> list[tuple[str, str]]:
    scripts = stored(config)
    try:
        return [(owner, name) for owner, name, _ in scripts.chain(user)]
    finally:
        scripts.env.close()


def listed(config: str, *owner: str) -> list[list[str]]:
    status, out, err = run(config, "sieve", "list", *owner)
    assert (status, err) == (0, "")
    return [line.split("\t") for line in out.splitlines()]


# -- sieve ---------------------------------------------------------------------------------


def test_put_from_stdin_activates_the_first_script(config: str) -> None:
    status, out, err = run(config, "sieve", "put", "--user", "Bob@Example.com", stdin=RULES)
    assert (status, err) == (0, "")
    assert out == f"sieve main stored for user {BOB} and activated (the user had no active script)\n"
    assert listed(config, "--user", BOB) == [["main", "yes"]]
    # Byte for byte as given: it can be fetched and put back unchanged.
    status, out, _ = run(config, "sieve", "get", "--user", BOB, "main")
    assert (status, out) == (0, RULES.decode())
    # A second script is stored, not activated; activate switches.
    status, out, _ = run(config, "sieve", "put", "--user", BOB, "other", stdin=b"keep;\n")
    assert (status, out) == (0, f"sieve other stored for user {BOB}\n")
    assert listed(config, "--user", BOB) == [["main", "yes"], ["other", "no"]]
    assert run(config, "sieve", "activate", "--user", BOB, "other") == (
        0, f"sieve other active for user {BOB}\n", "")
    assert listed(config, "--user", BOB) == [["main", "no"], ["other", "yes"]]
    assert chain_of(config, BOB) == [(BOB, "other")]


def test_put_from_a_file_named_by_its_stem_and_csv(config: str, tmp_path: Path) -> None:
    path = tmp_path / "invoices.sieve"
    path.write_bytes(RULES)
    # An alias names its user.
    status, out, err = run(config, "sieve", "put", "--user", "robert@example.com", str(path))
    assert (status, err) == (0, ""), err
    assert out.startswith(f"sieve invoices stored for user {BOB}")
    status, out, _ = run(config, "sieve", "put", "--user", BOB, "renamed", str(path))
    assert out == f"sieve renamed stored for user {BOB}\n"
    status, out, _ = run(config, "sieve", "list", "--user", BOB, "--csv")
    assert (status, out) == (0, "name,active\r\ninvoices,yes\r\nrenamed,no\r\n")


def test_a_script_that_does_not_compile_is_refused_with_its_line(config: str) -> None:
    status, out, err = run(config, "sieve", "put", "--user", BOB, "main", stdin=BROKEN)
    assert status == 1 and out == ""
    assert err.startswith("xmailctl: main: line 4: "), err
    # Unknown extension, and invalid UTF-8: refused too, nothing stored.
    assert run(config, "sieve", "put", "--user", BOB, stdin=b'require ["nosuch"];\n')[0] == 1
    assert run(config, "sieve", "put", "--user", BOB, stdin=b'# caf\xe9\nkeep;\n')[0] == 1
    assert listed(config, "--user", BOB) == []


def test_limits_are_refused_at_upload(config: str) -> None:
    # One octet over the size: refused without reading further.
    big = b"#" + b"x" * MAX_SCRIPT_SIZE + b"\nkeep;\n"
    status, _, err = run(config, "sieve", "put", "--user", BOB, stdin=big)
    assert status == 1 and "larger than" in err
    deep = b"if true {" * 1000 + b"keep;" + b"}" * 1000
    status, _, err = run(config, "sieve", "put", "--user", BOB, stdin=deep)
    assert status == 1 and "line 1" in err
    for i in range(MAX_SCRIPTS):
        assert run(config, "sieve", "put", "--user", BOB, f"s{i:02}", stdin=b"keep;\n")[0] == 0
    status, _, err = run(config, "sieve", "put", "--user", BOB, "one-more", stdin=b"keep;\n")
    assert status == 1 and "QUOTA/MAXSCRIPTS" in err
    # A replacement is no new script.
    assert run(config, "sieve", "put", "--user", BOB, "s00", stdin=b"discard;\n")[0] == 0


def test_domain_scripts(config: str) -> None:
    tracking = b'require ["fileinto", "copy"];\nfileinto :copy "Tracking";\n'
    status, out, err = run(config, "sieve", "put", "--domain", "Example.com", "--before", stdin=tracking)
    assert (status, err) == (0, "")
    assert out == "sieve before stored for domain example.com (before)\n"
    assert run(config, "sieve", "put", "--domain", "example.com", "--after", stdin=b"keep;\n")[0] == 0
    assert run(config, "sieve", "put", "--user", BOB, stdin=b"keep;\n")[0] == 0
    assert listed(config, "--domain", "example.com", "--before") == [["before", "yes"]]
    assert chain_of(config, BOB) == [("before:example.com", "before"), (BOB, "main"),
                                     ("after:example.com", "after")]
    status, out, _ = run(config, "sieve", "get", "--domain", "example.com", "--after")
    assert (status, out) == (0, "keep;\n")
    assert run(config, "sieve", "remove", "--domain", "example.com", "--after") == (
        0, "sieve after removed for domain example.com (after)\n", "")
    assert chain_of(config, BOB) == [("before:example.com", "before"), (BOB, "main")]
    # The wrong combinations and domains.
    for argv, message in ((("--domain", "example.com"), "--domain needs --before or --after"),
                          (("--user", BOB, "--before"), "--before and --after go with --domain"),
                          (("--domain", "example.cn", "--before"), "example.cn is an alias of example.com"),
                          (("--domain", "example.org", "--after"), "example.org is not a hosted domain"),
                          (("--user", "nobody@example.com"), "no such user nobody@example.com")):
        status, _, err = run(config, "sieve", "put", *argv, stdin=b"keep;\n")
        assert status == 1 and message in err, (argv, err)


def test_remove_even_the_active_script_and_errors(config: str) -> None:
    assert run(config, "sieve", "put", "--user", BOB, stdin=b"keep;\n")[0] == 0
    assert run(config, "sieve", "remove", "--user", BOB, "main") == (
        0, f"sieve main removed for user {BOB} (it was active: the user has no active script now)\n", "")
    assert listed(config, "--user", BOB) == [] and chain_of(config, BOB) == []
    status, _, err = run(config, "sieve", "remove", "--user", BOB, "main")
    assert (status, err) == (1, f"xmailctl: user {BOB} has no script 'main'\n")
    status, _, err = run(config, "sieve", "activate", "--user", BOB, "nosuch")
    assert (status, err) == (1, f"xmailctl: user {BOB} has no script 'nosuch'\n")
    status, _, err = run(config, "sieve", "get", "--user", BOB, "nosuch")
    assert status == 1 and "no script 'nosuch'" in err
    status, _, err = run(config, "sieve", "put", "--user", BOB, "bad\x01name", stdin=b"keep;\n")
    assert status == 1 and "not a script name" in err
    status, _, err = run(config, "sieve", "put", "--user", BOB, VACATION, stdin=b"keep;\n")
    assert status == 1 and "belong to `xmailctl vacation`" in err


# -- vacation and forward ------------------------------------------------------------------


def test_vacation_set_and_off(config: str) -> None:
    assert run(config, "domain", "alias", "example.hk", "--to", "example.com")[0] == 0
    body = "I am away until Monday.\n.\n我在休假。\n".encode()
    status, out, err = run(config, "vacation", "set", "robert@example.com", "--days", "3",
                           "--subject", 'Away "for now"', stdin=body)
    assert (status, err) == (0, "")
    assert out == f"vacation set for {BOB}: each sender answered at most once in 3 day(s)\n"
    status, text, _ = run(config, "sieve", "get", "--user", BOB, VACATION)
    assert status == 0
    assert ':days 3 :subject "Away \\"for now\\""' in text
    # The user's other addresses: the alias, and both at the alias domains.
    assert (':addresses ["bob@example.cn", "bob@example.hk", "robert@example.cn", "robert@example.com", '
            '"robert@example.hk"]') in text
    assert "\r\n..\r\n我在休假。\r\n" in text  # dot-stuffed (RFC 5228 §2.4.2)
    assert listed(config, "--user", BOB) == [[VACATION, "yes"]]
    # Managed scripts run after the active one, and are not "activated".
    assert run(config, "sieve", "put", "--user", BOB, stdin=b"keep;\n")[0] == 0
    assert chain_of(config, BOB) == [(BOB, "main"), (BOB, VACATION)]
    status, _, err = run(config, "sieve", "activate", "--user", BOB, VACATION)
    assert status == 1 and "not activated" in err
    assert run(config, "vacation", "off", BOB) == (0, f"vacation off for {BOB}\n", "")
    assert chain_of(config, BOB) == [(BOB, "main")]
    assert run(config, "vacation", "off", BOB) == (1, "", f"xmailctl: {BOB} has no vacation set\n")


def test_vacation_refuses_bad_input(config: str) -> None:
    def vacation(*argv: str, stdin: bytes = b"Away") -> tuple[int, str]:
        status, _, err = run(config, "vacation", "set", BOB, *argv, stdin=stdin)
        return status, err

    for days in ("0", "366", "seven"):  # usage errors (RFC 5230 §4.1: at least 1)
        with pytest.raises(SystemExit) as exit:
            vacation("--days", days, "--subject", "x")
        assert exit.value.code == 2
    assert vacation("--days", "1", "--subject", "a\nBcc: x@example.org")[0] == 1
    assert vacation("--days", "1", "--subject", "x" * 300)[0] == 1
    assert vacation("--days", "1", "--subject", "x", stdin=b"")[0] == 1
    status, err = vacation("--days", "1", "--subject", "x", stdin=b"caf\xe9")
    assert status == 1 and "not UTF-8" in err
    status, err = vacation("--days", "1", "--subject", "x", stdin=b"x" * (MAX_BODY + 1))
    assert status == 1 and "larger than" in err
    assert vacation("--days", "1", "--subject", "x") == (0, "")
    status, _, err = run(config, "vacation", "set", "nobody@example.com", "--days", "1", "--subject", "x",
                         stdin=b"Away")
    assert status == 1 and "no such user" in err
    assert chain_of(config, BOB) == [(BOB, VACATION)]  # only the one good call stored something


def test_forward_set_and_off(config: str) -> None:
    status, out, err = run(config, "forward", "set", BOB, "Carol@Example.ORG")
    assert (status, out, err) == (0, f"forward set for {BOB}: to carol@example.org, none kept\n", "")
    text = run(config, "sieve", "get", "--user", BOB, FORWARD)[1]
    assert text.endswith('redirect "carol@example.org";\r\n')
    status, out, _ = run(config, "forward", "set", BOB, "alice@example.com", "--keep")
    assert out == f"forward set for {BOB}: to alice@example.com, a copy kept\n"
    text = run(config, "sieve", "get", "--user", BOB, FORWARD)[1]
    assert 'require ["copy"];' in text and 'redirect :copy "alice@example.com";' in text
    assert chain_of(config, BOB) == [(BOB, FORWARD)]
    # To the user itself (an alias, an alias domain): a loop.
    for target in (BOB, "robert@example.com", "bob@example.cn"):
        status, _, err = run(config, "forward", "set", BOB, target)
        assert status == 1 and "would loop" in err, target
    status, _, err = run(config, "forward", "set", BOB, "not an address")
    assert status == 1 and "not a mail address" in err
    assert run(config, "forward", "off", BOB) == (0, f"forward off for {BOB}\n", "")
    assert chain_of(config, BOB) == []


def test_filter_state_for_user_show(config: str) -> None:
    from xmail.cli.context import CliContext
    from xmail.cli.sieve import filter_state

    def state() -> list[tuple[str, str]]:
        ctx = CliContext(load(config), io.StringIO(), io.StringIO(), io.StringIO())
        try:
            return filter_state(ctx, BOB)
        finally:
            ctx.close()

    assert state() == [("sieve_active", "-"), ("vacation", "off"), ("forward", "off")]
    assert run(config, "sieve", "put", "--user", BOB, stdin=b"keep;\n")[0] == 0
    assert run(config, "vacation", "set", BOB, "--days", "2", "--subject", "x", stdin=b"Away")[0] == 0
    assert run(config, "forward", "set", BOB, "carol@example.org", "--keep")[0] == 0
    assert state() == [("sieve_active", "main"), ("vacation", "on"),
                       ("forward", "carol@example.org (a copy kept)")]
    assert run(config, "forward", "set", BOB, "dave@example.org")[0] == 0
    assert state()[2] == ("forward", "dave@example.org")
    # ... and `user show` prints them.
    status, out, _ = run(config, "user", "show", BOB)
    shown = dict(line.split("\t", 1) for line in out.splitlines())
    assert status == 0 and shown["sieve_active"] == "main" and shown["vacation"] == "on"
    assert shown["forward"] == "dave@example.org"
    # A removed user's rules go with it: a new user of the address starts clean.
    status, _out, err = run(config, "user", "remove", BOB)
    assert status == 0 and "removed filter script xmail-forward" in err
    assert chain_of(config, BOB) == []


def test_as_an_operator_runs_it(config: str, tmp_path: Path) -> None:
    """A separate process, the script and the reply's text piped in."""
    def xmailctl(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "xmail.cli", "--config", config, *argv],
                              input=stdin, capture_output=True, timeout=120)

    proc = xmailctl("sieve", "put", "--user", BOB, "-", stdin=RULES)
    assert proc.returncode == 0, proc.stderr
    assert xmailctl("sieve", "get", "--user", BOB, "main").stdout == RULES
    proc = xmailctl("sieve", "put", "--user", BOB, "broken", stdin=BROKEN)
    assert proc.returncode == 1 and proc.stderr.startswith(b"xmailctl: broken: line 4: ")
    proc = xmailctl("vacation", "set", BOB, "--days", "7", "--subject", "休假", stdin="下周回来\n".encode())
    assert proc.returncode == 0, proc.stderr
    assert "下周回来" in xmailctl("sieve", "get", "--user", BOB, VACATION).stdout.decode()


# -- with the running server: one engine for everything ------------------------------------


def subjects(server: Any, user: str, folder: str = "INBOX") -> list[str]:
    """The Subject of every message in one of `user`'s folders, through IMAP."""
    with imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30) as imap:
        imap.login(user, PASSWORD)
        status, count = imap.select(folder, readonly=True)
        if status != "OK" or int(count[0]) == 0:
            return []
        _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return sorted(part[1].decode().strip().removeprefix("Subject: ") for part in data
                      if isinstance(part, tuple))


def send(server: Any, recipient: str, subject: str) -> None:
    message = (f"From: carol@example.org\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{subject}@example.org>\r\n\r\nhello\r\n")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("carol@example.org", [recipient], message)


def test_forward_and_rules_set_by_xmailctl_act_on_the_next_message(server: Any) -> None:
    """xmailctl in its own process next to the running daemon (the same
    LMDB index); the daemon's delivery runs what it stored."""
    def xmailctl(*argv: str, stdin: bytes = b"") -> None:
        proc = subprocess.run([sys.executable, "-m", "xmail.cli", "--data", server.settings.data_dir, *argv],
                              input=stdin, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr

    xmailctl("forward", "set", BOB, "alice@example.com", "--keep")
    send(server, BOB, "first")
    # Local copies are stored before the 250 (xmail.sieve.stage); waiting
    # only covers the IMAP side noticing them.
    wait_until(lambda: subjects(server, "alice@example.com") == ["first"], what="the forwarded copy")
    assert subjects(server, BOB) == ["first"]  # --keep: redirect :copy

    xmailctl("forward", "off", BOB)
    xmailctl("sieve", "put", "--user", BOB, stdin=RULES)  # invoices into their folder
    with imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30) as imap:
        imap.login(BOB, PASSWORD)
        assert imap.create("Invoices")[0] == "OK"  # fileinto without :create needs it
    send(server, BOB, "invoice 2")
    send(server, BOB, "second")
    wait_until(lambda: subjects(server, BOB) == ["first", "second"], what="the second message")
    assert subjects(server, BOB, "Invoices") == ["invoice 2"]
    assert subjects(server, "alice@example.com") == ["first"]  # forwarding is off
