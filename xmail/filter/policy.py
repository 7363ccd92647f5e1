# -*- test-case-name: tests.filter.test_policy -*-
"""Per-domain and per-user mail-protection settings (README "Mail protection").

Domain (`xmailctl domain set DOMAIN KEY=VALUE`, stored with the domain):
- `spam_score`, `reject_score`: the rspamd score thresholds for mail to the
  domain's users (default: `[filter]`);
- `dmarc_reject`: `reject` (default; RFC 7489 §6.3 p=reject -> 550 5.7.1)
  or `junk` (file such mail into Junk instead: for domains whose partners
  publish p=reject but break their own DKIM through mailing lists).
User (`xmailctl user set U KEY=VALUE`): `spam_digest` = off|daily|weekly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xmail.config import FilterSettings


def _score(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 1000:  # NaN fails too
        raise ValueError("a number between 0 and 1000")
    return repr(number)


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value.lower() not in allowed:
            raise ValueError(" or ".join(allowed))
        return value.lower()
    return check


# key -> checker(value) -> stored value (ValueError names what is expected)
DOMAIN_KEYS: dict[str, Callable[[str], str]] = {
    "spam_score": _score,
    "reject_score": _score,
    "dmarc_reject": _choice("reject", "junk"),
}
USER_KEYS: dict[str, Callable[[str], str]] = {
    "spam_digest": _choice("off", "daily", "weekly"),
}


def check_setting(table: dict[str, Callable[[str], str]], key: str, value: str) -> str:
    """The value to store, or ValueError with a one-line reason."""
    if value == "":
        return value  # an empty value removes the setting
    try:
        return table[key](value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{key} must be {e}, not {value!r}") from None


def thresholds(directory: Any, settings: FilterSettings) -> Callable[[str], tuple[float, float]]:
    """user -> (spam_score, reject_score) of the user's domain."""

    def for_user(user: str) -> tuple[float, float]:
        domain = directory.domain_settings(user.rpartition("@")[2]) if directory is not None else {}
        spam = float(domain.get("spam_score", settings.spam_score))
        reject = float(domain.get("reject_score", settings.reject_score))
        return spam, max(spam, reject)

    return for_user


def dmarc_reject_to_junk(directory: Any) -> Callable[[str], bool]:
    """domain -> True when its users want DMARC-rejected mail in Junk."""

    def to_junk(domain: str) -> bool:
        return directory is not None and directory.domain_settings(domain).get("dmarc_reject") == "junk"

    return to_junk
