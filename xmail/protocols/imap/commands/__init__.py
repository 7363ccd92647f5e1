# -*- test-case-name: tests.protocols.test_imap_session -*-
"""IMAP command handlers, grouped by concern; importing this package fills
session.REGISTRY (each handler registers itself with @command)."""

from xmail.protocols.imap.commands import (  # noqa: F401
    any_state,
    append,
    auth,
    mailbox,
    message,
    multisearch,
    notify,
    quota,
    selected,
)
