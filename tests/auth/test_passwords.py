"""Every password scheme, with hashes made in the test by independent code:
libpass handlers, the bcrypt and argon2-cffi libraries, `openssl passwd`,
the stdlib crypt module and hashlib for Dovecot's digest schemes."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import warnings

import argon2
import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib.hash import bcrypt as passlib_bcrypt
from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt

from xmail.auth import passwords

PASSWORD = "Tr0ub4dor&3 ünïcödé"
WRONG = "Tr0ub4dor&4 ünïcödé"


def _openssl(flag: str, password: str) -> str:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    out = subprocess.run(["openssl", "passwd", flag, "-stdin"], input=password.encode(),
                         capture_output=True, check=True)
    return out.stdout.decode().strip()


def _stdlib_crypt(method_name: str, password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        crypt = pytest.importorskip("crypt")
        return crypt.crypt(password, crypt.mksalt(getattr(crypt, method_name)))


def _salted(algorithm: str, password: str, salt: bytes) -> bytes:
    return hashlib.new(algorithm, password.encode() + salt).digest() + salt


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# name -> function(password) -> stored hash in that scheme
LEGACY = {
    "bcrypt-2b": lambda pw: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode(),
    "bcrypt-2a": lambda pw: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4, prefix=b"2a")).decode(),
    "bcrypt-2y": lambda pw: passlib_bcrypt.using(ident="2y", rounds=4).hash(pw),
    "sha512_crypt-openssl": lambda pw: _openssl("-6", pw),
    "sha256_crypt-openssl": lambda pw: _openssl("-5", pw),
    "md5_crypt-openssl": lambda pw: _openssl("-1", pw),
    "sha512_crypt-stdlib": lambda pw: _stdlib_crypt("METHOD_SHA512", pw),
    "sha512_crypt-libpass": lambda pw: sha512_crypt.hash(pw),
    "sha256_crypt-libpass": lambda pw: sha256_crypt.hash(pw),
    "md5_crypt-libpass": lambda pw: md5_crypt.hash(pw),
    "argon2i": lambda pw: argon2.PasswordHasher(type=argon2.Type.I, memory_cost=8192).hash(pw),
    "argon2id-weak": lambda pw: argon2.PasswordHasher(memory_cost=8192, time_cost=1).hash(pw),
    "{SHA512-CRYPT}": lambda pw: "{SHA512-CRYPT}" + _openssl("-6", pw),
    "{SHA256-CRYPT}": lambda pw: "{SHA256-CRYPT}" + _openssl("-5", pw),
    "{MD5-CRYPT}": lambda pw: "{MD5-CRYPT}" + _openssl("-1", pw),
    "{CRYPT}": lambda pw: "{CRYPT}" + sha512_crypt.hash(pw),
    "{BLF-CRYPT}": lambda pw: "{BLF-CRYPT}" + passlib_bcrypt.using(ident="2y", rounds=4).hash(pw),
    "{ARGON2ID}": lambda pw: "{ARGON2ID}" + argon2.PasswordHasher(memory_cost=65536).hash(pw),
    "{ARGON2I}": lambda pw: "{ARGON2I}" + argon2.PasswordHasher(type=argon2.Type.I).hash(pw),
    "{SSHA}": lambda pw: "{SSHA}" + _b64(_salted("sha1", pw, os.urandom(4))),
    "{SSHA256}": lambda pw: "{SSHA256}" + _b64(_salted("sha256", pw, os.urandom(8))),
    "{SSHA512}": lambda pw: "{SSHA512}" + _b64(_salted("sha512", pw, os.urandom(16))),
    "{SSHA512.hex}": lambda pw: "{SSHA512.hex}" + _salted("sha512", pw, os.urandom(16)).hex(),
    "{SMD5}": lambda pw: "{SMD5}" + _b64(_salted("md5", pw, os.urandom(4))),
    "{SHA}": lambda pw: "{SHA}" + _b64(hashlib.sha1(pw.encode()).digest()),
    "{SHA256}": lambda pw: "{SHA256}" + _b64(hashlib.sha256(pw.encode()).digest()),
    "{SHA512}": lambda pw: "{SHA512}" + _b64(hashlib.sha512(pw.encode()).digest()),
    "{SHA256.hex}": lambda pw: "{SHA256.hex}" + hashlib.sha256(pw.encode()).hexdigest(),
    "{PLAIN-MD5}": lambda pw: "{PLAIN-MD5}" + hashlib.md5(pw.encode()).hexdigest(),
    "{PLAIN-MD5.b64}": lambda pw: "{PLAIN-MD5.b64}" + _b64(hashlib.md5(pw.encode()).digest()),
    "{LDAP-MD5}": lambda pw: "{LDAP-MD5}" + _b64(hashlib.md5(pw.encode()).digest()),
    "{PLAIN}": lambda pw: "{PLAIN}" + pw,
    "{CLEAR}": lambda pw: "{CLEAR}" + pw,
}


def test_new_hashes_are_argon2id_with_the_policy_parameters():
    stored = passwords.hash_password(PASSWORD)
    assert stored.startswith(f"$argon2id$v=19$m={passwords.ARGON2_MEMORY_KIB},t=2,p=1$")
    assert 19 * 1024 <= passwords.ARGON2_MEMORY_KIB <= 64 * 1024
    # argon2-cffi, an independent implementation, agrees.
    assert argon2.PasswordHasher().verify(stored, PASSWORD)
    assert passwords.verify(PASSWORD, stored) == passwords.Verification(True, None)
    assert passwords.verify(WRONG, stored) == passwords.Verification(False, None)
    assert passwords.identify(stored) == "argon2"


def test_two_hashes_of_one_password_differ():
    assert passwords.hash_password(PASSWORD) != passwords.hash_password(PASSWORD)


@pytest.mark.parametrize("scheme", sorted(LEGACY))
def test_legacy_scheme_verifies_and_asks_for_a_rehash(scheme):
    stored = LEGACY[scheme](PASSWORD)
    assert passwords.identify(stored)  # importable with --password-hash
    result = passwords.verify(PASSWORD, stored)
    assert result.ok, stored
    assert result.new_hash is not None and result.new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify(PASSWORD, result.new_hash) == passwords.Verification(True, None)
    assert passwords.verify(WRONG, stored) == passwords.Verification(False, None)
    assert not passwords.verify(PASSWORD[:-1], stored).ok


@pytest.mark.parametrize("scheme", ["{SSHA}", "{SHA512-CRYPT}", "{PLAIN-MD5}", "{PLAIN}"])
def test_dovecot_scheme_names_are_case_insensitive(scheme):
    stored = LEGACY[scheme](PASSWORD)
    lowered = stored.replace(scheme, scheme.lower(), 1)
    assert passwords.verify(PASSWORD, lowered).ok


def test_bcrypt_rejects_a_password_over_72_bytes_as_a_failed_login():
    exactly_72 = "é" * 36  # 72 bytes in UTF-8
    stored = bcrypt.hashpw(exactly_72.encode(), bcrypt.gensalt(rounds=4)).decode()
    assert passwords.verify(exactly_72, stored).ok
    # bcrypt >= 5 raises ValueError for these; we answer a plain failure.
    assert passwords.verify(exactly_72 + "x", stored) == passwords.Verification(False, None)
    assert passwords.verify("x" * 500, "{BLF-CRYPT}" + stored) == passwords.Verification(False, None)


def test_argon2_takes_long_passwords_up_to_the_limit():
    long_password = "p" * passwords.MAX_PASSWORD_BYTES
    stored = passwords.hash_password(long_password)
    assert passwords.verify(long_password, stored).ok
    assert not passwords.verify(long_password + "p", stored).ok
    with pytest.raises(ValueError):
        passwords.hash_password(long_password + "p")


@pytest.mark.parametrize("bad", ["", "a\r\nb", "nul\0"])
def test_unusable_passwords_are_refused(bad):
    with pytest.raises(ValueError):
        passwords.hash_password(bad)
    assert not passwords.verify(bad, "{PLAIN}" + bad).ok


@pytest.mark.parametrize("stored", [
    "", "plaintext", "$6$", "$9$abc$def", "{FOO}bar", "{SHA512-CRYPT}$1$abc$def",
    "{SSHA}" + "!!notbase64!!", "{SHA}" + _b64(b"short"), "{BLF-CRYPT}$6$x$y",
])
def test_unknown_or_malformed_hashes_cannot_be_imported_and_never_verify(stored):
    with pytest.raises(passwords.UnknownHash):
        passwords.identify(stored)
    assert passwords.verify(PASSWORD, stored) == passwords.Verification(False, None)


def test_a_dovecot_prefix_must_match_its_content():
    md5 = _openssl("-1", PASSWORD)
    assert not passwords.verify(PASSWORD, "{SHA512-CRYPT}" + md5).ok
    assert passwords.verify(PASSWORD, "{MD5-CRYPT}" + md5).ok


def test_the_dummy_check_always_fails():
    assert passwords.dummy_verify(PASSWORD) == passwords.Verification(False, None)


@settings(max_examples=200, deadline=None)
@given(password=st.text(max_size=80), stored=st.one_of(
    st.text(max_size=80),
    st.builds(lambda s, t: "{" + s + "}" + t,
              st.sampled_from(["SSHA", "SHA", "PLAIN-MD5", "SHA512-CRYPT", "BLF-CRYPT", "PLAIN", "SMD5"]),
              st.text(max_size=60)),
    st.builds(lambda p, t: p + t, st.sampled_from(["$1$", "$5$", "$6$", "$2y$04$", "$argon2id$"]),
              st.text(max_size=60)),
))
def test_verify_never_raises(password, stored):
    result = passwords.verify(password, stored)
    assert isinstance(result, passwords.Verification)
