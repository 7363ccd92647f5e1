"""`xmailctl`: every command, in-process on a fresh data directory, and as a
subprocess against the data directory of a running server, which sees each
change at once (same LMDB environment, two processes)."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time

import pytest
from passlib.hash import md5_crypt
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin

from xmail import cli
from xmail.auth.interfaces import AccountDisabled, IMailAccount
from xmail.cli.main import GROUPS, _settings, build_parser

MESSAGE = (b"From: carol@example.org\r\nTo: alice@example.com\r\nSubject: restore me\r\n"
           b"Message-ID: <restore-1@example.org>\r\n\r\nbody\r\n")


def run(data_dir, *argv, stdin=""):
    """xmailctl in this process on a data directory it may create (--init):
    (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["--data", str(data_dir), "--init", *argv], stdin=io.StringIO(stdin), stdout=out,
                      stderr=err)
    return status, out.getvalue(), err.getvalue()


def xmailctl(data_dir, *argv, stdin="", check=True):
    """xmailctl in its own process, as an operator runs it."""
    proc = subprocess.run([sys.executable, "-m", "xmail.cli", "--data", str(data_dir), *argv],
                          input=stdin, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return proc


def login(server, name, password):
    return server.call(server.ctx.portal.login, UsernamePassword(name, password), None, IMailAccount)


# -- in-process ----------------------------------------------------------------------


def test_domain_commands(tmp_path):
    # A change confirms itself with one line (issue 16).
    assert run(tmp_path, "domain", "add", "Example.COM") == (0, "domain example.com added\n", "")
    assert run(tmp_path, "domain", "add", "example.org")[0] == 0
    assert run(tmp_path, "domain", "alias", "example.cn", "--to", "example.com") == (
        0, "domain example.cn now receives for example.com\n", "")
    assert run(tmp_path, "domain", "list") == (
        0, "example.cn\talias-of\texample.com\nexample.com\nexample.org\n", "")
    assert run(tmp_path, "domain", "remove", "example.org") == (0, "domain example.org removed\n", "")
    status, out, err = run(tmp_path, "domain", "add", "example.com")
    assert (status, out, err) == (1, "", "xmailctl: domain example.com already exists\n")
    status, _, err = run(tmp_path, "domain", "alias", "example.hk", "--to", "example.net")
    assert status == 1 and "no such domain example.net" in err
    status, _, err = run(tmp_path, "domain", "add", "bad_domain!")
    assert status == 1 and "invalid domain" in err


def test_user_commands(tmp_path):
    run(tmp_path, "domain", "add", "example.com")
    status, out, err = run(tmp_path, "user", "add", "Alice@Example.com", "--password-stdin",
                           "--quota-bytes", "1000000", stdin="first line\nsecond line\n")
    assert (status, out) == (0, "user alice@example.com added\n"), err
    assert run(tmp_path, "user", "add", "bob@example.com", "--no-password")[0] == 0
    assert run(tmp_path, "user", "list") == (0, "alice@example.com\tenabled\nbob@example.com\tenabled\n", "")
    assert run(tmp_path, "user", "disable", "bob@example.com")[0] == 0
    assert run(tmp_path, "user", "list", "example.com")[1] == (
        "alice@example.com\tenabled\nbob@example.com\tdisabled\n")
    status, _, _ = run(tmp_path, "user", "set", "alice@example.com", "send_save=off",
                       "quota_messages=unlimited")
    assert status == 0
    status, out, _ = run(tmp_path, "user", "show", "ALICE@example.com")
    assert status == 0
    shown = dict(line.split("\t", 1) for line in out.splitlines())
    assert shown["address"] == "alice@example.com"
    assert shown["enabled"] == "yes"
    assert shown["password_scheme"] == "argon2"
    assert shown["quota_bytes"] == "1000000"
    assert shown["quota_messages"] == "0"
    assert shown["setting.send_save"] == "off"
    assert shown["messages_used"] == "0"  # provisioned by `user add`
    # Only the first line of stdin is the password.
    from xmail.auth import passwords
    from xmail.auth.directory import Directory
    from xmail.db.environment import IndexEnvironment

    env = IndexEnvironment(str(tmp_path / "index"))
    env.open()
    try:
        settings, _ = _settings(build_parser().parse_args(
            ["--data", str(tmp_path), "domain", "list"]))
        stored = Directory(env, settings).credentials("alice@example.com")[1]
    finally:
        env.close()
    assert passwords.verify("first line", stored).ok
    assert run(tmp_path, "user", "passwd", "alice@example.com", "--password-stdin", stdin="new pw\n")[0] == 0
    assert run(tmp_path, "user", "remove", "bob@example.com")[0] == 0
    assert run(tmp_path, "user", "list")[1] == "alice@example.com\tenabled\n"


@pytest.mark.parametrize("argv, stdin, message", [
    (["user", "add", "nobody@example.org", "--password-stdin"], "pw\n", "no such domain example.org"),
    (["user", "add", "bad address@example.com", "--password-stdin"], "pw\n", "invalid local part"),
    (["user", "add", "x@example.com", "--password-stdin"], "\n", "no password on standard input"),
    (["user", "add", "x@example.com"], "", "not a terminal: use --password-stdin"),
    (["user", "add", "x@example.com", "--password-hash", "nonsense"], "", "unrecognised password hash"),
    (["user", "passwd", "ghost@example.com", "--password-stdin"], "pw\n", "no such user ghost@example.com"),
    (["user", "enable", "ghost@example.com"], "", "no such user"),
    (["user", "show", "ghost@example.com"], "", "no such user"),
    (["user", "set", "ghost@example.com", "a=b"], "", "no such user"),
    (["user", "list", "example.net"], "", "no such domain example.net"),
    (["alias", "add", "info@example.com", "ghost@example.com"], "", "no such user"),
    (["alias", "remove", "info@example.com"], "", "no such alias"),
    (["recycle", "list", "ghost@example.com"], "", "no such user"),
])
def test_errors_go_to_stderr_with_status_1(tmp_path, argv, stdin, message):
    run(tmp_path, "domain", "add", "example.com")
    status, out, err = run(tmp_path, *argv, stdin=stdin)
    assert status == 1 and out == ""
    assert err.startswith("xmailctl: ") and message in err, err


def test_user_set_validates_its_arguments(tmp_path):
    run(tmp_path, "domain", "add", "example.com")
    run(tmp_path, "user", "add", "alice@example.com", "--no-password")
    for argument, message in (("novalue", "expected KEY=VALUE"), ("quota_bytes=lots", "must be a number"),
                              ("bad key=1", "invalid setting name")):
        status, _, err = run(tmp_path, "user", "set", "alice@example.com", argument)
        assert status == 1 and message in err, err


def test_alias_commands(tmp_path):
    run(tmp_path, "domain", "add", "example.com")
    run(tmp_path, "user", "add", "alice@example.com", "--no-password")
    assert run(tmp_path, "alias", "add", "Info@example.com", "alice@example.com") == (
        0, "alias info@example.com added for alice@example.com\n", "")
    assert run(tmp_path, "alias", "list") == (0, "info@example.com\talice@example.com\n", "")
    assert run(tmp_path, "alias", "remove", "info@example.com") == (0, "alias info@example.com removed\n", "")
    assert run(tmp_path, "alias", "list") == (0, "", "")


@pytest.mark.parametrize("argv, stdin, line", [
    (["user", "passwd", "alice@example.com", "--password-stdin"], "new pw\n",
     "password of alice@example.com changed"),
    (["user", "disable", "alice@example.com"], "", "user alice@example.com disabled"),
    (["user", "enable", "alice@example.com"], "", "user alice@example.com enabled"),
    (["user", "set", "alice@example.com", "send_save=off"], "", "user alice@example.com: send_save=off"),
    (["user", "remove", "alice@example.com"], "", "user alice@example.com removed"),
    (["recycle", "restore", "alice@example.com", "--all"], "", "Recycle is empty: nothing restored"),
])
def test_every_change_prints_one_confirmation_line(tmp_path, argv, stdin, line):
    # Issue 16: a successful change printed nothing; now one line on stdout.
    run(tmp_path, "domain", "add", "example.com")
    run(tmp_path, "user", "add", "alice@example.com", "--no-password")
    status, out, _err = run(tmp_path, *argv, stdin=stdin)
    assert (status, out) == (0, line + "\n")


def test_imported_hash_keeps_its_scheme_until_login(tmp_path):
    run(tmp_path, "domain", "add", "example.com")
    legacy = "{MD5-CRYPT}" + md5_crypt.hash("old pw")
    assert run(tmp_path, "user", "add", "old@example.com", "--password-hash", legacy)[0] == 0
    shown = run(tmp_path, "user", "show", "old@example.com")[1]
    assert "password_scheme\t{MD5-CRYPT}\n" in shown
    assert run(tmp_path, "user", "passwd", "old@example.com", "--password-hash", "{SSHA}" + "A" * 28)[0] == 0
    assert "password_scheme\t{SSHA}\n" in run(tmp_path, "user", "show", "old@example.com")[1]
    status, _, err = run(tmp_path, "user", "passwd", "old@example.com", "--password-hash", "{SSHA}abc")
    assert status == 1 and "does not hold a sha1 digest" in err


def test_usage_errors_exit_2(tmp_path, capsys):
    for argv in (["frobnicate"], ["user"], ["recycle", "restore", "a@example.com"],
                 ["user", "add", "a@example.com", "--password-stdin", "--password-hash", "x"],
                 ["recycle", "restore", "a@example.com", "0"]):
        with pytest.raises(SystemExit) as info:
            cli.main(["--data", str(tmp_path), *argv])
        assert info.value.code == 2


def test_config_errors_name_key_and_file(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[server]\ndata_dir = 5\n")
    err = io.StringIO()
    assert cli.main(["--config", str(config), "domain", "list"], stderr=err) == 1
    assert err.getvalue() == f"xmailctl: {config}: server.data_dir must be a string, not 5\n"


def test_xmail_config_from_the_environment(tmp_path, monkeypatch):
    config = tmp_path / "xmail.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "envdata"}"\n')
    monkeypatch.setenv("XMAIL_CONFIG", str(config))
    out = io.StringIO()
    assert cli.main(["domain", "add", "example.com"], stdout=out) == 0
    assert (tmp_path / "envdata" / "index").is_dir()


def test_every_command_group_is_in_the_one_package():
    # Plain imports of xmail/cli/*: no plug-in loading that skips a group
    # whose module fails to import (issue 14).
    import argparse

    assert "importlib" not in open(sys.modules["xmail.cli.main"].__file__).read()
    parser = build_parser()
    groups = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(groups) == {"domain", "user", "alias", "recycle", "reindex", "queue", "log", "stats", "dkim",
                           "dns", "spam", "sieve", "vacation", "forward"}
    for module in GROUPS:
        assert module.__name__.startswith("xmail.cli.")


def test_the_console_script_is_installed(tmp_path):
    # Next to the interpreter running the tests (not whatever is on PATH).
    script = os.path.join(os.path.dirname(sys.executable), "xmailctl")
    assert os.path.exists(script), "pip install -e . installs xmailctl next to python"
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for group in ("domain", "user", "alias", "recycle", "reindex", "queue", "log", "stats", "dns"):
        assert group in proc.stdout


@pytest.mark.parametrize("group", ["domain", "user", "alias", "recycle", "queue", "log", "stats", "dns"])
def test_help_of_every_group(group):
    # `xmailctl stats --help` crashed on a "%" in a help text (issue 16).
    proc = subprocess.run([sys.executable, "-m", "xmail.cli", group, "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: xmailctl {group}")


def test_a_data_dir_typo_is_refused_and_nothing_is_created(tmp_path):
    typo = tmp_path / "xmail-dta"
    proc = subprocess.run([sys.executable, "-m", "xmail.cli", "--data", str(typo), "domain", "add",
                           "example.com"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (f"xmailctl: no xmail data in {typo} (looked for {typo / 'index'}): name the "
                           "server's with --data DIR or --config FILE, or create a new one with --init\n")
    assert not typo.exists()


def test_run_from_another_directory_is_refused(tmp_path):
    # No --data, no --config, no $XMAIL_CONFIG: ./xmail-data of the wrong
    # working directory is not silently created.
    env = {k: v for k, v in os.environ.items() if k != "XMAIL_CONFIG"}
    proc = subprocess.run([sys.executable, "-m", "xmail.cli", "user", "list"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"no xmail data in {tmp_path / 'xmail-data'}" in proc.stderr
    assert not (tmp_path / "xmail-data").exists()
    proc = subprocess.run([sys.executable, "-m", "xmail.cli", "--init", "domain", "add", "example.com"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "domain example.com added\n"), proc.stderr
    proc = subprocess.run([sys.executable, "-m", "xmail.cli", "domain", "list"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "example.com\n"), proc.stderr


def test_a_config_file_may_create_its_data_dir(tmp_path):
    config = tmp_path / "xmail.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "new-data"}"\n')
    proc = subprocess.run([sys.executable, "-m", "xmail.cli", "--config", str(config), "domain", "add",
                           "example.com"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "domain example.com added\n"), proc.stderr
    assert (tmp_path / "new-data" / "index").is_dir()


def test_password_prompt_on_a_terminal(tmp_path):
    run(tmp_path, "domain", "add", "example.com")
    pid, fd = pty.fork()
    if pid == 0:  # child: xmailctl with a controlling terminal
        os.execv(sys.executable, [sys.executable, "-m", "xmail.cli", "--data", str(tmp_path),
                                  "user", "add", "tty@example.com"])
    transcript = b""

    def expect(text: bytes) -> None:
        nonlocal transcript
        deadline = time.monotonic() + 60
        while text not in transcript:
            assert time.monotonic() < deadline, transcript
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    transcript += os.read(fd, 1024)
                except OSError:
                    break

    expect(b"Password: ")
    os.write(fd, b"typed secret\n")
    expect(b"Password again: ")
    os.write(fd, b"typed secret\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, transcript
    assert b"typed secret" not in transcript  # not echoed
    shown = run(tmp_path, "user", "show", "tty@example.com")[1]
    assert "password_scheme\targon2\n" in shown


# -- against a running server -------------------------------------------------------------


def test_directory_changes_from_xmailctl_reach_the_running_server(server):
    data = server.settings.data_dir
    assert xmailctl(data, "domain", "list").stdout == "example.com\n"
    assert xmailctl(data, "user", "list").stdout == "alice@example.com\tenabled\nbob@example.com\tenabled\n"

    xmailctl(data, "domain", "add", "example.org")
    xmailctl(data, "user", "add", "carol@example.org", "--password-stdin", stdin="carol's pw\n")
    assert server.ctx.directory.is_local_domain("example.org")
    _, avatar, _ = login(server, b"carol@example.org", b"carol's pw")
    assert avatar.address == "carol@example.org"
    assert "Sent" in [info.name for info in server.call(avatar.mailbox.list_folders)]

    xmailctl(data, "user", "disable", "carol@example.org")
    with pytest.raises(AccountDisabled):
        login(server, b"carol@example.org", b"carol's pw")
    xmailctl(data, "user", "enable", "carol@example.org")
    xmailctl(data, "user", "passwd", "carol@example.org", "--password-stdin", stdin="changed\n")
    with pytest.raises(UnauthorizedLogin):
        login(server, b"carol@example.org", b"carol's pw")
    assert login(server, b"carol@example.org", b"changed")[1].address == "carol@example.org"

    xmailctl(data, "alias", "add", "sales@example.org", "carol@example.org")
    xmailctl(data, "domain", "alias", "example.net", "--to", "example.org")
    assert server.ctx.directory.resolve("sales@example.net") == "carol@example.org"
    assert login(server, b"SALES@example.net", b"changed")[1].address == "carol@example.org"
    assert server.ctx.directory.may_send_as("carol@example.org", "carol@example.net")

    xmailctl(data, "user", "set", "carol@example.org", "send_save=off")
    assert server.ctx.directory.setting("carol@example.org", "send_save") == "off"

    xmailctl(data, "user", "remove", "carol@example.org")
    assert server.ctx.directory.resolve("sales@example.org") is None
    with pytest.raises(UnauthorizedLogin):
        login(server, b"carol@example.org", b"changed")
    failed = xmailctl(data, "domain", "remove", "example.com", check=False)
    assert failed.returncode == 1 and "still has 2 user(s)" in failed.stderr


def test_legacy_hash_imported_by_xmailctl_is_upgraded_at_login(server):
    data = server.settings.data_dir
    xmailctl(data, "user", "add", "old@example.com", "--password-hash", md5_crypt.hash("old pw"))
    assert "password_scheme\tmd5_crypt\n" in xmailctl(data, "user", "show", "old@example.com").stdout
    assert login(server, b"old@example.com", b"old pw")[1].address == "old@example.com"
    deadline = time.monotonic() + 10
    while "argon2" not in xmailctl(data, "user", "show", "old@example.com").stdout:
        assert time.monotonic() < deadline, "the hash was not upgraded"
        time.sleep(0.1)


def test_recycle_list_and_restore_while_the_server_runs(server):
    data = server.settings.data_dir
    server.call(server.ctx.store.deliver, "alice@example.com", MESSAGE)
    inbox = server.mailbox("alice@example.com").folder("INBOX")
    (record,) = server.call(inbox.records)
    server.call(inbox.expunge, [record.uid])
    assert server.call(inbox.records) == []

    listed = xmailctl(data, "recycle", "list", "alice@example.com").stdout.splitlines()
    assert len(listed) == 1
    recycle_uid, folder, expunged, expires, size, subject = listed[0].split("\t")
    assert (folder, int(size), subject) == ("INBOX", len(MESSAGE), "restore me")
    assert expunged < expires

    restored = xmailctl(data, "recycle", "restore", "alice@example.com", recycle_uid).stdout
    back_uid = int(restored.split("\t")[2])
    assert restored == f"{recycle_uid}\tINBOX\t{back_uid}\n"
    assert back_uid > record.uid  # a new UID, never a reused one
    records = server.call(inbox.records)
    assert [r.uid for r in records] == [back_uid]
    with server.call(inbox.open_message, back_uid) as f:
        assert f.read() == MESSAGE
    assert xmailctl(data, "recycle", "list", "alice@example.com").stdout == ""
    missing = xmailctl(data, "recycle", "restore", "alice@example.com", recycle_uid, check=False)
    assert missing.returncode == 1 and "not in Recycle" in missing.stderr


def test_recycle_restore_all(server):
    data = server.settings.data_dir
    for i in range(3):
        server.call(server.ctx.store.deliver, "bob@example.com", MESSAGE.replace(b"restore-1", b"r%d" % i))
    inbox = server.mailbox("bob@example.com").folder("INBOX")
    server.call(inbox.expunge, [r.uid for r in server.call(inbox.records)])
    out = xmailctl(data, "recycle", "restore", "bob@example.com", "--all").stdout
    assert len(out.splitlines()) == 3 and all("\tINBOX\t" in line for line in out.splitlines())
    assert len(server.call(inbox.records)) == 3


def test_reindex_while_the_server_runs(server):
    data = server.settings.data_dir
    server.call(server.ctx.store.deliver, "alice@example.com", MESSAGE)
    inbox = server.mailbox("alice@example.com").folder("INBOX")
    before = server.call(inbox.records)
    xmailctl(data, "reindex", "alice@example.com")
    xmailctl(data, "reindex")
    after = server.call(inbox.records)
    assert [(r.uid, r.filename, r.size) for r in after] == [(r.uid, r.filename, r.size) for r in before]
    failed = xmailctl(data, "reindex", "ghost@example.com", check=False)
    assert failed.returncode == 1 and "no such user" in failed.stderr
