# -*- test-case-name: tests.store.test_names -*-
"""IMAP folder names and user addresses -> paths inside the user's Maildir++ tree.

On-disk encoding of a folder name (the same as Dovecot's Maildir++ layout with
`mailbox_list_escape_char = ~`, so Dovecot or another Maildir++ reader can
open the tree):

- INBOX is the root of the user's tree (cur/ new/ tmp/).
- Any other folder is one directory directly below the root: "." followed by
  its components joined with ".", e.g. "Sent" -> ".Sent", "a/b" -> ".a.b",
  "INBOX/x" -> ".INBOX.x".
- Each component is IMAP modified UTF-7 (RFC 3501 §5.1.3), then "~" and "."
  are written as "~7e" and "~2e"; modified UTF-7 never produces "/" or NUL.

Nothing a client sends can name a path outside the tree: "..", empty
components, control characters and the delimiter at either end are refused
before any path is built, and the result is always a single directory entry
below the root that starts with ".".
"""

from __future__ import annotations

import os
import re

from xmail import addresses
from xmail.message import mutf7
from xmail.store.interfaces import FolderNotAllowed, InvalidFolderName, StoreError

DELIMITER = "/"
MAX_NAME_BYTES = 255

# DESIGN.md "Folders": created for every new user, in this order.
DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
    ("Recycle", None),
)
RECYCLE = "Recycle"
SPECIAL_NAMES = {name.lower(): name for name, _use in DEFAULT_FOLDERS}


