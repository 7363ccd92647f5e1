# -*- test-case-name: tests.store.test_maildir_links -*-
"""Regression file for issue 16 #11: links and foreign files in a Maildir.

Someone with write access to a Maildir (a shell account, a foreign MDA)
replaces a message file with a symlink to /etc/shadow, or lets a file grow
after delivery.  FETCH and RETR must not serve the link's target nor more
than the recorded size; reindex and the new/ pickup must not index links.
The acceptance tests use imaplib and poplib against the real server.
"""

from __future__ import annotations

import errno
import imaplib
import os
import poplib
from typing import Any

import pytest

from tests.conftest import PASSWORD, RunningServer
from tests.store.conftest import SyncStore, result_of
from xmail.store import maildir
from xmail.store.interfaces import NoSuchMessage
from xmail.store.reindex import pickup_new

ALICE = "alice@example.com"
SECRET = b"root:$6$TOPSECRET-HASH:19000:0:99999:7:::\n"


def _message(subject: str) -> bytes:
    return (f"From: bob@example.com\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.com>\r\n\r\nbody of {subject}\r\n").encode()


def _secret_file(tmp_path: Any) -> str:
    path = os.path.join(str(tmp_path), "shadow")
    with open(path, "wb") as f:
        f.write(SECRET)
    return path


def _inbox(server: RunningServer) -> Any:
    return server.call(lambda: server.ctx.store.mailbox(ALICE).folder("INBOX"))


def _plant_link(server: RunningServer, uid: int, target: str) -> None:
    """Replace the message file of uid with a symlink to target."""
    path = server.call(_inbox(server).message_path, uid)
    os.unlink(path)
    os.symlink(target, path)


# --- the daemon --------------------------------------------------------------------


def test_imap_fetch_of_a_planted_symlink_sends_no_target_bytes(server: RunningServer, tmp_path: Any) -> None:
    uids = [server.call(server.ctx.store.deliver, ALICE, _message(f"m{i}")).uid for i in range(2)]
    _plant_link(server, uids[0], _secret_file(tmp_path))
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        status, data = imap.uid("FETCH", str(uids[0]), "(BODY.PEEK[])")
        wire = repr(data).encode()
        assert b"TOPSECRET" not in wire
        assert status == "OK" and data == [None]  # UID FETCH: no such message, no error
        # By sequence number: NO [EXPUNGEISSUED] or OK without the message
        # (RFC 2180 §4.1), either way not the link's target.
        try:
            status, data = imap.fetch("1", "(RFC822)")
        except imaplib.IMAP4.error as e:
            data = [str(e)]
        assert b"TOPSECRET" not in repr(data).encode()
        assert not any(isinstance(item, tuple) for item in data)
        # The connection stays usable and the other message is served.
        status, data = imap.fetch("2", "(BODY.PEEK[TEXT])")
        assert status == "OK" and data[0][1] == b"body of m1\r\n"
    finally:
        imap.logout()


def test_pop3_retr_of_a_planted_symlink_is_an_error(server: RunningServer, tmp_path: Any) -> None:
    uids = [server.call(server.ctx.store.deliver, ALICE, _message(f"m{i}")).uid for i in range(2)]
    _plant_link(server, uids[0], _secret_file(tmp_path))
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    try:
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        with pytest.raises(poplib.error_proto) as e:
            pop.retr(1)
        assert b"TOPSECRET" not in e.value.args[0]
        _resp, lines, _octets = pop.retr(2)
        assert lines[-1] == b"body of m1"
    finally:
        pop.quit()


def test_pop3_retr_and_imap_fetch_stop_at_the_recorded_size(server: RunningServer) -> None:
    data = _message("grown")
    uid = server.call(server.ctx.store.deliver, ALICE, data).uid
    path = server.call(_inbox(server).message_path, uid)
    with open(path, "ab") as f:  # the file grows behind the index's back
        f.write(b"APPENDED-LATER\r\n" * 1000)
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    try:
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        _resp, lines, octets = pop.retr(1)
        assert b"APPENDED-LATER" not in b"".join(lines)
        assert b"\r\n".join(lines) + b"\r\n" == data
    finally:
        pop.quit()
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        status, fetched = imap.fetch("1", "(BODY.PEEK[])")
        assert status == "OK" and fetched[0][1] == data
    finally:
        imap.logout()


