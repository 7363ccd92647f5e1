# -*- test-case-name: tests.sieve.test_storage -*-
"""Sieve scripts as the protocols and the admin surface see them (issue 18).

ManageSieve (xmail.protocols.managesieve) reaches scripts only through
`ISieveScripts`, which the service hands over in the context, as SMTP
reaches the delivery pipeline through xmail.filter.interfaces.  This module
sits on that floor and imports nothing of the engine.

Owners: a user's scripts are owned by the user's address; a domain's by
`before:DOMAIN` and `after:DOMAIN` (the Pigeonhole order: the domain's
"before" scripts, then the user's active script, then the domain's "after"
scripts, each group in name order).
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface

# Limits every upload is held to (RFC 5804 §2.3 quotas; refused at upload,
# never found at delivery).
MAX_SCRIPT_SIZE = 64 * 1024     # octets of one script
MAX_SCRIPTS = 20                # scripts one owner may keep
MAX_NAME_LENGTH = 128           # characters of a script name
MAX_NESTING = 32                # blocks and tests inside one another (Pigeonhole's limit)
MAX_INCLUDE_DEPTH = 10          # RFC 6609 include chains
MAX_REDIRECTS = 4               # redirect actions one message may cause

BEFORE, AFTER = "before", "after"
# Scripts `xmailctl vacation|forward` write: ordinary Sieve in the user's
# name, run after the user's active script (see SieveScripts.chain).
MANAGED_PREFIX = "xmail-"


def domain_owner(domain: str, position: str) -> str:
    if position not in (BEFORE, AFTER):
        raise ValueError(f"position must be {BEFORE!r} or {AFTER!r}")
    return f"{position}:{domain}"


class SieveScriptError(ValueError):
    """A script that cannot be stored or run: syntax (with its line), an
    unsupported extension, a limit, invalid UTF-8.  str() is one line."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class SieveQuotaError(Exception):
    """RFC 5804 §1.3 response codes QUOTA/MAXSCRIPTS and QUOTA/MAXSIZE."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code  # "QUOTA/MAXSCRIPTS" or "QUOTA/MAXSIZE"


class NoSuchScript(KeyError):
    """RFC 5804 NONEXISTENT."""


class ScriptActive(Exception):
    """RFC 5804 ACTIVE: the active script cannot be deleted."""


class ScriptExists(Exception):
    """RFC 5804 ALREADYEXISTS (RENAMESCRIPT onto an existing name)."""


class ISieveScripts(Interface):
    """Stored scripts.  Reads are short index reads (any thread); writes
    return the writer's result -- a Deferred in the daemon (the index
    writer), a plain value in xmailctl -- so callers use maybeDeferred."""

    max_script_size = Attribute("octets one script may hold")
    max_scripts = Attribute("scripts one owner may keep")
    extensions = Attribute("the Sieve extensions scripts may require (ManageSieve's SIEVE capability)")

    def check(text: bytes) -> Any:
        """Parse and validate (UTF-8, size, nesting, extensions); raises
        SieveScriptError.  CPU work: run it in a thread pool, not on the
        reactor.  Returns the compiled script."""

    def valid_name(name: str) -> bool:
        """RFC 5804 §1.6: a script name (no controls, at most MAX_NAME_LENGTH)."""

    def list(owner: str) -> list[tuple[str, bool]]:
        """(name, active) in name order."""

    def get(owner: str, name: str) -> str | None:
        """The script text, None when there is none."""

    def active(owner: str) -> str | None:
        """The active script's name."""

    def space_for(owner: str, name: str, size: int) -> SieveQuotaError | None:
        """RFC 5804 HAVESPACE: None when a script of `size` octets named
        `name` would fit (a replacement does not count twice)."""

    def put(owner: str, name: str, text: str) -> Any:
        """Store (replace) a script; raises SieveQuotaError over a quota.
        Callers check() the text first."""

    def remove(owner: str, name: str) -> Any:
        """Raises NoSuchScript, or ScriptActive for the active script."""

    def rename(owner: str, old: str, new: str) -> Any:
        """Raises NoSuchScript or ScriptExists; the active mark follows."""

    def activate(owner: str, name: str | None) -> Any:
        """Make `name` the active script (None: none); raises NoSuchScript."""
