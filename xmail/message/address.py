# -*- test-case-name: tests.message.test_mime, tests.message.test_headers -*-
"""The one address-list grammar (RFC 5322 §3.4 with the obsolete forms of §4.4).

`parse_address_list(raw)` gives the RFC 3501 §7.4.2 ENVELOPE structures the
store caches; `mailboxes(raw)` gives the addr-specs of the same parse, which
is what SMTP submission checks against the sender's addresses, so what
IMAP shows as From is exactly what submission verified.  `searchable(raw)`
is the text SEARCH FROM/TO/CC/BCC match (display names and addresses, no
comments).  Everything is one forward pass over the value; lists are capped
at MAX_ADDRESSES.
"""

from __future__ import annotations

from xmail.message.headers import comment, decode_words, quoted_string

MISSING_HOST = ".MISSING-HOST-NAME."  # what Dovecot uses; NIL host would read as a group
MAX_ADDRESSES = 1000  # addresses kept per field

_ADDR_SPECIALS = '()<>[]:;@\\,"'

Address = list  # [name, adl, mailbox, host], each str | None


def _address_tokens(s: str) -> list[tuple[str, str]]:
    """(kind, text): kind is "atom", "qs" (unescaped content), "comment",
    "dlit" (domain literal incl. brackets) or the special character itself."""
    toks: list[tuple[str, str]] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            text, i = quoted_string(s, i)
            toks.append(("qs", text))
        elif c == "(":
            # One token per comment: the white space after it is not part
            # of it (it was, and "(Carol) c@x" named its address "Carol)").
            text, i = comment(s, i)
            toks.append(("comment", text))
        elif c == "[":
            j = s.find("]", i)
            j = n - 1 if j < 0 else j
            toks.append(("dlit", s[i:j + 1]))
            i = j + 1
        elif c in _ADDR_SPECIALS:
            toks.append((c, c))
            i += 1
        else:
            j = i
            while j < n and s[j] not in _ADDR_SPECIALS and s[j] not in " \t\r\n":
                j += 1
            toks.append(("atom", s[i:j]))
            i = j
    return toks


def _quote_local(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _addr_spec(toks: list[tuple[str, str]]) -> tuple[str, str]:
    """local-part and domain from the tokens of an addr-spec (comments removed)."""
    at = max((k for k, t in enumerate(toks) if t[0] == "@"), default=-1)
    local_toks = toks if at < 0 else toks[:at]
    domain_toks = [] if at < 0 else toks[at + 1:]
    local = "".join(_quote_local(t) if kind == "qs" else t for kind, t in local_toks)
    domain = "".join(t for _kind, t in domain_toks)
    return local, (domain or MISSING_HOST)


def _phrase(toks: list[tuple[str, str]]) -> str | None:
    words = [t for kind, t in toks if kind in ("atom", "qs", ".", "@", "dlit")]
    return " ".join(words) if words else None


def _comment_name(chunk: list[tuple[str, str]]) -> str | None:
    """The name of an addr-spec without a phrase: its last comment from the
    addr-spec on, `c@x (Carol)` -> "Carol" (what Dovecot's
    message-address.c does: it forgets comments at the start of an
    addr-spec).  A comment before it is CFWS, not a phrase (RFC 5322 §3.4):
    `(Carol) c@x` has no name (NIL)."""
    first = next((k for k, (kind, _text) in enumerate(chunk) if kind != "comment"), len(chunk))
    comments = [text for kind, text in chunk[first:] if kind == "comment"]
    return (comments[-1].strip() or None) if comments else None


def parse_address_list(value: str, comment_names: bool = True) -> list[list[str | None]] | None:
    """RFC 3501 §7.4.2 address structures for a raw (undecoded) field value.

    Display names keep their RFC 2047 words encoded (clients decode them); an
    addr-spec followed by a comment, `a@b (Real Name)`, takes the comment as
    its name (unless comment_names is false); a comment before it does not,
    `(Real Name) a@b` has a NIL name (see `_comment_name`).  Returns None when nothing
    address-like is there (NIL).
    """
    toks = _address_tokens(value)
    out: list[list[str | None]] = []
    in_group = False
    i, n = 0, len(toks)
    while i < n and len(out) < MAX_ADDRESSES:
        # Gather up to the next ',' ';' ':' or '<' at this level.
        start = i
        while i < n and toks[i][0] not in (",", ";", ":", "<"):
            i += 1
        chunk = toks[start:i]
        stop = toks[i][0] if i < n else ""
        if stop == ":" and not in_group:
            out.append([None, None, _phrase(chunk) or "", None])
            in_group = True
            i += 1
            continue
        if stop == "<":
            j = i + 1
            while j < n and toks[j][0] != ">":
                j += 1
            inner = [t for t in toks[i + 1:j] if t[0] != "comment"]
            adl = None
            colon = next((k for k, t in enumerate(inner) if t[0] == ":"), -1)
            if colon >= 0 and inner and inner[0][0] == "@":  # obs-route "@a,@b:"
                adl = "".join(t for _kind, t in inner[:colon]) or None
                inner = inner[colon + 1:]
            if inner:
                local, domain = _addr_spec(inner)
                out.append([_phrase(chunk), adl, local, domain])
            i = j + 1
            # anything up to the next separator (comments, junk) is dropped
            while i < n and toks[i][0] not in (",", ";"):
                i += 1
            stop = toks[i][0] if i < n else ""
        else:
            plain = [t for t in chunk if t[0] != "comment"]
            if plain:
                local, domain = _addr_spec(plain)
                name = _comment_name(chunk) if comment_names else None
                out.append([name, None, local, domain])
        if stop == ";" and in_group:
            out.append([None, None, None, None])
            in_group = False
        i += 1
    if in_group:
        out.append([None, None, None, None])
    return out or None


def mailboxes(value: str) -> list[str]:
    """The addr-specs ("local@domain") of a field value, groups flattened,
    as `parse_address_list` reads them; an address without a domain is
    left out (it names no mailbox anyone could own)."""
    out = []
    for _name, _adl, local, host in parse_address_list(value) or ():
        if local is not None and host is not None and host != MISSING_HOST:
            out.append(f"{local}@{host}")
    return out


def searchable(value: str) -> str:
    """What SEARCH FROM/TO/CC/BCC match for a raw field value: each
    address's decoded display name and "local@domain", one a line, without
    comments or quoting (RFC 3501 §6.4.4 leaves the matched text to the
    server; users search for what their client shows).  Case-folded."""
    lines = []
    for name, _adl, local, host in parse_address_list(value, comment_names=False) or ():
        if local is None:
            continue  # end of group
        parts = []
        if name:
            parts.append(decode_words(name))
        if host is None or host == MISSING_HOST:
            parts.append(local)  # a group's name, or a bare local part
        else:
            parts.append(f"{local}@{host}")
        lines.append(" ".join(parts))
    return "\n".join(lines).casefold()
