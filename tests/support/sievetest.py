# -*- test-case-name: tests.sieve.test_corpus -*-
"""Pigeonhole's `sieve-test` (Debian dovecot-sieve) as the reference Sieve
implementation, and its output normalised into `xmail.sieve.actions.describe()`
lines so a test compares two lists of strings.

`Pigeonhole(root, ...)` writes a dovecot config, a Maildir tree with a few
folders (so `mailboxexists` has something to look at), the personal and
global include directories, and copies of the scripts and messages (sieve-test
writes `NAME.svbin` beside each script it compiles, and as root it runs as
`nobody`, who must read everything).  `run_all()` runs many (script,
message) pairs with at most four sieve-test processes at once.

Where the two implementations represent the same decision differently, the
normalisation bridges it (and only there; never a semantic difference):

- sieve-test writes every store action as "store message in folder: X"; an
  explicit `keep`, `fileinto "INBOX"` and the implicit keep all read
  "store message in folder: INBOX".  Both sides are normalised so a store
  into INBOX reads `keep [flags]` (IMAP mailbox names: INBOX is
  case-insensitive, RFC 3501 §5.1).
- ":copy" (RFC 3894) is printed as "+ preserve implicit keep".
- Flags are printed space-separated in the case given (system flags lower
  case); describe() lower-cases and sorts them.
- A reject reason is printed on one line with every control character
  replaced by '?'; a multi-line string's lines end in CRLF in Pigeonhole
  (RFC 5228 §2.4.2 text: is CRLF-delimited) whatever the script file's line
  ends were.  `reason_as_printed()` applies both to our side.
- `ereject` (RFC 5429) is not available in Debian's Pigeonhole 2.3
  ("unknown Sieve capability"): `as_pigeonhole_script()` turns a script's
  `ereject` into `reject` (same semantics in a script: both cancel the
  implicit keep and conflict with the same actions; they differ only in how
  the MTA refuses), and the caller maps its "reject" back to "ereject".
- A runtime error makes sieve-test print no action list and "final result:
  failed; resolved with successful implicit keep": that is `["keep"]`, as
  RFC 5228 §2.10.6 requires and as our Outcome holds on an error.
- Pigeonhole 2.3.19 has a `:matches` bug: a pattern that starts with "?"
  and has a later "*" matches without checking the literal after the "?"
  ("?x*" matches "hi", "???:*" matches "Signed contract").  The corpus
  avoids such patterns rather than copy the bug.
- Pigeonhole's `:matches` "?" takes one octet, not one character (RFC 5228
  §2.7.1 says character), so next to a non-ASCII character it splits it
  and the result is invalid UTF-8; our engine takes a character.  The
  corpus puts "?" only where the character is ASCII.  (Pigeonhole 2.3.19
  also panics, "pool_get_exp_grown_size: assertion failed", on `"*e?*"`
  against "Información importante".)
- sieve-test cannot take a null envelope sender (`-f "<>"` is refused), so
  the corpus has none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from xmail.message import mutf7

SIEVE_TEST = shutil.which("sieve-test") or "/usr/bin/sieve-test"
DOVECONF = shutil.which("doveconf") or "/usr/bin/doveconf"

#: Folders that exist in the reference mailbox tree ("/" separated).
FOLDERS: tuple[str, ...] = (
    "Work", "Work/Projects", "Lists", "Lists/Dev", "Lists/Announce", "Junk",
    "Archive", "Archive/2026", "Family", "Receipts", "Newsletters", "销售部",
)

#: At most this many sieve-test processes at once (2 cores shared).
WORKERS = 4

#: Extensions beyond Pigeonhole's defaults the corpus uses.
EXTRA_EXTENSIONS = ("+vacation-seconds", "+spamtest", "+spamtestplus", "+virustest")

_CONFIG = """\
# written by tests/support/sievetest.py for one test session
{uids}mail_location = maildir:{root}/mail
log_path = /dev/stderr
info_log_path = /dev/stderr
namespace inbox {{
  inbox = yes
  separator = /
}}
plugin {{
  sieve = file:{root}/personal
  sieve_global = {root}/global
  sieve_extensions = {extensions}
  # RFC 5235: "X-Spam-Score: 7.5" out of 10 (the score type scales it to 1..10).
  sieve_spamtest_status_type = score
  sieve_spamtest_status_header = X-Spam-Score: ([[:digit:]]+\\.?[[:digit:]]*)
  sieve_spamtest_max_value = 10
  # "X-Virus-Status: clean|suspicious|infected" (RFC 5235 §3.2 values 1, 3, 5).
  sieve_virustest_status_type = text
  sieve_virustest_status_header = X-Virus-Status: ([a-z]+)
  sieve_virustest_text_value1 = clean
  sieve_virustest_text_value3 = suspicious
  sieve_virustest_text_value5 = infected
}}
"""

_NOBODY = 65534

#: The one action line of a run where sieve-test itself failed.
CRASHED = "<sieve-test crashed>"


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str
    rcpt_to: str
    orig_rcpt: str = ""


@dataclass(frozen=True, slots=True)
class Reference:
    """What sieve-test decided for one pair."""

    actions: tuple[str, ...]
    compiled: bool
    failed: bool  # a runtime error, resolved with the implicit keep
    output: str  # stdout + stderr, for failure messages


def reason_as_printed(reason: str) -> str:
    """A reject reason the way sieve-test prints it (see the module docstring)."""
    reason = re.sub(r"\r?\n", "\r\n", reason)
    return "".join("?" if ord(c) < 0x20 or c == "\x7f" else c for c in reason)


def as_pigeonhole_script(text: str) -> str:
    """`ereject` is missing from Debian's Pigeonhole: run `reject` instead."""
    return re.sub(r"\bereject\b", "reject", text)


