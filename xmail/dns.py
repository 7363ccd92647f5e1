# -*- test-case-name: tests.test_dns -*-
"""The one place a DNS resolver is made ([dns] servers, DESIGN.md).

Every lookup -- MX for the outbound queue today; SPF, DKIM and DMARC for
mail protection -- goes through twisted.names, asynchronous on the reactor
(never the blocking system resolver, which would stall every session).
With `[dns] servers` set, only those resolvers are asked (tests and
air-gapped installs point every lookup at one of their own); empty, the
system's resolvers from /etc/resolv.conf, with /etc/hosts first.
"""

from __future__ import annotations

from typing import Any

from twisted.names import client

from xmail.config import DnsSettings

# Seconds before each retransmission of a query; after the last the lookup
# fails (a DNS error the caller turns into a temporary failure).  Shorter
# than twisted.names' (1, 3, 11, 45): an SMTP transaction waits on it.
TIMEOUTS = (1, 3, 11)


def make_resolver(settings: DnsSettings, reactor: Any = None) -> Any:
    """An IResolver for settings (the `[dns]` section)."""
    servers = settings.addresses()
    if not servers:
        return client.createResolver()
    return client.Resolver(servers=servers, timeout=TIMEOUTS, reactor=reactor)
