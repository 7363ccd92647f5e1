# -*- test-case-name: tests.auth.test_throttle -*-
"""Credentials that say where a login comes from.

A twisted.cred checker sees only the credentials object, so the client
address and protocol travel in it: the throttle keys its failure counts on
the address.  A plain UsernamePassword still works (no address: throttled by
account only).
"""

from __future__ import annotations

from twisted.cred.credentials import UsernamePassword


class LoginCredentials(UsernamePassword):
    """IUsernamePassword plus the client's address and the protocol."""

    def __init__(self, username: bytes | str, password: bytes | str, client_ip: str, protocol: str):
        super().__init__(username, password)
        self.client_ip = client_ip
        self.protocol = protocol

    def __repr__(self) -> str:
        # Never the password.
        return f"<LoginCredentials {self.username!r} from {self.client_ip} via {self.protocol}>"


def login_credentials(username: bytes | str, password: bytes | str, *, client_ip: str,
                      protocol: str) -> LoginCredentials:
    """What every protocol hands to ``portal.login``."""
    return LoginCredentials(username, password, client_ip, protocol)
