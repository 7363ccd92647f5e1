# -*- test-case-name: tests.sieve.test_corpus -*-
"""The Pigeonhole reference corpus (issue 18): every script in
`corpus/scripts/` on every message in `corpus/messages/`, our engine's
actions against Debian's `sieve-test` (tests.support.sievetest).

The reference is computed at test time (never stored): one sieve-test run
per pair, at most four at once.  Includes resolve from `corpus/include/
personal` (`:personal`) and `corpus/include/global` (`:global`) on both sides.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support.sievetest import Envelope, Pigeonhole, Reference, envelopes

CORPUS = Path(__file__).parent / "corpus"
SCRIPTS = sorted((CORPUS / "scripts").glob("*.sieve"))
MESSAGES = sorted((CORPUS / "messages").glob("*.eml"))
PERSONAL = sorted((CORPUS / "include" / "personal").glob("*.sieve"))
GLOBAL = sorted((CORPUS / "include" / "global").glob("*.sieve"))
DEFAULT_ENVELOPE = Envelope("sender@example.org", "user@example.com")
ENVELOPES = envelopes(CORPUS / "messages" / "envelopes.txt")


def envelope_of(message: Path) -> Envelope:
    return ENVELOPES.get(message.name, DEFAULT_ENVELOPE)


@pytest.fixture(scope="session")
def pigeonhole() -> Pigeonhole:
    # Not tmp_path_factory: pytest's base directory is 0700 and sieve-test,
    # run as root, drops to nobody, who must reach the files.
    root = Path(tempfile.mkdtemp(prefix="xmail-sieve-test-"))
    os.chmod(root, 0o711)
    try:
        yield Pigeonhole(root / "ph", personal=PERSONAL, global_=GLOBAL)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def corpus(pigeonhole: Pigeonhole) -> dict[tuple[str, str], Reference]:
    """sieve-test's answer for every (script, message) pair."""
    scripts = [(s.name, pigeonhole.add_script(s.name, s.read_text())) for s in SCRIPTS]
    messages = [(m.name, pigeonhole.add_message(m.name, m.read_bytes()), envelope_of(m))
                for m in MESSAGES]
    keys, jobs = [], []
    for script_name, script in scripts:
        for message_name, message, envelope in messages:
            keys.append((script_name, message_name))
            jobs.append((script, message, envelope))
    return dict(zip(keys, pigeonhole.run_all(jobs), strict=True))


def test_corpus_size() -> None:
    assert len(SCRIPTS) >= 100
    assert len(MESSAGES) >= 30
    assert set(ENVELOPES) <= {m.name for m in MESSAGES}


def test_pigeonhole_accepts_every_script(corpus: dict[tuple[str, str], Reference]) -> None:
    refused = sorted({script for (script, _), ref in corpus.items() if not ref.compiled})
    assert refused == [], "\n".join(
        f"{name}: {corpus[(name, MESSAGES[0].name)].output}" for name in refused)


def test_every_pair_has_actions(corpus: dict[tuple[str, str], Reference]) -> None:
    # The implicit keep makes this true of every correct run; an empty list
    # would mean the output parser missed something.
    empty = [pair for pair, ref in corpus.items() if ref.compiled and not ref.actions]
    assert empty == []
