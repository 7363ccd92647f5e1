# -*- test-case-name: tests.filter.test_dkimsign -*-
"""Outbound DKIM signing (RFC 6376; ed25519-sha256: RFC 8463), the
submission pipeline's last stage.

The signer is our own short implementation rather than `dkim.sign`, for
two reasons: dkimpy wants the whole message as one bytes object (a 40 MB
submission would be copied into memory), while here the body is streamed
from the spool file through the relaxed canonicalizer into SHA-256 in
fixed-size chunks; and one body hash serves every selector (rsa-sha256 and
ed25519-sha256 hash the body the same way).  The tests verify what it
produces with dkimpy and with opendkim (libopendkim's verifier).

What is signed is exactly what is sent: the final message is the review's
prefix (this DKIM-Signature among other added fields, none of them listed
in h=) followed by the spooled content as `tx.open()` gives it, which for
a submission starts with our Received trace field (not signed, a relay
may add more) and goes on with the client's header section and body.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding
from twisted.logger import Logger

from xmail.addresses import AddressError, normalize_domain
from xmail.filter.dkimkeys import ED25519, DkimKeyStore, SigningKey
from xmail.filter.interfaces import SUBMISSION, Review, Transaction
from xmail.filter.pipeline import IGNORE, Stage
from xmail.message import scan_header_section
from xmail.message.address import mailboxes

# RFC 6376 §5.4.1's recommended set, less what relays rewrite (Received,
# Return-Path) and fields rarely present; each is signed as often as it
# occurs (up to MAX_INSTANCES) and From once more than it occurs
# ("over-signing", RFC 6376 §8.15): a From added in transit breaks the
# signature instead of being shown as the author.
SIGNED_FIELDS = (b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to",
                 b"in-reply-to", b"references", b"mime-version", b"content-type",
                 b"content-transfer-encoding")
MAX_INSTANCES = 3  # per field name in h=: keeps h= (and the field) short whatever the client sent
CHUNK = 64 * 1024
_AUTHOR = frozenset(("from",))
# A WSP run that canonicalization changes: two or more WSP, or one TAB (a
# lone SP is left alone: most text is words and single spaces).  Greedy
# from the run's first octet, so a run is always matched whole.
_WSP_RUN = re.compile(rb"[ \t]{2,}|\t")
_LINE_BREAK = re.compile(rb"\r?\n")  # unfolding; a bare LF goes too, as in dkimpy


class RelaxedBodyHash:
    """SHA-256 of the body under the "relaxed" body canonicalization (RFC 6376
    §3.4.4), fed in chunks of any size; memory stays O(chunk) whatever the
    line lengths.  Lines end at CRLF; a lone CR or LF is an ordinary octet,
    as it is for dkimpy and libopendkim."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._carry = b""         # b"", b" ", b"\r" or b" \r": undecided end of the current line
        self._line_started = False  # part of the current line was hashed
        self._blank_lines = 0     # empty lines held back: trailing ones are dropped

    def update(self, data: bytes) -> None:
        buf = self._carry + data
        cut = buf.rfind(b"\r\n") + 2
        if cut >= 2:
            # The complete lines, canonicalized in bulk (§3.4.4 a, b): WSP
            # runs to one SP, then the SP before each CRLF dropped.
            block = _compress(buf[:cut]).replace(b" \r\n", b"\r\n")
            crlfs = _trailing_crlfs(block)  # the last line's end, then empty lines held back
            end = len(block) - 2 * crlfs
            self._content(block[:end])
            self._end_line()
            self._blank_lines += crlfs - 1
        # The unterminated tail: hash all but what the next chunk decides
        # (trailing white space, a CR that may start a CRLF).  A run of WSP
        # is carried as one SP, so the carry stays at most two octets.
        tail = _compress(buf[cut:] if cut >= 2 else buf)
        carry = b""
        if tail.endswith(b"\r"):
            tail, carry = tail[:-1], b"\r"
        if tail.endswith(b" "):
            tail, carry = tail[:-1], b" " + carry
        self._content(tail)
        self._carry = carry

    def _content(self, data: bytes) -> None:
        if not data:
            return
        if not self._line_started:
            while self._blank_lines:  # in bounded pieces: memory stays flat
                n = min(self._blank_lines, CHUNK)
                self._hash.update(b"\r\n" * n)
                self._blank_lines -= n
            self._line_started = True
        self._hash.update(data)

    def _end_line(self) -> None:
        if self._line_started:
            self._hash.update(b"\r\n")
            self._line_started = False
        else:
            self._blank_lines += 1

    def digest(self) -> bytes:
        # §3.4.4 c: empty lines at the end are ignored; a last line without
        # CRLF gets one (before which, like dkimpy, its white space stays:
        # "at the end of lines" is read as "before a CRLF"; SMTP never
        # delivers such a body); an empty body hashes as nothing at all.
        self._content(self._carry)
        self._carry = b""
        if self._line_started:
            self._end_line()
        return self._hash.digest()


