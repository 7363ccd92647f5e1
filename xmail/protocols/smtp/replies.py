# -*- test-case-name: tests.protocols.test_smtp_replies -*-
"""Every SMTP reply xmail sends, in one catalog: name -> code, enhanced code, text.

Handlers name the reply (`replies.RELAY_DENIED`) instead of spelling codes,
so the codes can be reviewed (and tested) in one place.  Enhanced status
codes follow RFC 3463 and the IANA registry of RFC 5248; the basic codes
RFC 5321 §4.2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    enhanced: str  # "" for replies that carry none (greeting, EHLO, 354, 334)
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code {self.code} out of range")
        if self.enhanced:
            klass = self.enhanced.split(".", 1)[0]
            # RFC 3463 §3.1: the class digit matches the first digit of the code.
            if klass != str(self.code // 100):
                raise ValueError(f"{self.code} {self.enhanced}: class mismatch")

    @property
    def is_error(self) -> bool:
        return self.code >= 400

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)

    def format(self, *args: object) -> Reply:
        return Reply(self.code, self.enhanced, self.text.format(*args))

    def to_bytes(self, lines: list[str] | None = None) -> bytes:
        """The wire form; `lines` gives a multi-line reply (RFC 5321 §4.2.1)."""
        texts = lines if lines else [self.text]
        prefix = f"{self.enhanced} " if self.enhanced else ""
        out = []
        for i, text in enumerate(texts):
            sep = " " if i == len(texts) - 1 else "-"
            # Enhanced codes go on every line of a multi-line reply (RFC 2034 §4).
            line = f"{self.code}{sep}{prefix}{text}".replace("\r", " ").replace("\n", " ")
            out.append(line.encode("utf-8", "replace") + b"\r\n")
        return b"".join(out)


def _r(code: int, enhanced: str, text: str) -> Reply:
    return Reply(code, enhanced, text)


# --- 2xx / 3xx -------------------------------------------------------------
GREETING = _r(220, "", "{} ESMTP xmail")
READY_FOR_TLS = _r(220, "2.0.0", "Ready to start TLS")
CLOSING = _r(221, "2.0.0", "Bye")
AUTH_OK = _r(235, "2.7.0", "Authentication successful")
HELO_OK = _r(250, "", "{}")
OK = _r(250, "2.0.0", "OK")
SENDER_OK = _r(250, "2.1.0", "Sender OK")
RECIPIENT_OK = _r(250, "2.1.5", "Recipient OK")
MESSAGE_ACCEPTED = _r(250, "2.0.0", "OK: queued as {}")
CHUNK_OK = _r(250, "2.0.0", "{} octets received")
RESET_OK = _r(250, "2.0.0", "Reset OK")
HELP = _r(214, "2.0.0", "See RFC 5321; https://www.rfc-editor.org/rfc/rfc5321")
CANNOT_VRFY = _r(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
START_MAIL_INPUT = _r(354, "", "End data with <CR><LF>.<CR><LF>")
AUTH_CHALLENGE = _r(334, "", "{}")

# --- 4xx -------------------------------------------------------------------
SHUTTING_DOWN = _r(421, "4.3.2", "{} Service shutting down, closing connection")
IDLE_TIMEOUT = _r(421, "4.4.2", "{} Idle timeout, closing connection")
# [limits] command_timeout / login_timeout (issue 16 #4); RFC 3463 §3.5:
# 4.4.2 = bad connection, 4.7.0 = other security status.
COMMAND_TIMEOUT = _r(421, "4.4.2", "{} Command took too long, closing connection")
LOGIN_TIMEOUT = _r(421, "4.7.0", "{} Authentication took too long, closing connection")
TOO_MANY_ERRORS = _r(421, "4.7.0", "{} Too many errors, closing connection")
MAILBOX_FULL = _r(452, "4.2.2", "Mailbox full")
TOO_MANY_RECIPIENTS = _r(452, "4.5.3", "Too many recipients")
TEMPORARY_FAILURE = _r(451, "4.3.0", "Temporary local failure, try again later")
QUEUE_UNAVAILABLE = _r(451, "4.3.0", "Outbound queue unavailable, try again later")
STORAGE_BUSY = _r(451, "4.3.1", "Storage busy, try again later")
AUTH_TEMPORARY_FAILURE = _r(454, "4.7.0", "Temporary authentication failure")
TLS_UNAVAILABLE = _r(454, "4.7.0", "TLS not available")
SEND_LIMIT_REACHED = _r(
    450, "4.7.1", "Daily sending limit of {} messages reached, try again tomorrow"
)

# --- 5xx -------------------------------------------------------------------
LINE_TOO_LONG = _r(500, "5.5.2", "Line too long")
UNKNOWN_COMMAND = _r(500, "5.5.2", "Command unrecognized")
SYNTAX_ERROR = _r(501, "5.5.4", "Syntax error in parameters or arguments")
BAD_ADDRESS_SYNTAX = _r(501, "5.1.3", "Bad address syntax")
BAD_SENDER_SYNTAX = _r(501, "5.1.7", "Bad sender address syntax")
HELO_REQUIRED = _r(501, "5.5.4", "{} requires a domain name")
NOT_IMPLEMENTED = _r(502, "5.5.1", "Command not implemented")
BAD_SEQUENCE = _r(503, "5.5.1", "Bad sequence of commands")
SEND_HELLO_FIRST = _r(503, "5.5.1", "Send EHLO/HELO first")
NESTED_MAIL = _r(503, "5.5.1", "Sender already given")
NEED_MAIL = _r(503, "5.5.1", "Need MAIL command first")
NEED_RCPT = _r(503, "5.5.1", "Need RCPT command first")
ALREADY_AUTHENTICATED = _r(503, "5.5.1", "Already authenticated")
AUTH_NOT_ENABLED = _r(503, "5.5.1", "Authentication not enabled")
ALREADY_TLS = _r(503, "5.5.1", "TLS already active")
AUTH_MECHANISM_UNKNOWN = _r(504, "5.5.4", "Unrecognized authentication mechanism")
AUTH_CANCELLED = _r(501, "5.7.0", "Authentication cancelled")
AUTH_BAD_RESPONSE = _r(501, "5.5.2", "Cannot decode response")
AUTH_REQUIRED = _r(530, "5.7.0", "Authentication required")
MUST_ISSUE_STARTTLS = _r(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_FAILED = _r(535, "5.7.8", "Authentication credentials invalid")
AUTH_NEEDS_TLS = _r(538, "5.7.11", "Encryption required for requested authentication mechanism")
UNKNOWN_USER = _r(550, "5.1.1", "No such user here")
RELAY_DENIED = _r(554, "5.7.1", "Relay access denied")
SENDER_NOT_OWNED = _r(553, "5.7.1", "Sender address {} not owned by user {}")
FROM_NOT_OWNED = _r(553, "5.7.1", "From: header address {} not owned by user {}")
FROM_MISSING = _r(553, "5.7.1", "Message has no usable From: header")
# Issue 16 #8: header shapes that readers disagree on, refused at submission.
HEADER_SPACED = _r(550, "5.7.1", "{} header with white space before the colon refused")
HEADER_REPEATED = _r(550, "5.7.1", "More than one {}: header refused (RFC 5322 3.6)")
HEADER_BROKEN = _r(550, "5.6.0", "Header section has a line that is neither a field nor a continuation")
MAILBOX_FULL_PERMANENT = _r(552, "5.2.2", "Mailbox full")
MESSAGE_TOO_BIG = _r(552, "5.3.4", "Message size exceeds fixed maximum message size")
NO_VALID_RECIPIENTS = _r(554, "5.5.1", "No valid recipients")
TRANSACTION_FAILED = _r(554, "5.3.0", "Transaction failed")
HEADER_TOO_BIG = _r(552, "5.6.0", "Header section too large")
NON_ASCII_NEEDS_SMTPUTF8 = _r(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
PARAMETER_UNKNOWN = _r(555, "5.5.4", "Unsupported parameter {}")
BODY_TYPE_UNSUPPORTED = _r(555, "5.5.4", "Unsupported BODY type {}")