def _flags(text: str) -> str:
    flags = sorted(f.lower() for f in text.split())
    return f" flags=({' '.join(flags)})" if flags else ""


def _store(mailbox: str, flags: str, create: bool, copy: bool) -> str:
    head = "keep" if mailbox.upper() == "INBOX" else f"fileinto {mailbox!r}"
    return head + flags + (" :create" if create else "") + (" :copy" if copy else "")


def normalise_ours(line: str) -> str:
    """describe() output with the INBOX bridge applied (`fileinto 'INBOX'` -> `keep`)."""
    m = re.match(r"fileinto '(?i:inbox)'(.*)$", line)
    return "keep" + m.group(1) if m else line


@dataclass(slots=True)
class Section:
    """One script's part of the output ("## Executing script: NAME" when
    sieve-test runs a sequence with -s)."""

    script: str = ""
    performed: list[str] = field(default_factory=list)
    implicit: list[str] = field(default_factory=list)


def parse(stdout: str) -> list[str]:
    """The actions of a single-script run: performed, then the implicit keep."""
    sections = parse_sections(stdout)
    return [line for s in sections for line in s.performed + s.implicit]


def _key(line: str) -> str:
    """An action without its flags and :copy/:create: what Pigeonhole
    compares to find a duplicate."""
    return re.sub(r" flags=\([^)]*\)| :copy| :create", "", line)


def chain(sections: Sequence[Section]) -> list[str]:
    """The actions of a script sequence (sieve_before -> user -> sieve_after,
    run by sieve-test with -s): a keep in a script that is not the last only
    lets the next script run (its store is not performed; checked with
    sieve-test -e), the last script's implicit keep applies, and an action
    that repeats an earlier one (same kind and target) is dropped, the first
    winning, as Pigeonhole does within one script."""
    out: list[str] = []
    seen: set[str] = set()
    for n, section in enumerate(sections):
        last = n == len(sections) - 1
        for line in section.performed + (section.implicit if last else []):
            if not last and _key(line) == "keep":
                continue
            if _key(line) not in seen:
                seen.add(_key(line))
                out.append(line)
    return out