def normalize(name: str) -> str:
    """The canonical form of a client's folder name, or InvalidFolderName.

    "inbox" in any case is INBOX (RFC 3501 §5.1); other names keep their case.
    """
    if not isinstance(name, str):
        raise InvalidFolderName("folder name must be text")
    if not name:
        raise InvalidFolderName("empty folder name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidFolderName(f"folder name longer than {MAX_NAME_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidFolderName("control characters (NUL, CR, LF, ...) in folder name")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise InvalidFolderName("folder name is not valid Unicode")
    if name.startswith(DELIMITER) or name.endswith(DELIMITER):
        raise InvalidFolderName(f"folder name must not start or end with {DELIMITER!r}")
    parts = name.split(DELIMITER)
    for part in parts:
        if not part:
            raise InvalidFolderName("empty component in folder name")
        if part in (".", ".."):
            raise InvalidFolderName(f"{part!r} is not a folder name component")
        if "*" in part or "%" in part:
            # RFC 3501 §6.3.8 wildcards: a folder so named could not be LISTed alone.
            raise InvalidFolderName("'*' and '%' are not allowed in folder names")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return DELIMITER.join(parts)


def check_creatable(name: str) -> None:
    """Refuse names that clash with a default folder (e.g. "SENT" next to
    "Sent") or that would live inside Recycle."""
    top = name.split(DELIMITER, 1)[0]
    canonical = SPECIAL_NAMES.get(top.lower())
    if canonical is not None and top != canonical:
        raise FolderNotAllowed(f"{top!r} clashes with the special folder {canonical!r}")
    if top == RECYCLE and name != RECYCLE:
        raise FolderNotAllowed("Recycle cannot hold sub-folders")


def is_protected(name: str) -> bool:
    """Default folders cannot be deleted or renamed (INBOX rename is special)."""
    return name in SPECIAL_NAMES.values()


def parent_names(name: str) -> list[str]:
    """["a", "a/b"] for "a/b/c": the parents RFC 3501 §6.3.3 creates too."""
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]


# --- modified UTF-7, RFC 3501 §5.1.3 ------------------------------------------


def encode_mutf7(text: str) -> str:
    return mutf7.encode(text)


def decode_mutf7(text: str) -> str:
    try:
        return mutf7.decode(text)
    except ValueError as e:
        raise InvalidFolderName(f"bad modified UTF-7 in {text!r}") from e


# --- names <-> directories ------------------------------------------------------


def folder_dirname(name: str) -> str:
    """The directory entry (below the user root) of a normalized folder name;
    "" for INBOX."""
    if name == "INBOX":
        return ""
    parts = [encode_mutf7(p).replace("~", "~7e").replace(".", "~2e") for p in name.split(DELIMITER)]
    dirname = "." + ".".join(parts)
    if len(dirname.encode("ascii")) > MAX_NAME_BYTES:
        raise InvalidFolderName("folder name too long once encoded for the file system")
    return dirname


_ESCAPE = re.compile(r"~([0-9a-fA-F]{2})")


def folder_name_from_dirname(dirname: str) -> str | None:
    """The folder name of a Maildir++ directory entry, or None when the entry
    is not a folder (cur, tmp, ".", "..", bad encoding)."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    parts = dirname[1:].split(".")
    try:
        decoded = [decode_mutf7(_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), p)) for p in parts]
        name = normalize(DELIMITER.join(decoded))
        # One directory per name: a non-canonical spelling is not ours.
        return name if folder_dirname(name) == dirname else None
    except InvalidFolderName:
        return None


# --- addresses -> user roots -------------------------------------------------------

_LOCAL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$&'*+-=?^_`{|}~.")


def canonical_address(address: str) -> str:
    """The one address rule (xmail.addresses); StoreError when it is not one."""
    try:
        return addresses.normalize_address(address)
    except addresses.AddressError as e:
        raise StoreError(f"not a mailbox address: {address!r} ({e})") from None


def _escape_local(local: str) -> str:
    out = "".join(c if c in _LOCAL_SAFE else "".join(f"%{b:02x}" for b in c.encode()) for c in local)
    if out.startswith("."):
        out = "%2e" + out[1:]
    return out


def user_root(mail_dir: str, address: str) -> str:
    """data_dir/mail/<domain>/<localpart> of a canonical address; always a
    path strictly below mail_dir."""
    local, _, domain = canonical_address(address).rpartition("@")
    root = os.path.join(mail_dir, domain, _escape_local(local))
    base = os.path.abspath(mail_dir)
    if os.path.commonpath([base, os.path.abspath(root)]) != base or os.path.abspath(root) == base:
        raise StoreError(f"address {address!r} maps outside the mail directory")
    return root


# --- LIST / LSUB patterns, RFC 3501 §6.3.8 ----------------------------------------------


class ListPattern:
    """A LIST/LSUB pattern: "*" matches any run of characters, "%" any run
    without the hierarchy delimiter (RFC 3501 §6.3.8).

    A pattern comes from the client, so it is never turned into a regex
    (Python's `re` backtracks: `*x*x*x*x*x*xy` against a 250-character name
    ran for minutes).  It is matched as a small NFA whose set of live
    positions is one int used as a bit set (the bit-parallel form of
    Dovecot's imap-match): one step per character of the name, each a few
    integer operations, so a match costs O(len(name) * len(pattern) / 64)
    whatever the pattern, with no backtracking.
    """

    __slots__ = ("_literal", "_star", "_percent", "_wild", "_accept", "_delimiter")

    def __init__(self, pattern: str, delimiter: str = DELIMITER):
        tokens: list[str] = []
        for ch in pattern:
            if ch in ("*", "%") and tokens and tokens[-1] in ("*", "%"):
                # Adjacent wildcards are one: "**" = "%*" = "*%" = "*", "%%" = "%".
                if ch == "*":
                    tokens[-1] = "*"
                continue
            tokens.append(ch)
        self._delimiter = delimiter
        self._literal: dict[str, int] = {}  # character -> bits of the positions expecting it
        self._star = 0
        self._percent = 0
        for i, tok in enumerate(tokens):
            if tok == "*":
                self._star |= 1 << i
            elif tok == "%":
                self._percent |= 1 << i
            else:
                self._literal[tok] = self._literal.get(tok, 0) | (1 << i)
        self._wild = self._star | self._percent
        self._accept = 1 << len(tokens)

    def _close(self, states: int) -> int:
        # A wildcard may match nothing: reaching it reaches the position after
        # it too; wildcards never follow each other, so one step closes the set.
        return states | ((states & self._wild) << 1)

    def matches(self, name: str) -> bool:
        states = self._close(1)
        delimiter = self._delimiter
        for ch in name:
            if not states:
                return False
            stay = states & (self._star if ch == delimiter else self._wild)
            states = self._close(((states & self._literal.get(ch, 0)) << 1) | stay)
        return bool(states & self._accept)


def list_pattern(reference: str, pattern: str) -> ListPattern:
    """RFC 3501 §6.3.8: the reference and the pattern together (a pattern
    starting with the delimiter ignores the reference, as in Dovecot); INBOX
    is case-insensitive (§5.1)."""
    if reference and pattern.startswith(DELIMITER):
        full = pattern
    else:
        full = reference + pattern
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in f"{DELIMITER}%*"):
        full = "INBOX" + full[5:]
    return ListPattern(full)
