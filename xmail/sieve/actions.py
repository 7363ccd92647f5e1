# -*- test-case-name: tests.sieve.test_interpreter -*-
"""What a Sieve evaluation decides: a list of actions (RFC 5228 §4).

The interpreter (xmail.sieve.interpreter) turns (script, message,
envelope) into an `Outcome`; the delivery stage (xmail.sieve.stage) carries
it out.  `describe()` is the one normalised text form: the mail log and the
corpus test against Pigeonhole's `sieve-test` both read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Keep:
    """Store into the default folder (INBOX, or Junk when protection said so).
    `implicit` when no action cancelled the implicit keep (§2.10.2)."""

    flags: tuple[str, ...] = ()
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class FileInto:
    """RFC 5228 §4.1 fileinto; RFC 5232 :flags; RFC 5490 :create; RFC 3894 :copy."""

    mailbox: str
    flags: tuple[str, ...] = ()
    create: bool = False
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Redirect:
    """RFC 5228 §4.2; :copy (RFC 3894) keeps the implicit keep."""

    address: str
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """RFC 5429: reject (a bounce, MDN-style) or ereject (refused in SMTP)."""

    reason: str
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Discard:
    """RFC 5228 §4.4: silently dropped (logged)."""


@dataclass(frozen=True, slots=True)
class Vacation:
    """RFC 5230 (+ RFC 6131 :seconds).  `seconds` is the period after
    which the same sender may get another reply (:days × 86400 or
    :seconds); `handle` defaults as in RFC 5230 §4.2."""

    reason: str
    subject: str | None = None
    from_: str | None = None
    addresses: tuple[str, ...] = ()
    seconds: int = 7 * 86400
    handle: str = ""
    mime: bool = False


Action = Keep | FileInto | Redirect | Reject | Discard | Vacation


@dataclass
class Outcome:
    """The actions in the order taken.  `errors`: runtime errors (each one
    line, with the script name); RFC 5228 §2.10.6: on an error the
    message is kept, so `actions` then holds Keep (after the actions that
    already took effect are dropped, as Pigeonhole does)."""

    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def keeps(self) -> bool:
        return any(isinstance(a, Keep) for a in self.actions)


def describe(action: Action) -> str:
    """One line per action, stable: `keep [flags]`, `fileinto "Box" [flags] :create :copy`,
    `redirect <a@b> :copy`, `reject "..."`, `ereject "..."`, `discard`,
    `vacation seconds=N subject=".." from=".." handle=".."`."""
    def flags(f: tuple[str, ...]) -> str:
        return f" flags=({' '.join(sorted(x.lower() for x in f))})" if f else ""

    if isinstance(action, Keep):
        return "keep" + flags(action.flags)
    if isinstance(action, FileInto):
        return (f"fileinto {action.mailbox!r}" + flags(action.flags)
                + (" :create" if action.create else "") + (" :copy" if action.copy else ""))
    if isinstance(action, Redirect):
        return f"redirect <{action.address}>" + (" :copy" if action.copy else "")
    if isinstance(action, Reject):
        return ("ereject " if action.extended else "reject ") + repr(action.reason)
    if isinstance(action, Discard):
        return "discard"
    return (f"vacation seconds={action.seconds} subject={action.subject!r} from={action.from_!r}"
            f" handle={action.handle!r}")
