# -*- test-case-name: tests.protocols.test_imap_auth -*-
"""Not-authenticated state (RFC 3501 §6.2): STARTTLS, AUTHENTICATE (PLAIN,
LOGIN, with SASL-IR, RFC 4959) and LOGIN, all through the shared portal."""

from __future__ import annotations

import base64
import binascii

from twisted.cred.error import UnauthorizedLogin

from xmail.auth.credentials import login_credentials
from xmail.auth.interfaces import AccountDisabled, IMailAccount, LoginUnavailable
from xmail.protocols.imap.commands.any_state import capability_line, plaintext_auth_allowed
from xmail.protocols.imap.grammar import AuthenticateArgs, Request
from xmail.protocols.imap.session import (
    MAX_AUTH_FAILURES,
    NOT_AUTH,
    Bad,
    No,
    Session,
    command,
)


@command("STARTTLS", NOT_AUTH)
async def starttls(session: Session, request: Request) -> str:
    if session.conn.is_tls:
        raise Bad("TLS is already active")
    if not session.conn.tls_available():
        raise No("TLS is not available")
    # RFC 3501 §6.2.1: TLS starts right after the tagged OK; whatever the
    # client pipelined in plaintext behind STARTTLS is discarded by start_tls.
    session.after_reply = session.conn.start_tls
    return "Begin TLS negotiation now"


def _require_privacy(session: Session) -> None:
    if not plaintext_auth_allowed(session):
        raise No("use STARTTLS first", "PRIVACYREQUIRED")  # RFC 5530 §3


async def _challenge(session: Session, prompt: bytes) -> bytes:
    # RFC 3501 §6.2.2: "+ " base64 challenge; "*" cancels with BAD.
    session.conn.write(b"+ " + base64.b64encode(prompt) + b"\r\n")
    line = await session.conn.read_raw_line()
    if line.strip() == b"*":
        raise Bad("AUTHENTICATE cancelled")
    return _b64(line.strip())


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Bad("invalid base64 in AUTHENTICATE") from None


@command("AUTHENTICATE", NOT_AUTH)
async def authenticate(session: Session, request: Request) -> str:
    args: AuthenticateArgs = request.args
    _require_privacy(session)
    if args.mechanism == "PLAIN":
        # RFC 4616 §2: message = [authzid] NUL authcid NUL passwd
        if args.initial_response is not None:
            response = _b64(args.initial_response)
        else:
            response = await _challenge(session, b"")
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise Bad("malformed PLAIN response")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid.lower() != user.lower():
            raise No("cannot authorize as another user", "AUTHORIZATIONFAILED")
    elif args.mechanism == "LOGIN":
        if args.initial_response is not None:
            raw_user = _b64(args.initial_response)
        else:
            raw_user = await _challenge(session, b"Username:")
        raw_password = await _challenge(session, b"Password:")
        user, password = raw_user.decode("utf-8", "replace"), raw_password.decode("utf-8", "replace")
    else:
        raise No(f"unsupported mechanism {args.mechanism}", "CANNOT")
    return await _login(session, user, password, args.mechanism)


@command("LOGIN", NOT_AUTH)
async def login(session: Session, request: Request) -> str:
    user, password = request.args
    _require_privacy(session)
    return await _login(session, user, password, "LOGIN")


async def _login(session: Session, user: str, password: str, method: str) -> str:
    portal = session.ctx.portal
    try:
        credentials = login_credentials(user, password, client_ip=session.conn.client_host, protocol="imap")
        _, avatar, logout = await portal.login(credentials, None, IMailAccount)
    except LoginUnavailable:
        session.audit_failure(user, method, "throttled")
        raise No("try again later", "UNAVAILABLE") from None
    except UnauthorizedLogin as e:
        session.audit_failure(user, method, "disabled" if isinstance(e, AccountDisabled) else "fail")
        session.auth_failures += 1
        if session.auth_failures >= MAX_AUTH_FAILURES:
            session.untagged(b"BYE too many failed logins")
            session.close_after_reply = True
        raise No("invalid credentials", "AUTHENTICATIONFAILED") from None
    connections = session.ctx.connections
    if connections is not None and not connections.acquire(avatar.address, "imap"):
        logout()
        session.audit_failure(avatar.address, method, "throttled")
        raise No("too many connections for this user", "LIMIT")  # RFC 5530 §3
    session.logged_in(avatar, logout, method)
    # RFC 3501 §7.2.1: the new capabilities, saving the client a round trip.
    return "[" + capability_line(session).decode() + "] logged in"