def _compress(data: bytes) -> bytes:
    """WSP runs to one SP; two fast scans first skip the regex for the usual
    big part (base64 lines hold no WSP at all)."""
    if b"\t" in data or b"  " in data:
        return _WSP_RUN.sub(b" ", data)
    return data


def _trailing_crlfs(block: bytes) -> int:
    """How many CRLF pairs `block` (ending with one) ends with, in C-speed
    passes (a body of 20 million empty lines is no loop in Python): the
    run of CR and LF octets at the end, cut after its last CR CR or LF LF,
    alternates; from its first CR on it is all pairs."""
    run = block[len(block.rstrip(b"\r\n")):]
    start = max(run.rfind(b"\r\r"), run.rfind(b"\n\n")) + 1
    if run[start:start + 1] == b"\n":
        start += 1
    return (len(run) - start) // 2


def header_fields(section: bytes) -> list[tuple[bytes, bytes]]:
    """(name, raw field) of each field in a header section, in order; the raw
    field is the whole field, folding kept, without its final CRLF.  One
    linear pass; the empty line ends the section."""
    out: list[tuple[bytes, bytes]] = []
    for line in section.split(b"\r\n"):
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if out:
                out[-1] = (out[-1][0], out[-1][1] + b"\r\n" + line)
            continue
        colon = line.find(b":")
        if colon <= 0:
            continue  # not a field: a verifier skips it too
        out.append((line[:colon].rstrip(b" \t").lower(), line))
    return out


def relaxed_header(raw: bytes) -> bytes:
    """RFC 6376 §3.4.2: name lower-cased, value unfolded, WSP runs reduced to
    one SP, WSP removed around the colon and at the end; CRLF appended."""
    name, _, value = raw.partition(b":")
    value = _WSP_RUN.sub(b" ", _LINE_BREAK.sub(b"", value)).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def author_domain(section: bytes, found: list[str] | None = None) -> str | None:
    """The RFC 5322.From domain, normalised, or None when there is not exactly
    one From field or its mailboxes are not all of one domain (such a
    message aligns with no single signing domain, RFC 7489 §6.6.1).
    `found`: the From values already read (Review.fields), if any."""
    if found is None:
        found = scan_header_section(section, _AUTHOR).all("from")
    if len(found) != 1:
        return None
    domains = set()
    for address in mailboxes(found[0]):
        try:
            domains.add(normalize_domain(address.rpartition("@")[2]))
        except AddressError:
            return None
    return domains.pop() if len(domains) == 1 else None


def body_hash(source: IO[bytes]) -> bytes:
    """The relaxed body hash of a whole message read from source: the header
    section (up to the first empty line) is skipped as it streams by."""
    digest = RelaxedBodyHash()
    tail = b""
    in_header = True
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        if in_header:
            data = tail + chunk
            end = data.find(b"\r\n\r\n")
            if end < 0:
                tail = data[-3:]  # a CRLFCRLF may straddle two chunks
                continue
            in_header = False
            chunk = data[end + 4:]
        digest.update(chunk)
    return digest.digest()


def _fold(tags: Iterable[str]) -> str:
    """Tags joined by "; ", folded before a tag when a line would pass 76
    characters (RFC 5322 §2.1.1); folding is FWS, which relaxed
    canonicalization of the signature field absorbs."""
    out: list[str] = []
    width = len("DKIM-Signature: ")
    for tag in tags:
        piece = tag + ";"
        if out and width + 1 + len(piece) > 76:
            out.append("\r\n\t")
            width = 8
        elif out:
            out.append(" ")
            width += 1
        out.append(piece)
        width += len(piece)
    return "".join(out)


def _h_tag(names: list[bytes]) -> str:
    """h= with FWS after every sixth colon (RFC 6376 §3.5 allows FWS around
    the colons), so the field folds however many names it lists."""
    text = [n.decode("ascii") for n in names]
    return "h=" + ":\r\n\t".join(":".join(text[i:i + 6]) for i in range(0, len(text), 6)) + ";"


