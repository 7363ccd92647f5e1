# -*- test-case-name: tests.filter.authcheck.test_dkim,tests.filter.authcheck.test_arc -*-
"""DKIM verification (RFC 6376) and ARC chain validation (RFC 8617) with
dkimpy, in a worker thread, keys fetched through the DnsBridge.

dkimpy wants the whole message as bytes, so the worker reads the spool
file (bounded by the SMTP size limit and the pool's thread count); the
body is canonicalized and hashed by dkimpy per signature, not streamed.
At most `max_signatures` DKIM-Signature fields, the topmost, are
evaluated; each gets its own result (RFC 6376 §6.1: a verifier may limit
the signatures it checks; RFC 8601 §2.7.1 result names).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dkim as dkimpy

from xmail.filter.authcheck.dnsbridge import DnsBridge, DnsTemporary, OversizeRecord

# dkimpy logs every failed signature at ERROR; our results carry the reason.
_quiet = logging.getLogger("xmail.filter.authcheck.dkimpy")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False

MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must not accept smaller keys
MAX_TEXT = 255       # characters kept of d=, s= and reasons (client data)


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


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value)[:MAX_TEXT]


def verify_message(message: bytes, bridge: DnsBridge, max_signatures: int,
                   signatures: int, arc_sets: int) -> DkimReport:
    """Verify up to max_signatures of the message's DKIM signatures and its
    ARC chain (blocking: run in the worker pool).  `signatures` and
    `arc_sets` are the counts of DKIM-Signature / ARC-Seal fields already
    found in the header section (0: skip that check)."""
    results: list[DkimResult] = []
    evaluated = min(signatures, max(max_signatures, 0))
    if evaluated:
        try:
            verifier = dkimpy.DKIM(message, logger=_quiet, minkey=MIN_RSA_BITS)
        except Exception as e:  # unparseable message: every signature is unusable
            results = [DkimResult("permerror", "", "", reason=f"message unparseable: {_text(e)}")]
        else:
            results = [_verify_one(verifier, i, bridge) for i in range(evaluated)]
    arc = _verify_arc(message, bridge) if arc_sets else ArcResult("none")
    return DkimReport(results, signatures - evaluated, arc)


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


def _verify_arc(message: bytes, bridge: DnsBridge) -> ArcResult:
    """RFC 8617 §5.2 chain validation of the newest ARC set."""
    lookup = KeyLookup(bridge)
    try:
        cv, sets, reason = dkimpy.arc_verify(message, logger=_quiet, dnsfunc=lookup,
                                             minkey=MIN_RSA_BITS)
    except Exception as e:  # a chain dkimpy cannot read is a broken chain
        return ArcResult("fail", 0, f"unusable ARC set: {type(e).__name__}")
    result = {dkimpy.CV_Pass: "pass", dkimpy.CV_Fail: "fail", dkimpy.CV_None: "none"}.get(cv, "fail")
    return ArcResult(result, len(sets or ()), "" if result == "pass" else _text(reason))
