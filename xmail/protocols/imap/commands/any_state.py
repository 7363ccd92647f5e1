# -*- test-case-name: tests.protocols.test_imap_session -*-
"""Commands valid in every state (RFC 3501 §6.1) and the small extensions
ID (RFC 2971), ENABLE (RFC 5161, for CONDSTORE and QRESYNC of RFC 7162 and
IMAP4rev2 of RFC 9051),
NAMESPACE (RFC 2342) and COMPRESS (RFC 4978)."""

from __future__ import annotations

from xmail.protocols.imap import rev2
from xmail.protocols.imap.grammar import IdArgs, Request
from xmail.protocols.imap.response import render
from xmail.protocols.imap.session import ANY, AUTH, Bad, Disconnect, No, Session, State, command

STATIC_CAPABILITIES = (
    "IMAP4rev1", rev2.CAPABILITY, "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT",
    "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-EXTENDED",
    "LIST-STATUS", "ESEARCH", "SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES", "CONDSTORE", "QRESYNC", "QUOTA", "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE", "COMPRESS=DEFLATE",
    "BINARY",  # RFC 3516
    "MULTIAPPEND", "CATENATE", "SEARCHRES",  # RFC 3502, RFC 4469, RFC 5182
    "MULTISEARCH", "PARTIAL", "CONTEXT=SEARCH", "CONTEXT=SORT",  # RFC 7377, RFC 9394, RFC 5267
    "NOTIFY",  # RFC 5465
)


def capabilities(session: Session) -> list[str]:
    caps = list(STATIC_CAPABILITIES)
    # RFC 7889: APPENDLIMIT=n advertises the largest message APPEND accepts.
    caps.append(f"APPENDLIMIT={session.ctx.settings.limits.max_message_size}")
    if session.state is State.NOT_AUTHENTICATED:
        if not session.conn.is_tls and session.conn.tls_available():
            caps.append("STARTTLS")
        if session.plaintext_auth_allowed:  # RFC 3501 §6.2.3
            caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
        else:
            caps.append("LOGINDISABLED")
    return caps


def capability_line(session: Session) -> bytes:
    return ("CAPABILITY " + " ".join(capabilities(session))).encode("ascii")


@command("CAPABILITY", ANY)
async def capability(session: Session, request: Request) -> str:
    session.untagged(capability_line(session))
    return "CAPABILITY completed"


@command("NOOP", ANY)
async def noop(session: Session, request: Request) -> str:
    # RFC 3501 §6.1.2: pending updates go out on the way back (dispatcher).
    return "NOOP completed"


@command("LOGOUT", ANY)
async def logout(session: Session, request: Request) -> str:
    session.untagged(b"BYE logging out")
    session.deselect()
    raise Disconnect()


@command("ID", ANY)
async def id_(session: Session, request: Request) -> str:
    # RFC 2971 §3.1: the server answers with its own identification.
    args: IdArgs = request.args
    if args.params:
        session.client_id = {k: v for k, v in list(args.params.items())[:30]}
    session.untagged(b"ID " + render(["name", "xmail", "vendor", "xmail"]))
    return "ID completed"


@command("ENABLE", AUTH)
async def enable(session: Session, request: Request) -> str:
    # RFC 5161 §3.1: ENABLED lists what this command turned on; unknown
    # names and ones already on are left out.  RFC 7162 §3.2.3: QRESYNC
    # implies CONDSTORE.
    wanted = set(request.args)
    newly: list[str] = []
    if "QRESYNC" in wanted:
        newly = session.enable_condstore(qresync=True)
    elif "CONDSTORE" in wanted:
        newly = session.enable_condstore()
    if rev2.CAPABILITY.upper() in wanted and rev2.enable(session):
        newly.append(rev2.CAPABILITY.upper())  # RFC 9051 §6.3.1
    enabled = [rev2.CAPABILITY if n == rev2.CAPABILITY.upper() else n for n in newly if n in wanted]
    session.untagged(" ".join(["ENABLED"] + enabled).encode("ascii"))
    return "ENABLE completed"


@command("COMPRESS", AUTH)
async def compress(session: Session, request: Request) -> str:
    # RFC 4978 §3: after the tagged OK both directions are raw DEFLATE.
    if request.args != "DEFLATE":
        raise Bad(f"unknown compression mechanism {request.args[:30]}")
    if session.compressing:
        raise No("compression is already active", "COMPRESSIONACTIVE")
    session.compressing = True
    session.after_reply = session.conn.start_compress
    return "DEFLATE active"


@command("NAMESPACE", AUTH)
async def namespace(session: Session, request: Request) -> str:
    # RFC 2342 §5: one personal namespace with "/" as delimiter, no others.
    session.untagged(b'NAMESPACE (("" "/")) NIL NIL')
    return "NAMESPACE completed"
