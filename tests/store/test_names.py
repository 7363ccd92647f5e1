# -*- test-case-name: tests.store.test_names -*-
"""Folder names -> Maildir++ directories, addresses -> user roots."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmail.store import names
from xmail.store.interfaces import InvalidFolderName, StoreError


@pytest.mark.parametrize("name, dirname", [
    ("INBOX", ""),
    ("Sent", ".Sent"),
    ("a/b", ".a.b"),
    ("INBOX/x", ".INBOX.x"),
    ("v1.2", ".v1~2e2"),
    ("home~user", ".home~7euser"),
    ("Entwürfe", ".Entw&APw-rfe"),
    ("日本語", ".&ZeVnLIqe-"),
    ("R&D", ".R&-D"),
])
def test_folder_dirname(name: str, dirname: str) -> None:
    assert names.folder_dirname(name) == dirname
    if dirname:
        assert names.folder_name_from_dirname(dirname) == name


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12),
                min_size=1, max_size=4))
def test_any_valid_name_round_trips_to_one_safe_entry(parts: list[str]) -> None:
    name = "/".join(parts)
    try:
        name = names.normalize(name)
        dirname = names.folder_dirname(name)
    except InvalidFolderName:
        return
    if name == "INBOX":
        return
    assert dirname.startswith(".") and "/" not in dirname and "\0" not in dirname
    assert dirname not in (".", "..")
    assert names.folder_name_from_dirname(dirname) == name


def test_normalize_inbox_case() -> None:
    assert names.normalize("inbox") == "INBOX"
    assert names.normalize("Inbox/Sub") == "INBOX/Sub"
    assert names.normalize("Inboxes") == "Inboxes"


@pytest.mark.parametrize("bad", ["", "/", "a/", "/a", "a//b", "..", "a/..", ".", "x\0", "x\r", "x\n",
                                 "x\x7f", "é" * 128, "a*", "%"])
def test_normalize_refuses(bad: str) -> None:
    with pytest.raises(InvalidFolderName):
        names.normalize(bad)


def test_name_of_255_bytes_is_fine_256_is_not() -> None:
    assert names.normalize("x" * 255)
    with pytest.raises(InvalidFolderName):
        names.normalize("x" * 256)


def test_not_folder_entries() -> None:
    for entry in ("cur", "new", "tmp", ".", "..", "dovecot-keywords", ".a..b", ".&ZeVn!-"):
        assert names.folder_name_from_dirname(entry) is None


def test_user_root_stays_inside_mail_dir(tmp_path) -> None:
    mail = str(tmp_path / "mail")
    assert names.user_root(mail, "Alice@Example.COM") == os.path.join(mail, "example.com", "alice")
    # The one address rule (xmail.addresses) refuses ".hidden" and "a/b";
    # the escaping below it stays as a second line of defence.
    assert names._escape_local(".hidden") == "%2ehidden"
    assert names._escape_local("a/b") == "a%2fb"
    for bad in (".hidden@example.com", "a/b@example.com",
                "../x@example.com", "x@..", "x@a/b", "x@.example.com", "no-at-sign", "@example.com",
                "x@", "x y@example.com"):
        try:
            root = names.user_root(mail, bad)
        except StoreError:
            continue
        assert os.path.dirname(os.path.dirname(os.path.abspath(root))) == os.path.abspath(mail)
        assert not os.path.basename(root).startswith(".")
