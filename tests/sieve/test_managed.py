# -*- test-case-name: tests.sieve.test_managed -*-
"""The Sieve text `xmailctl vacation` and `forward` write, checked against
the reference implementation: Pigeonhole's `sieve-test` (Debian's
dovecot-sieve) must compile each script and take exactly the action we
meant, with the subject unescaped and the body dot-unstuffed."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sievelib.parser import Parser

from xmail.sieve.managed import (
    MAX_BODY,
    MAX_SUBJECT,
    ManagedScriptError,
    check_body,
    check_days,
    check_subject,
    forward_script,
    multiline,
    quoted,
    vacation_script,
)

MESSAGE = (b"From: Carol <carol@example.org>\r\nTo: Bob <bob@example.com>\r\nSubject: hello\r\n"
           b"Message-ID: <1@example.org>\r\n\r\nHi Bob\r\n")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # sieve-test run as root drops to `nobody`, which must be able to read
    # the script and the message: a world-readable directory of its own.
    with tempfile.TemporaryDirectory(prefix="xmail-sieve-test-") as name:
        os.chmod(name, 0o755)
        path = Path(name)
        conf = "mail_uid = nobody\nmail_gid = nogroup\n" if os.geteuid() == 0 else ""
        (path / "dovecot.conf").write_text(conf)
        yield path


def sieve_test(workdir: Path, script: str, message: bytes = MESSAGE, execute: bool = False) -> str:
    """Pigeonhole's report of what `script` does with `message` to bob
    (with `execute`, the actions carried out: its log says whether a
    vacation reply went or why not)."""
    path = workdir / "script.sieve"
    path.write_bytes(script.encode())
    (workdir / "message.eml").write_bytes(message)
    # A home of its own each run: Pigeonhole's vacation memory lives there.
    home = Path(tempfile.mkdtemp(dir=workdir))
    for p in (path, workdir / "message.eml"):
        os.chmod(p, 0o644)
    os.chmod(home, 0o777)
    result = subprocess.run(
        ["sieve-test", "-c", str(workdir / "dovecot.conf"), "-l", f"maildir:{home}/Maildir",
         "-r", "bob@example.com", "-a", "bob@example.com", "-f", "carol@example.org",
         *(["-e"] if execute else []), str(path), str(workdir / "message.eml")],
        capture_output=True, env={**os.environ, "HOME": str(home)}, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode() + result.stderr.decode()


def sievelib_parses(script: str) -> bool:
    return Parser().parse(script)


def test_vacation_as_pigeonhole_runs_it(workdir: Path) -> None:
    body = check_body(b'Back on Monday.\n.hidden dot line\n.\nSee "you" \\ then: ${x}\n')
    script = vacation_script(days=3, subject='Away "now" \\ back soon', body=body,
                             own_addresses=["robert@example.com", "Bob@Example.CN"])
    assert sievelib_parses(script)
    report = sieve_test(workdir, script)
    assert "send vacation message" in report
    assert "=> seconds : 259200" in report  # 3 days (RFC 5230 §4.1)
    assert '=> subject : Away "now" \\ back soon' in report
    reply = re.search(r"START MESSAGE\n(.*)\nEND MESSAGE", report, re.S)
    assert reply is not None
    # Dot-stuffing undone, nothing expanded, the text as given.
    assert reply.group(1).replace("\r\n", "\n").rstrip("\n") == body
    # The implicit keep stands: a vacation reply never costs the message.
    assert "store message in folder: INBOX" in report


def test_vacation_answers_only_own_addresses(workdir: Path) -> None:
    # RFC 5230 §4.5: mail to an address not the user's (and not in
    # :addresses) gets no reply; with the alias in :addresses it does.
    aliased = MESSAGE.replace(b"To: Bob <bob@example.com>", b"To: robert@example.com")
    without = sieve_test(workdir, vacation_script(days=1, subject="Away", body="Away"), aliased,
                         execute=True)
    with_alias = sieve_test(workdir, vacation_script(days=1, subject="Away", body="Away",
                                                     own_addresses=["robert@example.com"]),
                            aliased, execute=True)
    assert "discarding vacation response" in without and "sent vacation response" not in without
    assert "sent vacation response to <carol@example.org>" in with_alias


@pytest.mark.parametrize("keep", [False, True])
def test_forward_as_pigeonhole_runs_it(workdir: Path, keep: bool) -> None:
    script = forward_script("Alice@Example.NET", keep=keep)
    assert sievelib_parses(script)
    report = sieve_test(workdir, script)
    assert "redirect message to: <alice@example.net>" in report
    kept = "store message in folder: INBOX" in report
    assert kept is keep


def test_multiline_dot_stuffing_and_crlf() -> None:
    assert multiline("a\n.b\n.\nc") == "text:\r\na\r\n..b\r\n..\r\nc\r\n.\r\n"
    assert quoted('a"b\\c') == '"a\\"b\\\\c"'


def test_days_bounds() -> None:
    assert check_days(1) == 1 and check_days(365) == 365
    for days in (0, -1, 366):
        with pytest.raises(ManagedScriptError, match="RFC 5230"):
            check_days(days)


def test_subject_bounds() -> None:
    assert check_subject("  Out of office ") == "Out of office"
    assert check_subject("休假中") == "休假中"
    for bad in ("", "   ", "a\r\nBcc: x@y.z", "a\nb", "a\0b", "x" * (MAX_SUBJECT + 1)):
        with pytest.raises(ManagedScriptError):
            check_subject(bad)


def test_body_checks() -> None:
    assert check_body("我在休假。\r\n下周回来。\r\n\r\n".encode()) == "我在休假。\n下周回来。"
    assert check_body(b"\xef\xbb\xbfHi\rthere") == "Hi\nthere"
    with pytest.raises(ManagedScriptError, match="not UTF-8"):
        check_body(b"caf\xe9")
    with pytest.raises(ManagedScriptError, match="empty"):
        check_body(b" \n\n")
    with pytest.raises(ManagedScriptError, match="control"):
        check_body(b"a\0b")
    with pytest.raises(ManagedScriptError, match="larger"):
        check_body(b"x" * (MAX_BODY + 1))
    assert check_body(b"x" * MAX_BODY) == "x" * MAX_BODY


def test_forward_target_must_be_an_address() -> None:
    for bad in ("", "alice", "alice@", '"a b"@example.com', "a@b@c", "a@example.com\r\nkeep"):
        with pytest.raises(ManagedScriptError):
            forward_script(bad, keep=False)


def test_our_engine_reads_them_as_pigeonhole_does(workdir: Path) -> None:
    """One engine: the managed scripts run through xmail.sieve's compiler
    and interpreter give the same reply text, subject and redirects."""
    from xmail.sieve.actions import Keep, Redirect, Vacation
    from xmail.sieve.compiler import compile_script
    from xmail.sieve.interpreter import evaluate
    from xmail.sieve.message import SieveMessage

    header = MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n"
    message = SieveMessage(header, mail_from="carol@example.org", rcpt_to="bob@example.com")
    body = check_body(b'Back on Monday.\n.hidden\n.\n"${x}" \\ done')
    script = vacation_script(days=3, subject='Away "now" \\ soon', body=body,
                             own_addresses=["robert@example.com"])
    [vacation, keep] = evaluate([compile_script(script.encode())], message).actions
    assert isinstance(vacation, Vacation) and isinstance(keep, Keep)
    assert (vacation.reason.replace("\r\n", "\n").rstrip("\n"), vacation.subject, vacation.seconds,
            vacation.addresses) == (body, 'Away "now" \\ soon', 3 * 86400, ("robert@example.com",))
    reply = re.search(r"START MESSAGE\n(.*)\nEND MESSAGE", sieve_test(workdir, script), re.S)
    assert reply is not None and reply.group(1).replace("\r\n", "\n") == vacation.reason.replace("\r\n", "\n")

    for keep_copy in (False, True):
        actions = evaluate([compile_script(forward_script("alice@example.net", keep=keep_copy).encode())],
                           message).actions
        assert actions[0] == Redirect("alice@example.net", copy=keep_copy)
        assert any(isinstance(a, Keep) for a in actions) is keep_copy
