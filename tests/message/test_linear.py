# -*- test-case-name: tests.message.test_linear -*-
"""Issue 16 #1: every pass over message text is linear.

Each hostile input is timed at 100 kB and at 1 MB (best of five runs, so a
busy machine adds noise, not a trend); a linear pass costs about 10 times
more for 10 times the input, a quadratic one about 100 times.  The bound
(MAX_RATIO) sits far from both.  The old regexes (`<[^>]*>`,
`<script.*?</script>`, the "(fwd)" trailer, `\\([^)]*\\)` in
Content-Language) took seconds at 100 kB and fail here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from xmail.message import (
    base_subject,
    extract_text,
    html_to_text,
    mailboxes,
    parse_address_list,
    parse_message,
    scan_header_section,
    searchable,
)
from xmail.message.mutf7 import encode

MAX_RATIO = 40.0  # linear: ~10 (up to ~20 when 1 MB leaves the CPU cache); quadratic: ~100
SMALL, LARGE = 100_000, 1_000_000


def html_message(body: str, ctype: str = "text/html") -> bytes:
    return (f"From: a@b.c\r\nContent-Type: {ctype}; charset=utf-8\r\n\r\n" + body).encode()


def folded(unit: str, size: int) -> str:
    """size characters of repeated unit, folded into header lines."""
    count = size // (len(unit) + 3) + 1
    return "\r\n ".join([unit] * count)


# name -> function of a size n that builds and processes hostile input of n characters
CASES: dict[str, Callable[[int], object]] = {
    "html of '<'": lambda n: parse_message(html_message("<" * n)),
    "html of '<a'": lambda n: parse_message(html_message("<a" * (n // 2))),
    "html of '<script '": lambda n: parse_message(html_message("<script " * (n // 8))),
    "html of '<script>' never closed, '</' inside": lambda n: html_to_text(
        "<script>" + "</x" * (n // 3)),
    "html of '<style>x</style' without '>'": lambda n: html_to_text("<style>x</style" * (n // 15)),
    "search text of html '<'": lambda n: extract_text(html_message("<" * n)),
    "plain text": lambda n: parse_message(html_message("a\r\n" * (n // 3), "text/plain")),
    "subject of (fwd) and spaces": lambda n: parse_message(
        ("Subject: " + folded("(fwd) (fwd)", n) + " x\r\n\r\nb\r\n").encode()),
    "subject base of '[a]' blobs": lambda n: base_subject("[a]" * (n // 3) + "re:x"),
    "subject base of '[fwd:' nests": lambda n: base_subject("[fwd: " * (n // 6) + "x" + "]" * (n // 6)),
    "subject base of spaces then x": lambda n: base_subject(" " * n + "x"),
    "references": lambda n: parse_message(
        ("References: " + folded("<a@b.c>", n) + "\r\n\r\nb\r\n").encode()),
    "content-language of '('": lambda n: parse_message(
        ("Content-Language: " + "(" * n + "\r\n\r\nb\r\n").encode()),
    "address list of '<'": lambda n: parse_address_list("<" * n),
    "address list of '\"'": lambda n: searchable('"' * n),
    "address list of commas": lambda n: mailboxes("a@b," * (n // 4)),
    "address list of '(('": lambda n: parse_address_list("(" * n),
    "address list of comments": lambda n: parse_address_list("(a\\)) " * (n // 6) + "c@x"),
    "header section without colons": lambda n: scan_header_section(("x" * 50 + "\r\n") * (n // 52)),
    "header section of one folded field": lambda n: scan_header_section("X: " + folded("y", n)),
    "multipart of boundary prefixes": lambda n: parse_message(
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"--bx\r\n" * (n // 6)),
    "mutf7 of non-ASCII": lambda n: encode("é" * n),
}


def best_time(fn: Callable[[int], object], n: int, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(CASES))
def test_cost_grows_linearly(name: str) -> None:
    fn = CASES[name]
    small = max(best_time(fn, SMALL), 2e-3)  # below allocator and timer noise, treat as 2 ms
    large = best_time(fn, LARGE)
    assert large / small < MAX_RATIO, f"{name}: {small * 1e3:.1f} ms -> {large * 1e3:.1f} ms"
    assert large < 5.0, f"{name}: {large:.1f} s for 1 MB"


def test_html_to_text_reads_as_before() -> None:
    doc = ("<html><head><title>T</title><style>p{}</style></head><body><p>Hello&nbsp;<b>wo</b>rld"
           "</p><script type=x>alert(1)</SCRIPT ><div>a &lt; b</div>1 < 2 <br>end")
    text = html_to_text(doc)
    assert "alert" not in text and "p{}" not in text and "T" not in text.split()
    assert "world" in text and "a < b" in text and text.endswith("end")
    assert html_to_text("x<p>y") == "x y"  # block tags separate words
    assert html_to_text("x<b>y</b>z") == "xyz"  # inline tags do not
    assert html_to_text("a <") == "a <"  # a stray "<" is text
    assert html_to_text("a<script>never closed") == "a"


def test_references_keep_the_root_and_the_latest() -> None:
    ids = [f"<{i}@x>" for i in range(500)]
    meta = parse_message(("References: " + " ".join(ids) + "\r\n\r\nb\r\n").encode())
    kept = meta.headers["references"].split()
    assert len(kept) == 100 and kept[0] == ids[0] and kept[-99:] == ids[-99:]
