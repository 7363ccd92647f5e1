# -*- test-case-name: tests.sieve.test_managed -*-
"""The Sieve text `xmailctl vacation` and `xmailctl forward` write.

An auto-reply or a forward set by the operator is an ordinary Sieve script
in the user's name (MANAGED_PREFIX + "vacation" / "forward"), so there is
one engine: delivery runs it after the user's active script
(xmail.sieve.storage.SieveScripts.chain), ManageSieve clients see it in
LISTSCRIPTS, and the corpus tests that hold the engine to Pigeonhole's
`sieve-test` hold these scripts too.

Only text is made here, and every input is checked first: the period
(RFC 5230 §4.1), the subject (one line, bounded), the body (UTF-8 without
control characters, bounded), the forward target (an address).  Strings
are written as RFC 5228 §2.4.2 quoted strings (`"` and `\\` escaped) and
the body as a multi-line `text:` string with dot-stuffing, lines ended by
CRLF as the grammar has them.
"""

from __future__ import annotations

from collections.abc import Iterable

from xmail import addresses
from xmail.sieve.interfaces import MANAGED_PREFIX

VACATION = MANAGED_PREFIX + "vacation"
FORWARD = MANAGED_PREFIX + "forward"
MANAGED_SCRIPTS = (FORWARD, VACATION)  # name order, the order delivery runs them

# RFC 5230 §4.1: ":days" has a minimum of 1; a year is as long as an
# absence that an auto-reply should cover.
MIN_DAYS, MAX_DAYS = 1, 365
MAX_SUBJECT = 256       # characters, as the reply's subject is cut (xmail.sieve.vacation)
# Octets of UTF-8: a reply is a short note, and the script stays far
# below MAX_SCRIPT_SIZE.
MAX_BODY = 16 * 1024
MAX_ADDRESSES = 100     # :addresses entries (a user's aliases)

CRLF = "\r\n"


class ManagedScriptError(ValueError):
    """An input the managed scripts refuse; str() says which and why."""


def quoted(text: str) -> str:
    """An RFC 5228 §2.4.2 quoted string: only `"` and `\\` need escaping
    (CR and LF are refused by the callers, so each string is one line)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string_list(items: Iterable[str]) -> str:
    """RFC 5228 §2.4.2.1 string-list."""
    return "[" + ", ".join(quoted(item) for item in items) + "]"


def multiline(text: str) -> str:
    """RFC 5228 §2.4.2 multi-line string: `text:` CRLF, the lines with a
    leading "." doubled (dot-stuffing), then "." CRLF.  No escapes apply
    inside, and without the variables / encoded-character extensions
    required, "${...}" in the body is literal text."""
    lines = text.split("\n")
    return ("text:" + CRLF
            + "".join(("." + line if line.startswith(".") else line) + CRLF for line in lines)
            + "." + CRLF)


def _control_free(text: str, allowed: str = "") -> bool:
    # RFC 5228 §2.4.2 octet-not-crlf excludes NUL; the others would reach
    # a reply's header or body as they are.
    return not any((ord(c) < 0x20 and c not in allowed) or c == "\x7f" or "\x80" <= c <= "\x9f"
                   or c in "\u2028\u2029" for c in text)


def check_days(days: int) -> int:
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise ManagedScriptError(f"--days must be from {MIN_DAYS} to {MAX_DAYS} (RFC 5230 §4.1), not {days}")
    return days


def check_subject(subject: str) -> str:
    subject = subject.strip()
    if not subject:
        raise ManagedScriptError("the subject is empty")
    if len(subject) > MAX_SUBJECT:
        raise ManagedScriptError(f"the subject is longer than {MAX_SUBJECT} characters")
    if not _control_free(subject):
        raise ManagedScriptError("the subject must be one line without control characters")
    return subject


def check_body(data: bytes) -> str:
    """The reply's text from raw octets: UTF-8, at most MAX_BODY octets,
    line ends made LF (CRLF and lone CR alike), trailing blank lines and
    spaces at the end dropped."""
    if len(data) > MAX_BODY:
        raise ManagedScriptError(f"the body is larger than {MAX_BODY} octets")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManagedScriptError(f"the body is not UTF-8 (octet {e.start})") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").rstrip()
    if not text:
        raise ManagedScriptError("the body is empty (give the reply's text on standard input)")
    if not _control_free(text, allowed="\n\t"):
        raise ManagedScriptError("the body contains control characters")
    return text


def check_address(text: str) -> str:
    try:
        return addresses.normalize_address(text)
    except addresses.AddressError as e:
        raise ManagedScriptError(f"{text!r} is not a mail address: {e}") from None


def vacation_script(*, days: int, subject: str, body: str, own_addresses: Iterable[str] = ()) -> str:
    """RFC 5230 vacation.  `own_addresses`: the user's other addresses
    (aliases), so mail sent to them is answered too (§4.5: a reply goes
    only when one of the user's addresses is a recipient).  `body` as
    check_body returns it."""
    own = sorted({check_address(a) for a in own_addresses})
    if len(own) > MAX_ADDRESSES:
        own = own[:MAX_ADDRESSES]  # the rest is still answered through the directory's own-address rule
    args = [f":days {check_days(days)}", f":subject {quoted(check_subject(subject))}"]
    if own:
        args.append(f":addresses {string_list(own)}")
    return ("# Written by `xmailctl vacation set`; `xmailctl vacation off` removes it." + CRLF
            + 'require ["vacation"];' + CRLF
            + "vacation " + " ".join(args) + " " + multiline(body) + ";" + CRLF)


def forward_script(target: str, *, keep: bool) -> str:
    """RFC 5228 §4.2 redirect; with `keep`, RFC 3894 :copy so the message
    is also kept (the implicit keep is not cancelled)."""
    target = check_address(target)
    head = "# Written by `xmailctl forward set`; `xmailctl forward off` removes it." + CRLF
    if keep:
        return head + 'require ["copy"];' + CRLF + f"redirect :copy {quoted(target)};" + CRLF
    return head + f"redirect {quoted(target)};" + CRLF
