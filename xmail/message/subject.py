# -*- test-case-name: tests.protocols.test_imap_sort_model, tests.protocols.test_imap_thread_model -*-
"""RFC 5256 §2.1 base subject, by a forward scan over a bounded subject.

The regex version (`(?:\\s|\\(fwd\\))+\\Z` searched over the subject, blobs
before "re:" retried at every step) was quadratic: a long subject of spaces
and "(fwd)" cost seconds at delivery (issue 16 #1).  Here every step moves
one of two indexes (start, end) towards the other, each blob is scanned once
per leader attempt, and only the first MAX_SUBJECT_CHARS characters take
part (the sort/thread key of a longer subject is the key of its prefix).
"""

from __future__ import annotations

import re

MAX_SUBJECT_CHARS = 4096
_WSP_RUN = re.compile(r"\s+")


def _blob_end(text: str, i: int, end: int) -> int:
    """subj-blob = "[" *BLOBCHAR "]" *WSP (BLOBCHAR: not "[" or "]").
    Index after the blob starting at i, or -1."""
    if i >= end or text[i] != "[":
        return -1
    j = i + 1
    while j < end and text[j] != "]":
        if text[j] == "[":
            return -1
        j += 1
    if j >= end:
        return -1
    j += 1
    while j < end and text[j] == " ":
        j += 1
    return j


def _leader_end(text: str, i: int, end: int) -> tuple[int, int]:
    """subj-leader = (*subj-blob subj-refwd) / WSP at i.  Returns (index after
    the leader or -1, index where the blob run before "re"/"fw" ended)."""
    if i < end and text[i] == " ":
        return i + 1, i
    p = i
    while True:
        q = _blob_end(text, p, end)
        if q < 0:
            break
        p = q
    blobs_end = p
    # subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
    word = text[p:p + 3].lower()
    if word.startswith("re"):
        p += 2
    elif word == "fwd":
        p += 3
    elif word.startswith("fw"):
        p += 2
    else:
        return -1, blobs_end
    while p < end and text[p] == " ":
        p += 1
    q = _blob_end(text, p, end)
    if q >= 0:
        p = q
    if p < end and text[p] == ":":
        return p + 1, blobs_end
    return -1, blobs_end


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1 base subject of a decoded subject, and whether the
    extraction removed reply/forward markers (Re:, Fwd:, "(fwd)", "[fwd: ]"),
    which THREAD=REFERENCES needs.  The result is not case-folded."""
    # (1) tabs and runs of WSP become one space (one class, one quantifier:
    # a single linear pass)
    text = _WSP_RUN.sub(" ", subject[:MAX_SUBJECT_CHARS])
    start, end = 0, len(text)
    reply = False
    no_leader_until = -1  # a failed leader attempt that scanned blobs up to here
    while True:
        # (2) subj-trailer = "(fwd)" / WSP, removed from the end repeatedly
        while end > start:
            if text[end - 1] == " ":
                end -= 1
            elif end - start >= 5 and text[end - 5:end].lower() == "(fwd)":
                end -= 5
                reply = True
            else:
                break
        while True:  # (5): repeat (3) and (4) until nothing changes
            changed = False
            if start > no_leader_until:  # (3)
                leader, blobs_end = _leader_end(text, start, end)
                if leader > start:
                    reply = reply or text[start] != " "
                    start = leader
                    changed = True
                else:
                    # Removing leading blobs (4) cannot make this attempt
                    # succeed until the scan passes blobs_end.
                    no_leader_until = blobs_end
            blob = _blob_end(text, start, end)  # (4) unless nothing would be left
            if blob >= 0 and blob < end:
                start = blob
                changed = True
            if not changed:
                break
        # (6) subj-fwd-hdr = "[fwd:" / subj-fwd-trl = "]"
        if end - start >= 6 and text[start:start + 5].lower() == "[fwd:" and text[end - 1] == "]":
            start += 5
            end -= 1
            reply = True
            no_leader_until = -1
            continue
        return text[start:end], reply