def parse_sections(stdout: str) -> list[Section]:
    """sieve-test's "Performed actions:" and "Implicit keep:" lists as
    describe() lines, per script, in the order printed.  Linear in the
    output; the vacation message text (START MESSAGE .. END MESSAGE) is
    skipped so a reason that looks like an action is not read as one."""
    lines = stdout.split("\n")
    sections = [Section()]
    out: list[str] = sections[-1].performed
    i = 0
    section = None
    current: dict[str, object] | None = None

    def flush() -> None:
        nonlocal current
        if current is None:
            return
        kind = current["kind"]
        if kind == "store":
            out.append(_store(str(current["mailbox"]), _flags(str(current.get("flags", ""))),
                              bool(current.get("create")), bool(current.get("copy"))))
        elif kind == "redirect":
            out.append(f"redirect <{current['address']}>" + (" :copy" if current.get("copy") else ""))
        elif kind == "vacation":
            out.append(f"vacation seconds={int(str(current['seconds']))}"
                       f" subject={current.get('subject')!r} from={current.get('from')!r}"
                       f" handle={current.get('handle', '')!r}")
        current = None

    while i < len(lines):
        line = lines[i]
        if line.startswith("## Executing script: "):
            flush()
            if sections[-1].performed or sections[-1].implicit or sections[-1].script:
                sections.append(Section())
            sections[-1].script = line[len("## Executing script: "):]
            section = None
        elif line in ("Performed actions:", "Implicit keep:"):
            flush()
            section = line
            out = sections[-1].performed if line == "Performed actions:" else sections[-1].implicit
        elif section is None or not line.strip() or line.strip() == "(none)":
            pass
        elif line.startswith(" * "):
            flush()
            what = line[3:]
            if what.startswith("store message in folder: "):
                current = {"kind": "store", "mailbox": what[len("store message in folder: "):]}
            elif what.startswith("redirect message to: "):
                current = {"kind": "redirect", "address": what[len("redirect message to: "):].strip("<>")}
            elif what.startswith("reject message with reason: "):
                out.append("reject " + repr(what[len("reject message with reason: "):]))
            elif what == "discard":
                out.append("discard")
            elif what == "send vacation message:":
                current = {"kind": "vacation"}
            elif what.startswith("keep"):
                current = {"kind": "store", "mailbox": "INBOX"}
            else:
                raise ValueError(f"unknown sieve-test action line: {line!r}")
        elif line.startswith("        + ") and current is not None:
            detail = line[len("        + "):]
            if detail.startswith("add IMAP flags: "):
                current["flags"] = detail[len("add IMAP flags: "):]
            elif detail == "create mailbox if it does not exist":
                current["create"] = True
            elif detail == "preserve implicit keep":
                current["copy"] = True
            else:
                raise ValueError(f"unknown sieve-test action detail: {line!r}")
        elif line.startswith("    => ") and current is not None:
            key, _, value = line[len("    => "):].partition(" : ")
            key = key.strip()
            if key == "handle":
                # The handle holds the reason verbatim (newlines included) up
                # to the blank line before START MESSAGE.
                parts = [value]
                while i + 2 < len(lines) and not (lines[i + 1] == "" and lines[i + 2] == "START MESSAGE"):
                    i += 1
                    parts.append(lines[i])
                value = "\n".join(parts)
            current[key] = value
        elif line == "START MESSAGE":
            while i < len(lines) and lines[i] != "END MESSAGE":
                i += 1
        else:
            raise ValueError(f"unexpected sieve-test output line: {line!r}")
        i += 1
    flush()
    return sections