@pytest.mark.parametrize("across_file_systems", [False, True], ids=["link", "copy"])
def test_imap_copy_of_a_planted_symlink_carries_no_target_bytes(server: RunningServer, tmp_path: Any,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 across_file_systems: bool) -> None:
    # COPY hard-links the message file, or copies it when the folders are on
    # different file systems (EXDEV): neither may turn the link into a file
    # holding the target's bytes.
    if across_file_systems:
        real_link = os.link

        def link(src: str, dest: str, *args: Any, **kw: Any) -> None:
            if os.path.basename(os.path.dirname(src)) == "cur" and not src.endswith(".copy"):
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            real_link(src, dest, *args, **kw)
        monkeypatch.setattr(maildir.os, "link", link)
    uids = [server.call(server.ctx.store.deliver, ALICE, _message(f"m{i}")).uid for i in range(2)]
    _plant_link(server, uids[0], _secret_file(tmp_path))
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        try:
            imap.copy("1:2", "Archive")
        except imaplib.IMAP4.error:
            pass  # refusing the copy is fine too
        imap.select("Archive")
        _status, data = imap.fetch("1:*", "(BODY.PEEK[])")
        assert b"TOPSECRET" not in repr(data).encode()
        _status, data = imap.search(None, "BODY", "TOPSECRET")
        assert data == [b""]
        imap.noop()
    finally:
        imap.logout()


# --- the store -----------------------------------------------------------------------


def test_open_message_refuses_a_symlink_and_a_fifo(sync: SyncStore, tmp_path: Any) -> None:
    inbox = sync.mailbox().folder("INBOX")
    for i in range(2):
        result_of(inbox.append(_message(f"m{i}")))
    path = inbox.message_path(1)
    os.unlink(path)
    os.symlink(_secret_file(tmp_path), path)
    with pytest.raises(NoSuchMessage):
        inbox.open_message(1)
    path = inbox.message_path(2)
    os.unlink(path)
    os.mkfifo(path)  # would block a plain open() for reading forever
    with pytest.raises(NoSuchMessage):
        inbox.open_message(2)


def test_message_file_reads_never_pass_the_size(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "m")
    with open(path, "wb") as f:
        f.write(b"0123456789")
    with maildir.MessageFile.open(path, 4) as f:
        assert f.read() == b"0123"
        f.seek(2)
        assert f.read(100) == b"23"
        assert f.read(1) == b""
        f.seek(0)
        assert f.read(3) + f.read(3) == b"0123"
    with maildir.MessageFile.open(path, 100) as f:  # the file is shorter than recorded
        assert f.read() == b"0123456789"


def test_reindex_and_new_pickup_do_not_index_links(sync: SyncStore, tmp_path: Any) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    result_of(inbox.append(_message("kept")))
    result_of(inbox.append(_message("replaced")))
    secret = _secret_file(tmp_path)
    # A recorded message whose file became a link, a link under a new name
    # in cur/, and one dropped into new/.
    path = inbox.message_path(2)
    os.unlink(path)
    os.symlink(secret, path)
    cur = os.path.join(mailbox.root, "cur")
    new = os.path.join(mailbox.root, "new")
    os.symlink(secret, os.path.join(cur, "1600000000.M1P1.host:2,S"))
    os.symlink(secret, os.path.join(new, "1600000001.M1P1.host"))

    counts = result_of(sync.store.reindex(ALICE))
    assert counts == {"kept": 1, "new": 0, "removed": 1, "skipped": 3}
    assert [r.uid for r in inbox.records()] == [1]
    # The new/ pickup when a folder is opened skips the link as well.
    os.symlink(secret, os.path.join(new, "1600000002.M1P1.host"))
    assert result_of(pickup_new(sync.store, inbox.fid)) == 0
    assert [r.uid for r in inbox.records()] == [1]


def test_copy_across_file_systems_refuses_a_link(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(src: str, dest: str, *args: Any, **kw: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    link = os.path.join(str(tmp_path), "planted")
    os.symlink(_secret_file(tmp_path), link)
    with monkeypatch.context() as m:
        m.setattr(maildir.os, "link", cross_device)
        with pytest.raises(maildir.NotAMessageFile):
            maildir.link_or_copy(link, os.path.join(str(tmp_path), "copied"))
    assert sorted(os.listdir(str(tmp_path))) == ["planted", "shadow"]  # no copy, no temporary file
