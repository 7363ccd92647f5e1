# -*- test-case-name: tests.queue.test_runner -*-
"""The outbound queue as the SMTP submission side sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zope.interface import Interface


@dataclass(frozen=True, slots=True)
class QueueRecipient:
    address: str
    # RFC 3461 DSN parameters given at RCPT TO, kept for bounces.
    notify: tuple[str, ...] = ()  # ("SUCCESS", "FAILURE", "DELAY") or ("NEVER",)
    # "addr-type;address" with the xtext already decoded ("rfc822;bob@x");
    # the queue re-encodes it for the next hop.
    orcpt: str | None = None


class IOutboundQueue(Interface):
    def enqueue(mail_from: str, recipients: list[QueueRecipient], message_path: str, *,
                envid: str | None = None, ret: str | None = None) -> Any:
        """-> Deferred[str] (queue id), fired once the message and its
        recipients are durable in the spool (the caller may then answer 250
        and delete message_path, which the queue has copied).

        message_path may also be the message itself as bytes.  envid is
        the RFC 3461 ENVID, xtext decoded; ret "FULL", "HDRS" or None."""

    def start() -> None:
        """Start delivering (timers, retry schedule)."""

    def stop() -> Any:
        """Stop delivering; may return a Deferred."""

    def stats() -> tuple[int, float | None]:
        """(messages queued, arrival time of the oldest or None); a short
        index read, safe in any thread (the metrics endpoint)."""
