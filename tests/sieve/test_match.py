# -*- test-case-name: tests.sieve.test_match -*-
"""Comparators and match types, and :matches in bounded time."""

from __future__ import annotations

import time

from xmail.sieve.match import MAX_VALUE, numeric, order, relate, wildcard
from xmail.sieve.match import test as match_test


def test_is_contains_by_comparator():
    assert match_test(["Hello"], ["hello"])[0]
    assert not match_test(["Hello"], ["hello"], comparator="i;octet")[0]
    assert match_test(["Hello World"], ["O W"], "contains")[0]
    # i;ascii-casemap folds ASCII only (RFC 4790 §9.2)
    assert not match_test(["É"], ["é"])[0]


def test_matches_variables_leftmost_shortest():
    # RFC 5229 §3.2's example
    assert wildcard("[*] *", "[acme-users] [fwd] version 1.0 is out") == [
        "[acme-users] [fwd] version 1.0 is out", "acme-users", "[fwd] version 1.0 is out"]
    assert wildcard("*l*", "hello") == ["hello", "he", "lo"]
    assert wildcard("*.*", "a.b.c") == ["a.b.c", "a", "b.c"]
    assert wildcard("?x*", "axyz") == ["axyz", "a", "yz"]
    assert wildcard("a\\*b", "a*b") == ["a*b"]
    assert wildcard("a\\*b", "axb") is None
    assert wildcard("*", "") == ["", ""]
    assert wildcard("a?c", "ABC") == ["ABC", "B"]
    assert wildcard("a?c", "ABC", "i;octet") is None
    assert wildcard("*a?c*", "xxabxaQcyy") == ["xxabxaQcyy", "xxabx", "Q", "yy"]
    assert wildcard("**", "ab") == ["ab", "", "ab"]


def test_matches_agrees_with_a_reference_on_small_cases():
    import fnmatch
    import itertools
    for pattern in ["", "*", "?", "a*", "*a", "a*b", "*a*b*", "?a?", "a**a", "*?*"]:
        for n in range(5):
            for chars in itertools.product("ab", repeat=n):
                value = "".join(chars)
                expected = fnmatch.fnmatchcase(value, pattern)
                assert (wildcard(pattern, value, "i;octet") is not None) == expected, (pattern, value)


def test_matches_is_not_exponential():
    value = "a" * MAX_VALUE
    started = time.perf_counter()
    assert wildcard("*a" * 200 + "b", value) is None
    assert wildcard("*?" * 200 + "b*", value) is None
    assert wildcard("*a?a" * 50 + "*b", value) is None
    assert time.perf_counter() - started < 2.0


def test_ascii_numeric():
    assert numeric("0042abc") == 42 and numeric("x") is None
    assert order("10", "9", "i;ascii-numeric") == 1
    assert order("x", "9", "i;ascii-numeric") == 1  # no digits: positive infinity
    assert order("x", "y", "i;ascii-numeric") == 0
    assert match_test(["007"], ["7"], "is", "i;ascii-numeric")[0]


def test_relational():
    assert relate("b", "a", "gt", "i;ascii-casemap")
    assert match_test(["5"], ["3"], "value", "i;ascii-numeric", "gt")[0]
    assert not match_test(["5"], ["30"], "value", "i;ascii-numeric", "gt")[0]
    assert match_test(["a", "b", "c"], ["3"], "count", "i;ascii-numeric", "eq")[0]
    assert match_test([], ["0"], "count", "i;ascii-numeric", "eq")[0]
    assert match_test(["x"], ["x"], "value", "i;octet", "ne")[0] is False
