# -*- test-case-name: tests.filter.authcheck.test_dkim,tests.filter.authcheck.test_arc -*-
"""DKIM verification (RFC 6376) and ARC chain validation (RFC 8617) with
dkimpy, in a worker thread, keys fetched through the DnsBridge.

dkimpy only ever gets the header section: the body hash (bh=) of each
DKIM signature and ARC-Message-Signature is computed by streaming the
spool file (xmail.filter.authcheck.body), once per distinct
(canonicalization, hash, l=), and checked before dkimpy verifies b= over
the header fields.  So a 40 MB message is never held in memory here, and
no single call over it holds the GIL (the reactor keeps turning).
At most `max_signatures` DKIM-Signature fields, the topmost, are
evaluated; each gets its own result (RFC 6376 §6.1: a verifier may limit
the signatures it checks; RFC 8601 §2.7.1 result names).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import dkim as dkimpy
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError

from xmail.filter.authcheck.body import body_hash, split_header
from xmail.filter.authcheck.dnsbridge import DnsBridge, DnsTemporary, OversizeRecord

# dkimpy logs every failed signature at ERROR; our results carry the reason.
_quiet = logging.getLogger("xmail.filter.authcheck.dkimpy")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False

MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must not accept smaller keys
MAX_TEXT = 255       # characters kept of d=, s= and reasons (client data)
# Distinct body hashes (canonicalization, hash, l=) computed per message:
# each is a pass over the body, and 50 ARC sets with 50 l= values must not
# make 50 passes over 40 MB.
MAX_BODY_PASSES = 8


@dataclass(frozen=True, slots=True)
class DkimResult:
    result: str   # pass fail neutral temperror permerror (RFC 8601 §2.7.1)
    domain: str   # d= (DMARC aligns with it)
    selector: str  # s=
    algorithm: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: str   # pass fail none (RFC 8617 §4.4; "cv" of the newest set)
    instances: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DkimReport:
    signatures: list[DkimResult]
    ignored: int  # DKIM-Signature fields beyond the limit, not evaluated
    arc: ArcResult


class KeyLookup:
    """dkimpy's `dnsfunc`: one TXT lookup through the bridge, remembering
    why it found no usable key (temperror vs permerror, RFC 6376 §6.1.2)."""

    def __init__(self, bridge: DnsBridge):
        self.bridge = bridge
        self.problem: tuple[str, str] | None = None

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            records = self.bridge.txt(text)
        except DnsTemporary as e:
            self.problem = ("temperror", "key lookup failed")
            raise dkimpy.DnsTimeoutError(str(e)) from None
        except OversizeRecord:
            self.problem = ("permerror", "key record too large")
            raise dkimpy.KeyFormatError("key record too large") from None
        if not records:
            # RFC 6376 §6.1.2 step 3: no key record -> PERMFAIL
            self.problem = ("permerror", "no key")
            return None
        # §3.6.2.2: several records -> the verifier may pick one; the first.
        self.problem = ("permerror", "bad key record")  # unless the signature then verifies
        return records[0]


class BodyHashes:
    """The message's body hashes, streamed from the spool file on demand."""

    def __init__(self, open_message: Callable[[], IO[bytes]], offset: int):
        self.open_message = open_message
        self.offset = offset
        self._digests: dict[tuple[bool, Any, int | None], bytes] = {}

    def check(self, sig: dict[bytes, bytes]) -> None:
        """RFC 6376 §3.7 / §6.1.3 step 4 for one signature: raise unless
        its bh= is the hash of the (l=-limited) canonical body."""
        try:
            policy = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
        except InvalidCanonicalizationPolicyError as e:
            raise dkimpy.MessageFormatError(f"invalid c= value: {e.args[0]!r}") from None
        hasher = dkimpy.HASH_ALGORITHMS.get(sig.get(b"a", b""))
        if hasher is None:
            raise dkimpy.ValidationError("unknown signature algorithm")
        try:
            limit = int(sig[b"l"]) if b"l" in sig else None
            expected = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
        except (ValueError, binascii.Error) as e:
            raise dkimpy.MessageFormatError(str(e)) from None
        key = (policy.body_algorithm.name == b"relaxed", hasher, limit)
        if key not in self._digests:
            if len(self._digests) >= MAX_BODY_PASSES:
                raise dkimpy.ValidationError("too many distinct body hashes in one message")
            self._digests[key] = body_hash(self.open_message, self.offset, key[0], hasher, limit)
        if self._digests[key] != expected:
            raise dkimpy.ValidationError("body hash mismatch")


