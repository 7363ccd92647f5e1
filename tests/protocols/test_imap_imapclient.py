"""imapclient against the real server: its response parser checks our
ENVELOPE / BODYSTRUCTURE / FETCH grammar on a MIME corpus, and the common
client flows work end to end."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from imapclient import IMAPClient

from tests.conftest import PASSWORD
from tests.protocols.imap_support import deliver, message

MIXED = (
    b"From: =?UTF-8?B?5byg5LiJ?= <zhang@example.cn>\r\n"
    b"To: alice@example.com, Group: a@b.c, d@e.f;\r\n"
    b"Subject: =?UTF-8?Q?R=C3=A9sum=C3=A9_attached?=\r\n"
    b"Date: Tue, 2 Jan 2024 08:00:00 +0800\r\n"
    b"Message-ID: <mixed@example.cn>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 au lait\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Caf\xc3\xa9</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename*=UTF-8''%E7%AE%80%E5%8E%86.pdf\r\n"
    b"\r\n"
    b"JVBERi0xLjQKJcfsj6IK\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@example.org\r\n"
    b"Subject: forwarded\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--outer--\r\n"
)

BROKEN = (
    b"From: broken@example.com\r\n"
    b"Subject: no boundary\r\n"
    b"Content-Type: multipart/mixed\r\n"
    b"\r\n"
    b"just text\r\n"
)


@pytest.fixture
def client(server):  # type: ignore[no-untyped-def]
    c = IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=20)
    c.login("alice@example.com", PASSWORD)
    yield c
    try:
        c.logout()
    except Exception:
        pass


def test_mime_corpus_structures(server, client) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", MIXED)
    deliver(server, "alice@example.com", BROKEN)
    client.select_folder("INBOX")
    data = client.fetch([1, 2], ["ENVELOPE", "BODYSTRUCTURE", "BODY"])
    env = data[1][b"ENVELOPE"]
    assert env.subject == b"=?UTF-8?Q?R=C3=A9sum=C3=A9_attached?="
    assert env.message_id == b"<mixed@example.cn>"
    assert env.from_[0].mailbox == b"zhang" and env.from_[0].host == b"example.cn"
    assert env.date.date() == datetime.date(2024, 1, 2)
    body = data[1][b"BODYSTRUCTURE"]
    assert body.is_multipart
    parts, subtype = body[0], body[1]
    assert subtype == b"MIXED" and len(parts) == 3
    assert parts[0][1] == b"ALTERNATIVE"
    assert parts[1][0] == b"APPLICATION" and parts[1][1] == b"PDF"
    assert parts[2][0] == b"MESSAGE" and parts[2][1] == b"RFC822"
    assert data[2][b"BODYSTRUCTURE"][0] == b"TEXT"  # broken multipart read as text
    sections = client.fetch([1], ["BODY.PEEK[1.1]", "BODY.PEEK[2.MIME]", "BODY.PEEK[3.HEADER]",
                                  "BODY.PEEK[3.1]", "BODY.PEEK[1.2]<0.3>"])[1]
    assert sections[b"BODY[1.1]"] == b"Caf=C3=A9 au lait"
    assert sections[b"BODY[2.MIME]"].startswith(b"Content-Type: application/pdf\r\n")
    assert sections[b"BODY[3.HEADER]"] == b"From: inner@example.org\r\nSubject: forwarded\r\n\r\n"
    assert sections[b"BODY[3.1]"] == b"inner body"  # the CRLF before a boundary is the boundary's
    assert sections[b"BODY[1.2]<0>"] == b"<p>"
    header = client.fetch([1], ["BODY.PEEK[HEADER.FIELDS.NOT (FROM TO DATE MESSAGE-ID MIME-VERSION)]"])[1]
    [value] = [v for k, v in header.items() if k.startswith(b"BODY[HEADER.FIELDS.NOT")]
    assert value == (b"Subject: =?UTF-8?Q?R=C3=A9sum=C3=A9_attached?=\r\n"
                     b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n')


def test_search_on_decoded_text(server, client) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", MIXED)
    deliver(server, "alice@example.com", message("plain"))
    client.select_folder("INBOX")
    assert client.search(["SUBJECT", "résumé"], charset="UTF-8") == [1]
    assert client.search(["FROM", "张三"], charset="UTF-8") == [1]
    assert client.search(["BODY", "café"], charset="UTF-8") == [1]
    assert client.search(["TEXT", "hi there"]) == [2]
    assert client.search(["SENTON", datetime.date(2024, 1, 2)]) == [1]


def test_large_message_streams_and_partial_fetch(server, client) -> None:  # type: ignore[no-untyped-def]
    payload = b"".join(b"line %07d of a large message body\r\n" % i for i in range(150000))
    big = message("big") + payload
    deliver(server, "alice@example.com", big)
    client.select_folder("INBOX", readonly=True)
    data = client.fetch([1], ["RFC822.SIZE", "BODY.PEEK[]"])[1]
    assert data[b"RFC822.SIZE"] == len(big)
    assert hashlib.sha256(data[b"BODY[]"]).digest() == hashlib.sha256(big).digest()
    part = client.fetch([1], ["BODY.PEEK[TEXT]<1000000.50>"])[1][b"BODY[TEXT]<1000000>"]
    assert part == (b"hi there\r\n" + payload)[1000000:1000050]


def test_folder_flows(client) -> None:  # type: ignore[no-untyped-def]
    client.create_folder("Work/Reports")
    assert client.folder_exists("Work/Reports")
    client.rename_folder("Work/Reports", "Work/Old Reports")
    names = [f[2] for f in client.list_folders()]
    assert "Work/Old Reports" in names and "Work" in names
    client.subscribe_folder("Work/Old Reports")
    assert "Work/Old Reports" in [f[2] for f in client.list_sub_folders()]
    special = {f[2]: f[0] for f in client.list_folders()}
    assert b"\\Sent" in special["Sent"]
    assert client.find_special_folder(b"\\Trash") == "Trash"
    client.delete_folder("Work/Old Reports")
    assert not client.folder_exists("Work/Old Reports")
    assert client.namespace().personal == (("", "/"),)
    assert client.id_({"name": "imapclient"})[0][:2] == (b"name", b"xmail")


def test_append_store_copy_move_expunge(client) -> None:  # type: ignore[no-untyped-def]
    client.select_folder("INBOX")
    for i in range(3):
        client.append("INBOX", message(f"m{i}"), flags=[b"$Label1"] if i == 0 else [])
    uids = client.search("ALL")
    assert uids == [1, 2, 3]
    assert client.get_flags([1])[1] == (b"$Label1", b"\\Recent")
    client.add_flags([2], [b"\\Flagged"])
    assert client.search(["FLAGGED"]) == [2]
    client.remove_flags([1], [b"$Label1"])
    assert client.search(["KEYWORD", "$Label1"]) == []
    client.copy([1, 2], "Archive")
    client.move([3], "Trash")
    assert client.search("ALL") == [1, 2]
    client.delete_messages([1])
    client.uid_expunge([1])
    assert client.search("ALL") == [2]
    assert client.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 2
    assert client.folder_status("Recycle", ["MESSAGES"])[b"MESSAGES"] == 1
    client.unselect_folder()


def test_chinese_folder_names_with_imapclient(server, client) -> None:  # type: ignore[no-untyped-def]
    client.create_folder("项目/二〇二四")
    names = [f[2] for f in client.list_folders()]
    assert "项目" in names and "项目/二〇二四" in names
    deliver(server, "alice@example.com", message("中文"), folder="项目/二〇二四")
    info = client.select_folder("项目/二〇二四")
    assert info[b"EXISTS"] == 1
    client.rename_folder("项目/二〇二四", "归档")
    assert client.folder_status("归档", ["MESSAGES"])[b"MESSAGES"] == 1


def test_mime_corpus_over_the_wire_matches_the_grammar(server) -> None:  # type: ignore[no-untyped-def]
    # The strict RFC 3501 §9 reader and checks of the FETCH model tests, applied
    # to what the server actually sends for every message of the MIME corpus.
    from tests.protocols.imap_support import Wire
    from tests.protocols.test_imap_fetch_model import CORPUS_FILES, check_body, check_envelope, read

    assert CORPUS_FILES, "the MIME corpus (tests/data/mime) is missing"
    for path in CORPUS_FILES:
        deliver(server, "alice@example.com", path.read_bytes())
    with Wire(server.port("imap")) as w:
        w.login()
        w.ok("EXAMINE INBOX")
        for seq, path in enumerate(CORPUS_FILES, 1):
            for att, extended in (("BODYSTRUCTURE", True), ("BODY", False)):
                [line] = w.ok(f"FETCH {seq} ({att} ENVELOPE)")
                prefix = b"* %d FETCH (%s " % (seq, att.encode())
                assert line.startswith(prefix), (path.name, line[:80])
                rest = line[len(prefix):-1]
                envelope_at = rest.rindex(b" ENVELOPE (")
                check_body(read(rest[:envelope_at]), extended=extended)
                check_envelope(read(rest[envelope_at + len(b" ENVELOPE "):]))
