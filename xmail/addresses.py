# -*- test-case-name: tests.test_addresses -*-
"""The one canonical address and domain rule (DESIGN.md "Addresses and login").

Every place that turns text into a stored or compared address — the
directory (users, aliases, domains, login names), SMTP RCPT and the From
check, the store's user roots, auto-configuration — calls
`normalize_address` / `normalize_domain` here, so one address has one key
everywhere.

Domains: lower case, a trailing dot dropped, Unicode labels converted with
UTS #46 mapping and IDNA 2008 (RFC 5891, the `idna` package), non-
transitional: "faß.de" is "xn--fa-hia.de", a different domain from
"fass.de" (the stdlib "idna" codec is IDNA 2003 and maps ß to ss).  A-labels
given as "xn--..." must decode under IDNA 2008.  Then RFC 1123 §2.1 LDH
labels, 253 characters (RFC 1035 §2.3.4), and no all-numeric top label (an
IP address is not a mail domain, RFC 3696 §2).

Local parts: RFC 5322 §3.2.3 dot-atoms of ASCII atext without "/", at most
64 octets (RFC 5321 §4.5.3.1.1), stored lower case (mailboxes are
case-insensitive here).  The "/" is refused because a local part names a
directory under data_dir/mail.

Imports nothing from xmail (ground floor).
"""

from __future__ import annotations

import re

import idna

__all__ = ["AddressError", "MAX_ADDRESS_LENGTH", "MAX_DOMAIN_LENGTH", "MAX_LOCAL_LENGTH",
           "normalize_address", "normalize_domain", "split_address"]

MAX_LOCAL_LENGTH = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN_LENGTH = 253  # RFC 1035 §2.3.4 (255 on the wire, minus the length octets)
MAX_ADDRESS_LENGTH = 254  # RFC 5321 §4.5.3.1.3 path of 256 minus "<" and ">"

# RFC 5322 §3.2.3 atext without "/" (see the module docstring); the pattern
# is fixed (never built from input) and each quantifier is separated by a
# literal ".", so matching is linear.
_ATEXT = r"[a-z0-9!#$%&'*+=?^_`{|}~-]"
_LOCAL_PART = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
# RFC 1123 §2.1 host name labels.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


class AddressError(ValueError):
    """Text that is not an address or domain under the rule above; the
    message says what is wrong, for a protocol reply or an operator."""


def normalize_domain(domain: str) -> str:
    """The lowercase ASCII (A-label) form of a domain, or AddressError."""
    if not isinstance(domain, str) or not domain.strip():
        raise AddressError("empty domain")
    if any(c in domain for c in "\r\n\0"):
        raise AddressError("domain contains CR, LF or NUL")
    text = domain.strip().rstrip(".")
    if len(text) > 4 * MAX_DOMAIN_LENGTH:
        raise AddressError(f"domain longer than {MAX_DOMAIN_LENGTH} characters")
    if not text.isascii() or "xn--" in text.lower():
        try:
            # UTS #46 mapping (case folding, width), then IDNA 2008 (RFC 5891
            # §4); non-transitional so that ß, ς, ZWJ/ZWNJ keep their meaning.
            text = idna.encode(text, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            raise AddressError(f"invalid domain {domain!r}") from None
    text = text.lower()
    if len(text) > MAX_DOMAIN_LENGTH:
        raise AddressError(f"domain longer than {MAX_DOMAIN_LENGTH} characters")
    labels = text.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise AddressError(f"invalid domain {domain!r}")
    if labels[-1].isdigit():
        raise AddressError(f"invalid domain {domain!r}: an IP address is not a mail domain")
    return text


def split_address(address: str) -> tuple[str, str]:
    """(local part, domain) in canonical form, or AddressError."""
    if not isinstance(address, str) or not address.strip():
        raise AddressError("empty address")
    if any(c in address for c in "\r\n\0"):
        raise AddressError("address contains CR, LF or NUL")
    text = address.strip()
    if len(text) > 4 * MAX_ADDRESS_LENGTH:
        raise AddressError(f"address longer than {MAX_ADDRESS_LENGTH} characters")
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise AddressError(f"invalid address {address!r}: expected local@domain")
    local = local.lower()
    if len(local.encode("utf-8")) > MAX_LOCAL_LENGTH:
        raise AddressError(f"local part longer than {MAX_LOCAL_LENGTH} octets")
    if not _LOCAL_PART.match(local):
        raise AddressError(f"invalid local part {local!r}")
    domain = normalize_domain(domain)
    if len(local) + 1 + len(domain) > MAX_ADDRESS_LENGTH:
        raise AddressError(f"address longer than {MAX_ADDRESS_LENGTH} characters")
    return local, domain


def normalize_address(address: str) -> str:
    """The lowercase canonical "local@domain" (A-label domain), or AddressError."""
    local, domain = split_address(address)
    return f"{local}@{domain}"
