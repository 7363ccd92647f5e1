# -*- test-case-name: tests.protocols.test_imap_commands,tests.auth.test_login -*-
"""Not-authenticated state (RFC 3501 §6.2): STARTTLS, AUTHENTICATE (PLAIN,
LOGIN, with SASL-IR, RFC 4959) and LOGIN, all through the one login path
(xmail.auth.sasl for the exchange, xmail.auth.login for the login)."""

from __future__ import annotations

from twisted.cred.error import LoginFailed, UnauthorizedLogin

from xmail.auth import sasl
from xmail.auth.interfaces import AuthorizationFailed, LoginUnavailable, SessionLimit
from xmail.auth.login import login as one_login
from xmail.protocols.imap.commands.any_state import capability_line
from xmail.protocols.imap.grammar import AuthenticateArgs, Request
from xmail.protocols.imap.session import (
    MAX_AUTH_FAILURES,
    NOT_AUTH,
    Bad,
    No,
    Session,
    State,
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


def _decode(line: bytes) -> bytes:
    try:
        return sasl.decode_response(line)
    except sasl.SaslCancelled:
        raise Bad("AUTHENTICATE cancelled") from None  # RFC 3501 §6.2.2: "*" -> BAD
    except sasl.SaslError as e:
        raise Bad(str(e)) from None


async def _challenge(session: Session, challenge: bytes) -> bytes:
    # RFC 3501 §6.2.2: "+ " base64 challenge, then one line of base64.
    session.conn.write(b"+ " + sasl.encode_challenge(challenge) + b"\r\n")
    return _decode(await session.conn.read_raw_line())


# needs_tls: RFC 3501 §6.2.3 LOGINDISABLED, RFC 5530 §3 PRIVACYREQUIRED; the
# gate answers it before the handler runs (Session._execute).
@command("AUTHENTICATE", NOT_AUTH, needs_tls=True)
async def authenticate(session: Session, request: Request) -> str:
    args: AuthenticateArgs = request.args
    exchange = sasl.exchange(args.mechanism)
    if exchange is None:
        raise No(f"unsupported mechanism {args.mechanism}", "CANNOT")
    # RFC 4959 §3: the grammar has turned "=" into b"".
    response = None if args.initial_response is None else _decode(args.initial_response)
    # At most three steps (LOGIN without an initial response).
    for _step in range(3):
        try:
            outcome = exchange.step(response)
        except sasl.SaslError as e:
            raise Bad(str(e)) from None
        if isinstance(outcome, sasl.Credentials):
            return await _login(session, outcome, exchange.name)
        response = await _challenge(session, outcome)
    raise Bad("AUTHENTICATE exchange too long")  # pragma: no cover - no mechanism takes more


@command("LOGIN", NOT_AUTH, needs_tls=True)
async def login(session: Session, request: Request) -> str:
    user, password = request.args
    try:
        credentials = sasl.credentials(user, password)
    except sasl.SaslError:
        # The same answer as a wrong password (an empty one, say).
        _failed(session)
        raise No("invalid credentials", "AUTHENTICATIONFAILED") from None
    return await _login(session, credentials, "LOGIN")


def _failed(session: Session) -> None:
    session.auth_failures += 1
    if session.auth_failures >= MAX_AUTH_FAILURES:
        session.untagged(b"BYE too many failed logins")
        session.close_after_reply = True


async def _login(session: Session, credentials: sasl.Credentials, method: str) -> str:
    """The one login path (it audits); its failures in IMAP words."""
    try:
        lease = await one_login(session.ctx, credentials, protocol="imap",
                                client_ip=session.conn.client_host, method=method)
    except SessionLimit:
        raise No("too many connections for this user", "LIMIT") from None  # RFC 5530 §3
    except LoginUnavailable:
        raise No("try again later", "UNAVAILABLE") from None
    except AuthorizationFailed:
        _failed(session)
        raise No("cannot authorize as another user", "AUTHORIZATIONFAILED") from None
    except (UnauthorizedLogin, LoginFailed):
        # AccountDisabled included: answered like a wrong password.
        _failed(session)
        raise No("invalid credentials", "AUTHENTICATIONFAILED") from None
    if session.state is State.LOGOUT:
        # The connection went away while the password was checked.
        lease.release()
        raise No("connection closed")
    session.logged_in(lease)
    # RFC 3501 §7.2.1: the new capabilities, saving the client a round trip.
    return "[" + capability_line(session).decode() + "] logged in"
