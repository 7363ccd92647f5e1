"""SASL PLAIN and LOGIN without I/O (xmail.auth.sasl): the one UTF-8 and
authzid rule every protocol's AUTH/AUTHENTICATE/LOGIN goes through."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmail.auth import sasl
from xmail.auth.passwords import MAX_PASSWORD_BYTES


def finish(exchange: sasl.Exchange, *responses: bytes | None):
    outcome = None
    for response in responses:
        outcome = exchange.step(response)
    return outcome


def test_plain_with_and_without_initial_response():
    assert finish(sasl.Plain(), b"\0alice@example.com\0pw") == sasl.Credentials("alice@example.com", "pw")
    exchange = sasl.Plain()
    assert exchange.step(None) == b""  # RFC 4422 §5: empty challenge
    assert exchange.step(b"\0alice@example.com\0pw").authcid == "alice@example.com"


def test_plain_authzid_is_kept_only_when_it_differs():
    same = finish(sasl.Plain(), b"ALICE@example.com\0alice@example.com\0pw")
    other = finish(sasl.Plain(), b"bob@example.com\0alice@example.com\0pw")
    assert same.authzid == "" and other.authzid == "bob@example.com"


def test_login_steps_and_initial_user_name():
    exchange = sasl.Login()
    assert exchange.step(None) == b"Username:"
    assert exchange.step("josé@example.com".encode()) == b"Password:"
    assert exchange.step("pässword".encode()) == sasl.Credentials("josé@example.com", "pässword")
    assert finish(sasl.Login(), b"alice@example.com", b"pw") == sasl.Credentials("alice@example.com", "pw")


@pytest.mark.parametrize("mechanism, responses", [
    ("PLAIN", [b"alice\0pw"]),  # two fields
    ("PLAIN", [b"\0alice\0pw\0"]),  # four fields
    ("PLAIN", [b"\0\0pw"]),  # empty authcid (RFC 4616 §2: 1*SAFE)
    ("PLAIN", [b"\0alice\0"]),  # empty password
    ("PLAIN", [b"\0al\xffice\0pw"]),  # not UTF-8
    ("PLAIN", [b"\0alice\0p\xc3"]),  # truncated UTF-8 in the password
    ("PLAIN", [b"\xff\0alice\0pw"]),  # authzid not UTF-8
    ("PLAIN", [b"\0" + b"a" * 400 + b"\0pw"]),  # identity too long
    ("PLAIN", [b"\0alice\0" + b"p" * (MAX_PASSWORD_BYTES + 1)]),
    ("LOGIN", [b""]),  # empty user name
    ("LOGIN", [b"alice\0bob"]),  # NUL in the user name
    ("LOGIN", [b"alice", b""]),  # empty password
    ("LOGIN", [b"alice", b"p\0w"]),
    ("LOGIN", [b"alice", b"\xc0\xaf"]),  # overlong UTF-8
])
def test_malformed_responses_end_the_exchange(mechanism, responses):
    exchange = sasl.exchange(mechanism)
    with pytest.raises(sasl.SaslError):
        finish(exchange, *responses)


def test_mechanism_names():
    assert isinstance(sasl.exchange("plain"), sasl.Plain)
    assert isinstance(sasl.exchange("Login"), sasl.Login)
    assert sasl.exchange("CRAM-MD5") is None and sasl.MECHANISMS == ("PLAIN", "LOGIN")


def test_response_lines():
    assert sasl.decode_response(b"AGFsaWNlAHB3") == b"\0alice\0pw"
    assert sasl.decode_response(b"") == b""
    with pytest.raises(sasl.SaslCancelled):
        sasl.decode_response(b"*")
    for bad in (b"!!!", b"AGFsaWNlAHB", b"AGF saWNl", b"A" * (sasl.MAX_RESPONSE_BYTES + 4)):
        with pytest.raises(sasl.SaslError):
            sasl.decode_response(bad)
    assert sasl.decode_initial("=") == b"" and sasl.decode_initial(b"AGFAYgBj") == b"\0a@b\0c"
    with pytest.raises(sasl.SaslError):
        sasl.decode_initial("*")


def test_the_longest_valid_plain_message_fits_a_response_line():
    message = b"a" * sasl.MAX_IDENTITY_BYTES + b"\0" + b"b" * sasl.MAX_IDENTITY_BYTES + b"\0" + (
        b"p" * MAX_PASSWORD_BYTES)
    decoded = sasl.decode_response(base64.b64encode(message))
    assert finish(sasl.Plain(), decoded).password == "p" * MAX_PASSWORD_BYTES


def test_the_same_rule_for_logins_that_are_not_sasl():
    assert sasl.credentials("alice@example.com", "pw") == sasl.Credentials("alice@example.com", "pw")
    assert sasl.credentials(b"alice@example.com", b"pw").authcid == "alice@example.com"
    for name, password in (("", "pw"), ("alice", ""), ("a\0b", "pw"), (b"\xff", "pw"), ("a" * 400, "pw")):
        with pytest.raises(sasl.SaslError):
            sasl.credentials(name, password)


def test_the_password_never_shows_in_repr():
    assert "secret" not in repr(sasl.Credentials("alice", "secret"))


@given(mechanism=st.sampled_from(sasl.MECHANISMS), responses=st.lists(st.binary(max_size=64), max_size=4))
def test_any_input_gives_a_challenge_credentials_or_sasl_error(mechanism, responses):
    exchange = sasl.exchange(mechanism)
    for response in responses:
        try:
            outcome = exchange.step(response)
        except sasl.SaslError:
            return
        assert isinstance(outcome, bytes | sasl.Credentials)
        if isinstance(outcome, sasl.Credentials):
            assert outcome.authcid and outcome.password and "\0" not in outcome.authcid
            return


@given(st.binary(max_size=64))
def test_any_line_decodes_or_raises_sasl_error(line):
    try:
        assert isinstance(sasl.decode_response(line), bytes)
    except sasl.SaslError:
        pass