def signatures(source: IO[bytes], section: bytes, keys: Iterable[SigningKey],
               now: float | None = None) -> list[str]:
    """DKIM-Signature field values, one per key, for the message whose
    content `source` streams and whose header section is `section`.  CPU
    work: runs in the filter pool."""
    keys = list(keys)
    if not keys:
        return []
    bh = base64.b64encode(body_hash(source)).decode()
    fields = header_fields(section)
    # RFC 6376 §5.4.2: instances are signed from the bottom up.
    by_name: dict[bytes, list[bytes]] = {}
    for name, raw in fields:
        if name in SIGNED_FIELDS:
            by_name.setdefault(name, []).append(raw)
    names: list[bytes] = []
    signed: list[bytes] = []
    for name in SIGNED_FIELDS:
        instances = by_name.get(name, [])[::-1][:MAX_INSTANCES]
        names.extend([name] * len(instances))
        signed.extend(relaxed_header(raw) for raw in instances)
        if name == b"from":
            names.append(name)  # over-signed: hashes as a null string (§5.4.2)
    stamp = int(time.time() if now is None else now)
    out = []
    for key in keys:
        algorithm = "ed25519-sha256" if key.algorithm == ED25519 else "rsa-sha256"
        value = _fold(["v=1", f"a={algorithm}", "c=relaxed/relaxed", f"d={key.domain}",
                       f"s={key.selector}", f"t={stamp}"])
        value += "\r\n\t" + _h_tag(names)
        value += f"\r\n\tbh={bh};\r\n\tb="
        # RFC 6376 §3.7: the signature field itself, b= empty, last and
        # without its CRLF.
        unsigned = relaxed_header(b"DKIM-Signature: " + value.encode())[:-2]
        data = b"".join(signed) + unsigned
        out.append(value + base64.b64encode(_sign(key, data)).decode())
    return out


def _sign(key: SigningKey, data: bytes) -> bytes:
    if isinstance(key.private_key, ed25519.Ed25519PrivateKey):
        # RFC 8463 §3: Ed25519 (pure) over the SHA-256 hash of the data.
        return key.private_key.sign(hashlib.sha256(data).digest())
    # RFC 6376 §3.3.1: RSASSA-PKCS1-v1_5 with SHA-256.
    return key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


class DkimSignStage(Stage):
    """Sign submitted mail with each active selector of its From domain.

    Must be the pipeline's LAST stage: it signs the prefix-less content and
    the final header fields of other stages are not covered, and it must
    never sign a message a scanner rejected (a virus): the pipeline stops at
    the first REJECT or TEMPFAIL, so a stage placed after every scanner
    only ever sees messages that are going out.

    Signs only when the From domain is hosted (`is_local_domain`: hosted
    and alias domains) and has keys.  on_failure IGNORE: an unsigned
    message is better than a lost one; the failure is logged by the
    pipeline and noted in the review."""

    name = "dkim-sign"
    timeout = 60.0  # a 40 MB body streams and hashes in well under that
    on_failure = IGNORE
    _log = Logger()

    def __init__(self, keys: DkimKeyStore, is_local_domain: Callable[[str], bool], work: Any,
                 clock: Callable[[], float] = time.time):
        self.keys = keys
        self.is_local_domain = is_local_domain
        self.work = work  # xmail.filter.work.FilterWork
        self.clock = clock

    def applies(self, transaction: Transaction) -> bool:
        return transaction.mode == SUBMISSION

    def review(self, review: Review) -> Any:
        tx = review.transaction
        domain = author_domain(tx.header_section, review.fields("from"))
        if domain is None:
            review.notes.append("dkim-sign: not signed (no single From domain)")
            return None
        if not self.is_local_domain(domain):
            review.notes.append(f"dkim-sign: not signed ({domain} is not hosted)")
            return None
        d = self.work.run(self._sign, tx, domain, self.clock())
        d.addCallback(self._add, review, domain)
        return d

    def _sign(self, tx: Transaction, domain: str, now: float) -> list[tuple[str, str]]:
        keys = self.keys.signing_keys(domain)
        if not keys:
            return []
        with tx.open() as source:
            values = signatures(source, tx.header_section, keys, now)
        return [(k.selector, v) for k, v in zip(keys, values, strict=True)]

    def _add(self, signed: list[tuple[str, str]], review: Review, domain: str) -> None:
        if not signed:
            review.notes.append(f"dkim-sign: not signed ({domain} has no active DKIM key)")
            return
        for _selector, value in signed:
            review.add_header("DKIM-Signature", value)
        review.facts["dkim_signed"] = [f"{domain}/{s}" for s, _ in signed]
        review.notes.append(f"dkim-sign: signed d={domain} s={','.join(s for s, _ in signed)}")
