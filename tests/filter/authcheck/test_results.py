"""The Authentication-Results field value: escaping and folding (RFC 8601)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from xmail.filter.authcheck.results import FIELD, field_value, pvalue, resinfo


def test_safe_values_are_tokens_and_the_rest_quoted_strings() -> None:
    assert pvalue("alice@example.net") == "alice@example.net"
    assert pvalue("mail.example.net") == "mail.example.net"
    assert pvalue("a b") == '"a b"'
    assert pvalue("x@") == '"x@"'
    assert pvalue("a@b@c") == '"a@b@c"'
    assert pvalue("") == '""'
    assert pvalue('evil\r\nX-Bad: 1; dkim=pass (x) "q" \\') == '"evilX-Bad: 1 dkim=pass x q"'
    assert pvalue("caf\u00e9.example") == '"caf.example"'
    assert len(pvalue("h" * 10_000)) == 255


def test_resinfo() -> None:
    spf = resinfo("spf", "pass", [("smtp.mailfrom", "a@example.net")])
    assert spf == "spf=pass smtp.mailfrom=a@example.net"
    assert resinfo("dkim", "fail", [("header.d", "example.net")], reason="body hash mismatch (got x)") == \
        'dkim=fail reason="body hash mismatch got x" header.d=example.net'


def test_no_results_is_none() -> None:
    assert field_value("mx.test", []) == "mx.test; none"


def test_long_fields_are_folded_at_spaces() -> None:
    items = [resinfo("dkim", "pass", [("header.d", f"d{i}.example.net"), ("header.s", "selector")])
             for i in range(10)]
    value = field_value("mx.test", items)
    lines = f"{FIELD}: {value}".split("\r\n")
    assert len(lines) > 3 and all(len(line) <= 78 for line in lines)
    assert all(line.startswith(" ") for line in lines[1:])
    assert value.replace("\r\n", "") == "mx.test; " + "; ".join(items)


@given(st.lists(st.text(max_size=300), max_size=5))
def test_any_client_text_stays_inside_its_value(values: list[str]) -> None:
    items = [resinfo("spf", "none", [("smtp.helo", v)]) for v in values]
    value = field_value("mx.test", items)
    lines = value.split("\r\n")
    assert all(line.startswith(" ") for line in lines[1:])
    assert all(" " <= c <= "~" for c in value.replace("\r\n", ""))
    unfolded = value.replace("\r\n", "")
    # outside quoted-strings there are exactly the separators we wrote
    outside = unfolded.split('"')[::2]
    assert sum(part.count(";") for part in outside) == max(len(values), 1)
    assert not any(c in part for part in outside for c in "()\\")