class Pigeonhole:
    """A sieve-test set-up under `root` (a fresh directory)."""

    def __init__(self, root: Path, *, personal: Iterable[Path] = (), global_: Iterable[Path] = (),
                 folders: Sequence[str] = FOLDERS) -> None:
        self.root = root
        self.folders = tuple(folders)
        as_root = os.geteuid() == 0
        # As root sieve-test refuses to access mail as root: it runs as
        # nobody, so everything below root must be readable (and the
        # script directories writable, for the .svbin files) by nobody.
        uids = (f"mail_uid = {_NOBODY}\nmail_gid = {_NOBODY}\n"
                "first_valid_uid = 0\nfirst_valid_gid = 0\n") if as_root else ""
        root.mkdir(parents=True, exist_ok=True)
        (root / "dovecot.conf").write_text(_CONFIG.format(
            uids=uids, root=root, extensions=" ".join(EXTRA_EXTENSIONS)))
        mail = root / "mail"
        for folder in ("",) + self.folders:
            # Maildir++: ".Lists.Dev" holds "Lists/Dev"; Dovecot names the
            # directories in IMAP modified UTF-7 (RFC 3501 §5.1.3).
            base = mail / ("." + mutf7.encode(folder).replace("/", ".") if folder else "")
            for sub in ("cur", "new", "tmp"):
                (base / sub).mkdir(parents=True, exist_ok=True)
        for name, sources in (("personal", personal), ("global", global_)):
            (root / name).mkdir(exist_ok=True)
            for source in sources:
                shutil.copy(source, root / name / source.name)
        (root / "scripts").mkdir(exist_ok=True)
        (root / "messages").mkdir(exist_ok=True)
        if as_root:
            for path in [root, *root.rglob("*")]:
                os.chown(path, _NOBODY, _NOBODY)
        self._env = self._config_environment()

    def _config_environment(self) -> dict[str, str]:
        """The environment sieve-test runs with.  Left alone, every
        sieve-test run execs doveconf, which parses the config and execs
        sieve-test again with the settings in its environment
        (DOVECONF_ENV=1); asking doveconf for that environment once and
        starting sieve-test with it halves the cost of a run."""
        # Date tests without :zone use the local zone (RFC 5260 §4): pin it.
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "UTC"}
        done = subprocess.run(
            [DOVECONF, "-f", "service=sieve-test", "-c", str(self.root / "dovecot.conf"), "-m", "mail",
             "-e", shutil.which("env") or "/usr/bin/env", "-0"],
            env=base, capture_output=True, check=True, timeout=60)
        env = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
        assert env.get("DOVECONF_ENV") == "1", done.stdout
        return env

    def add_script(self, name: str, text: str) -> Path:
        path = self.root / "scripts" / name
        path.write_text(as_pigeonhole_script(text))
        self._own(path)
        return path

    def add_message(self, name: str, data: bytes) -> Path:
        path = self.root / "messages" / name
        path.write_bytes(data)
        self._own(path)
        return path

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, _NOBODY, _NOBODY)

    def run(self, script: Path, message: Path, envelope: Envelope, *,
            before: Sequence[Path] = ()) -> Reference:
        """One run; `before`: scripts run first in this order (-s), the
        sequence's actions combined by chain()."""
        argv = [SIEVE_TEST, "-c", str(self.root / "dovecot.conf"),
                "-f", envelope.mail_from, "-r", envelope.rcpt_to,
                "-a", envelope.orig_rcpt or envelope.rcpt_to]
        for path in before:
            argv += ["-s", str(path)]
        argv += [str(script), str(message)]
        done = subprocess.run(argv, capture_output=True, env=self._env, timeout=60)
        stdout = done.stdout.decode("utf-8", "replace")
        stderr = done.stderr.decode("utf-8", "replace")
        output = stdout + stderr
        if "failed to compile sieve script" in stderr:
            return Reference((), compiled=False, failed=False, output=output)
        if "resolved with successful implicit keep" in stderr:
            return Reference(("keep",), compiled=True, failed=True, output=output)
        if done.returncode != 0:
            # e.g. a Panic (SIGABRT): this pair has no reference answer; the
            # corpus test lists it rather than the whole session failing.
            return Reference((f"{CRASHED} {done.returncode}",), compiled=True, failed=False, output=output)
        actions = chain(parse_sections(stdout)) if before else parse(stdout)
        return Reference(tuple(actions), compiled=True, failed=False, output=output)

    def run_all(self, jobs: Sequence[tuple[Path, Path, Envelope]
                                      | tuple[Path, Path, Envelope, Sequence[Path]]]) -> list[Reference]:
        """Each (script, message, envelope[, before]), at most WORKERS at once, in order."""
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            return list(pool.map(lambda job: self.run(*job[:3], before=job[3] if len(job) > 3 else ()),
                                 jobs))

    def environment(self, message: Path, envelope: Envelope,
                    names: Sequence[str] = ("domain", "host", "location", "name", "phase",
                                            "remote-host", "remote-ip", "version")) -> dict[str, str]:
        """The RFC 5183 environment items sieve-test reports (so our engine
        gets the same values): probed with a script that files into
        "NAME=VALUE" for each item that exists."""
        lines = ['require ["environment", "variables", "fileinto"];']
        for name in names:
            lines.append(f'if environment :matches "{name}" "*" {{ set "v" "${{1}}";'
                         f' fileinto "{name}=${{v}}"; }}')
        reference = self.run(self.add_script("probe-environment.sieve", "\n".join(lines)), message, envelope)
        return dict(_probed(reference))

    def test_values(self, message: Path, envelope: Envelope) -> tuple[int, int]:
        """(spamtest, virustest) as sieve-test computes them from the
        message's headers (RFC 5235; 0 = not tested)."""
        lines = ['require ["spamtest", "virustest", "relational", "comparator-i;ascii-numeric", "fileinto"];']
        for test, top in (("spamtest", 10), ("virustest", 5)):
            for n in range(top + 1):
                lines.append(f'if {test} :value "eq" :comparator "i;ascii-numeric" "{n}"'
                             f' {{ fileinto "{test}={n}"; }}')
        reference = self.run(self.add_script("probe-tests.sieve", "\n".join(lines)), message, envelope)
        values = dict(_probed(reference))
        return int(values["spamtest"]), int(values["virustest"])


def _probed(reference: Reference) -> Iterable[tuple[str, str]]:
    if not reference.compiled or reference.failed:
        raise RuntimeError(f"probe failed: {reference.output}")
    for line in reference.actions:
        m = re.fullmatch(r"fileinto '([^=']+)=(.*)'", line)
        if m:
            yield m.group(1), m.group(2)


def envelopes(index: Path) -> Mapping[str, Envelope]:
    """`envelopes.txt`: "MESSAGE MAIL_FROM RCPT_TO" lines ('#' comments)."""
    found: dict[str, Envelope] = {}
    for line in index.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, mail_from, rcpt_to = line.split()
            found[name] = Envelope(mail_from, rcpt_to)
    return found
