# -*- test-case-name: tests.sieve.test_storage -*-
"""The scripts store: owners, the active mark, quotas, the delivery chain."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from xmail.db.environment import IndexEnvironment
from xmail.sieve.interfaces import (
    MAX_SCRIPTS,
    ISieveScripts,
    NoSuchScript,
    ScriptActive,
    ScriptExists,
    SieveQuotaError,
    domain_owner,
)
from xmail.sieve.storage import SieveScripts

BOB = "bob@example.com"


@pytest.fixture
def scripts(tmp_path):
    env = IndexEnvironment(str(tmp_path / "index"))
    env.open()
    yield SieveScripts(env)
    env.close()


def test_implements_the_interface(scripts) -> None:
    assert verifyObject(ISieveScripts, scripts)


def test_put_list_get_activate_rename_remove(scripts) -> None:
    scripts.put(BOB, "main", "keep;")
    scripts.put(BOB, "other", "discard;")
    assert scripts.list(BOB) == [("main", False), ("other", False)]
    scripts.activate(BOB, "main")
    assert scripts.list(BOB) == [("main", True), ("other", False)]
    assert scripts.get(BOB, "other") == "discard;"
    with pytest.raises(ScriptActive):
        scripts.remove(BOB, "main")
    with pytest.raises(ScriptExists):
        scripts.rename(BOB, "main", "other")
    scripts.rename(BOB, "main", "renamed")
    assert scripts.active(BOB) == "renamed"  # the mark follows the rename
    scripts.remove(BOB, "other")
    with pytest.raises(NoSuchScript):
        scripts.remove(BOB, "other")
    with pytest.raises(NoSuchScript):
        scripts.activate(BOB, "missing")
    scripts.activate(BOB, None)
    assert scripts.active(BOB) is None
    assert scripts.remove_any(BOB, "renamed") is True
    assert scripts.list(BOB) == []


def test_quotas_count_scripts_and_size(scripts) -> None:
    for i in range(MAX_SCRIPTS):
        scripts.put(BOB, f"s{i:02}", "keep;")
    with pytest.raises(SieveQuotaError) as refused:
        scripts.put(BOB, "one-more", "keep;")
    assert refused.value.code == "QUOTA/MAXSCRIPTS"
    scripts.put(BOB, "s00", "discard;")  # a replacement still fits
    assert scripts.space_for(BOB, "s01", 10) is None
    assert scripts.space_for(BOB, "new", 10).code == "QUOTA/MAXSCRIPTS"
    too_big = scripts.max_script_size + 1
    assert scripts.space_for(BOB, "s01", too_big).code == "QUOTA/MAXSIZE"
    with pytest.raises(SieveQuotaError):
        scripts.put(BOB, "s01", "#" * too_big)


def test_script_names_follow_rfc5804() -> None:
    valid = SieveScripts.valid_name
    assert valid(None, "vacation rules ü")
    for bad in ("", "a\nb", "a\rb", "a\0b", "a\x7fb", "x" * 1000):
        assert not valid(None, bad)


def test_the_chain_runs_before_user_managed_after(scripts) -> None:
    assert scripts.chain(BOB) == []
    scripts.put(domain_owner("example.com", "after"), "z-after", "keep;")
    scripts.put(domain_owner("example.com", "before"), "b2", "keep;")
    scripts.put(domain_owner("example.com", "before"), "b1", "keep;")
    scripts.put(BOB, "main", "keep;")
    scripts.put(BOB, "unused", "discard;")
    scripts.put(BOB, "xmail-vacation", "keep;")
    assert [(o, n) for o, n, _t in scripts.chain(BOB)] == [
        ("before:example.com", "b1"), ("before:example.com", "b2"), (BOB, "xmail-vacation"),
        ("after:example.com", "z-after")]
    scripts.activate(BOB, "main")
    assert [n for _o, n, _t in scripts.chain(BOB)] == ["b1", "b2", "main", "xmail-vacation", "z-after"]
    # Another domain's user runs none of them.
    assert scripts.chain("carol@example.org") == []
    assert [n for _o, n, _t in scripts.domain_chain("example.com")] == ["b1", "b2", "z-after"]


def test_remove_owner_takes_every_script_and_the_mark(scripts) -> None:
    scripts.put(BOB, "main", "keep;")
    scripts.put(BOB, "xmail-forward", 'redirect "x@example.org";')
    scripts.put("carol@example.com", "main", "keep;")
    scripts.activate(BOB, "main")
    assert sorted(scripts.remove_owner(BOB)) == ["main", "xmail-forward"]
    assert scripts.list(BOB) == [] and scripts.active(BOB) is None and scripts.chain(BOB) == []
    assert scripts.list("carol@example.com") == [("main", False)]