class _StreamedBody:
    """Mixin for dkimpy's verifiers, built on the header section only:
    bh= is checked against the streamed body hash, then dkimpy verifies
    the signature without a bh= of its own to compare (its `verify_sig`
    checks bh= only when the tag is there; b= covers the raw field)."""

    hashes: BodyHashes

    def verify_sig(self, sig: dict[bytes, bytes], include_headers: Any, sig_header: Any,
                   dnsfunc: Any) -> Any:
        if b"bh" in sig:
            self.hashes.check(sig)
            sig = {k: v for k, v in sig.items() if k != b"bh"}
        return super().verify_sig(sig, include_headers, sig_header, dnsfunc)  # type: ignore[misc]


class StreamedDKIM(_StreamedBody, dkimpy.DKIM):
    pass


class StreamedARC(_StreamedBody, dkimpy.ARC):
    pass


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value)[:MAX_TEXT]


def verify_message(open_message: Callable[[], IO[bytes]], bridge: DnsBridge, max_signatures: int,
                   signatures: int, arc_sets: int) -> DkimReport:
    """Verify up to max_signatures of the message's DKIM signatures (the
    topmost) and its ARC chain (blocking: run in the worker pool).
    `signatures` and `arc_sets` count the DKIM-Signature / ARC-Seal fields
    the stage saw in the header section: 0 skips that check (and the
    message is not read at all)."""
    if not signatures and not arc_sets:
        return DkimReport([], 0, ArcResult("none"))
    with open_message() as stream:
        header, offset = split_header(stream)
    hashes = BodyHashes(open_message, offset)
    results: list[DkimResult] = []
    found = evaluated = 0
    if signatures:
        try:
            verifier = StreamedDKIM(header, logger=_quiet, minkey=MIN_RSA_BITS)
        except Exception as e:  # an unparseable header: every signature is unusable
            results = [DkimResult("permerror", "", "", reason=f"message unparseable: {_text(e)}")]
        else:
            verifier.hashes = hashes
            # counted as dkimpy reads the header (its idx), not as we did
            found = sum(1 for name, _value in verifier.headers if name.lower() == b"dkim-signature")
            evaluated = min(found, max(max_signatures, 0))
            results = [_verify_one(verifier, i, bridge) for i in range(evaluated)]
    arc = _verify_arc(header, hashes, bridge) if arc_sets else ArcResult("none")
    return DkimReport(results, found - evaluated, arc)


def _verify_one(verifier: Any, index: int, bridge: DnsBridge) -> DkimResult:
    lookup = KeyLookup(bridge)
    verifier.domain, verifier.selector, verifier.signature_fields, verifier.pk = None, "", {}, None
    try:
        ok = verifier.verify(idx=index, dnsfunc=lookup)
    except dkimpy.ValidationError as e:
        # a body hash mismatch, a tlsrpt flag: the signature does not hold
        return _result(verifier, "fail", _text(e))
    except dkimpy.DKIMException as e:
        # unparseable tag list, missing tags, unknown algorithm or key type,
        # expired signature (§3.5 x=): the signature cannot be used
        return _result(verifier, "permerror", _text(e))
    except Exception as e:  # dkimpy on input it did not expect
        return _result(verifier, "permerror", f"unusable signature: {type(e).__name__}")
    if ok:
        return _result(verifier, "pass", "")
    if lookup.problem is not None and getattr(verifier, "pk", None) is None:
        return _result(verifier, *lookup.problem)
    return _result(verifier, "fail", "signature did not verify")


def _result(verifier: Any, result: str, reason: str) -> DkimResult:
    sig = getattr(verifier, "signature_fields", None) or {}
    return DkimResult(result, _text(sig.get(b"d", b"")).lower(), _text(sig.get(b"s", b"")),
                      _text(sig.get(b"a", b"")), reason)


def _verify_arc(header: bytes, hashes: BodyHashes, bridge: DnsBridge) -> ArcResult:
    """RFC 8617 §5.2 chain validation (dkimpy's arc_verify, on the header
    section with streamed body hashes)."""
    lookup = KeyLookup(bridge)
    try:
        arc = StreamedARC(header, logger=_quiet, minkey=MIN_RSA_BITS)
        arc.hashes = hashes
        cv, sets, reason = arc.verify(dnsfunc=lookup)
    except Exception as e:  # a chain dkimpy cannot read is a broken chain
        return ArcResult("fail", 0, f"unusable ARC set: {type(e).__name__}")
    result = {dkimpy.CV_Pass: "pass", dkimpy.CV_Fail: "fail", dkimpy.CV_None: "none"}.get(cv, "fail")
    return ArcResult(result, len(sets or ()), "" if result == "pass" else _text(reason))
