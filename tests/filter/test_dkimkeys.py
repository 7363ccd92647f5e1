"""The DKIM key store: files, modes, selectors, rotation, and the daemon's
view of it changing under `xmailctl dkim` (xmail.filter.dkimkeys)."""

from __future__ import annotations

import base64
import calendar
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from xmail.filter.dkimkeys import (
    ACTIVE,
    ED25519,
    RETIRED,
    RSA,
    DkimKeyError,
    DkimKeyStore,
    write_atomically,
)

DAY = calendar.timegm((2026, 12, 6, 10, 0, 0))


@pytest.fixture
def store(tmp_path: Path) -> DkimKeyStore:
    return DkimKeyStore(str(tmp_path / "dkim"))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_add_writes_private_files_and_a_state_file(store: DkimKeyStore, tmp_path: Path) -> None:
    selector = store.add("Example.COM", now=DAY)
    assert (selector.name, selector.algorithm, selector.state) == ("x20261206", RSA, ACTIVE)
    root = tmp_path / "dkim"
    assert mode(root) == 0o700 and mode(root / "example.com") == 0o700
    key_file = root / "example.com" / "x20261206.key"
    assert mode(key_file) == 0o600 and mode(root / "example.com" / "state.json") == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert key.key_size == 2048  # type: ignore[union-attr]
    state = json.loads((root / "example.com" / "state.json").read_text())
    assert state["selectors"] == [{"name": "x20261206", "algorithm": "rsa", "created": DAY,
                                   "state": "active"}]
    # No temporary file is left beside it.
    names = sorted(p.name for p in (root / "example.com").iterdir())
    assert names == [".lock", "state.json", "x20261206.key"]


def test_selector_names_are_dated_unique_and_marked_for_ed25519(store: DkimKeyStore) -> None:
    names = [store.add("example.com", RSA, now=DAY).name, store.add("example.com", ED25519, now=DAY).name,
             store.add("example.com", RSA, now=DAY).name, store.add("example.com", ED25519, now=DAY).name,
             store.add("example.com", RSA, now=DAY + 86400).name]
    assert names == ["x20261206", "x20261206e", "x20261206-2", "x20261206-2e", "x20261207"]


def test_txt_records(store: DkimKeyStore) -> None:
    rsa_sel = store.add("example.com", RSA, now=DAY)
    ed_sel = store.add("example.com", ED25519, now=DAY)
    rsa_txt = store.txt_record("example.com", rsa_sel.name)
    assert rsa_txt.startswith("v=DKIM1; k=rsa; p=MIIB")
    public = serialization.load_der_public_key(base64.b64decode(rsa_txt.split("p=")[1]))
    assert public.key_size == 2048  # type: ignore[union-attr]
    ed_txt = store.txt_record("example.com", ed_sel.name)
    assert ed_txt.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(ed_txt.split("p=")[1])) == 32  # RFC 8463 §4.2: the raw key


def test_rotate_retires_only_the_same_algorithm(store: DkimKeyStore) -> None:
    first = store.add("example.com", RSA, now=DAY)
    ed = store.add("example.com", ED25519, now=DAY)
    new, retired = store.rotate("example.com", RSA, now=DAY + 86400)
    assert [s.name for s in retired] == [first.name]
    states = {s.name: s.state for s in store.selectors("example.com")}
    assert states == {first.name: RETIRED, ed.name: ACTIVE, new.name: ACTIVE}
    assert {k.selector for k in store.signing_keys("example.com")} == {ed.name, new.name}


def test_remove_only_retired(store: DkimKeyStore, tmp_path: Path) -> None:
    first = store.add("example.com", now=DAY)
    with pytest.raises(DkimKeyError, match="is active"):
        store.remove("example.com", first.name)
    store.rotate("example.com", now=DAY)
    store.remove("example.com", first.name)
    assert first.name not in [s.name for s in store.selectors("example.com")]
    assert not (tmp_path / "dkim" / "example.com" / f"{first.name}.key").exists()
    with pytest.raises(DkimKeyError, match="no DKIM selector 'x20261206'"):
        store.remove("example.com", first.name)


@pytest.mark.parametrize("domain", ["../etc", "a/b", "", "exa mple.com", "1.2.3.4"])
def test_a_bad_domain_never_becomes_a_path(store: DkimKeyStore, domain: str, tmp_path: Path) -> None:
    with pytest.raises(DkimKeyError):
        store.add(domain)
    assert not (tmp_path / "etc").exists()
    assert store.signing_keys(domain) == ()


def test_signing_keys_follow_changes_made_by_another_store(store: DkimKeyStore, tmp_path: Path) -> None:
    # The daemon's store and xmailctl's are separate objects (processes).
    cli = DkimKeyStore(str(tmp_path / "dkim"))
    assert store.signing_keys("example.com") == ()
    first = cli.add("example.com", now=DAY)
    assert [k.selector for k in store.signing_keys("example.com")] == [first.name]
    cached = store.signing_keys("example.com")
    assert store.signing_keys("example.com") is cached  # unchanged file: no re-read
    new, _ = cli.rotate("example.com", now=DAY)
    assert [k.selector for k in store.signing_keys("example.com")] == [new.name]
    ed = cli.add("example.com", ED25519, now=DAY)
    assert [k.selector for k in store.signing_keys("example.com")] == [new.name, ed.name]
    assert [k.algorithm for k in store.signing_keys("example.com")] == [RSA, ED25519]


def test_write_atomically_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_atomically(str(path), b"one")
    before = os.stat(path).st_ino
    write_atomically(str(path), b"two")
    assert path.read_bytes() == b"two" and os.stat(path).st_ino != before
    assert mode(path) == 0o600 and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_damaged_state_file_names_the_domain(store: DkimKeyStore, tmp_path: Path) -> None:
    store.add("example.com", now=DAY)
    (tmp_path / "dkim" / "example.com" / "state.json").write_text("{not json")
    with pytest.raises(DkimKeyError, match="example.com: unreadable DKIM state"):
        store.signing_keys("example.com")


def test_remove_for_a_domain_without_keys_creates_nothing(store: DkimKeyStore, tmp_path: Path) -> None:
    with pytest.raises(DkimKeyError, match="example.org has no DKIM selector 'x1'"):
        store.remove("example.org", "x1")
    assert not (tmp_path / "dkim" / "example.org").exists()
