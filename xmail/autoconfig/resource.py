# -*- test-case-name: tests.protocols.test_http_channel,tests.protocols.test_http_autoconfig -*-
"""The autoconfig feature's twisted.web resource: what the `http` listener
(xmail.protocols.http) serves.

    GET  /mail/config-v1.1.xml                      Thunderbird, K-9, Evolution
    GET  /.well-known/autoconfig/mail/config-v1.1.xml
    POST /autodiscover/autodiscover.xml             Outlook (any letter case)
    GET  /mobileconfig?email=ADDRESS                iPhone, iPad, macOS
    GET  /                                          the setup page

The documents come from the pure builders beside this module; this resource
picks the domain, validates the address and writes the response.  Only
hosted and alias domains get an answer (404 otherwise).  xmail.service
builds it and hands it to HTTPFactory: the protocol package imports no
feature (issue 14, docs/decisions.md "Layers").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.http import Request

from xmail import tls
from xmail.autoconfig import autodiscover, mobileconfig, page, thunderbird
from xmail.autoconfig.model import (
    Address,
    AddressError,
    ClientSettings,
    client_settings,
    domain_from_host,
    parse_address,
)
from xmail.context import ServerContext

XML = b"text/xml; charset=utf-8"
TEXT = b"text/plain; charset=utf-8"
HTML = b"text/html; charset=utf-8"

# The page loads nothing and runs nothing; the form submits to itself.
PAGE_CSP = b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"


def _arg(request: Request, *names: bytes) -> str | None:
    """The first value of the first query argument present, or None;
    undecodable bytes count as absent."""
    for name in names:
        values = request.args.get(name)
        if values:
            try:
                return values[0].decode("utf-8")
            except UnicodeDecodeError:
                return ""
    return None


def _header(request: Request, name: bytes, limit: int = 1024) -> str:
    """A request header as text (latin-1 maps every byte; the parsers
    refuse anything non-ASCII), cut at `limit` characters."""
    value = request.getHeader(name)
    return value[:limit].decode("latin-1") if value else ""


class AutoconfigResource(resource.Resource):
    isLeaf = True
    _log = Logger()

    def __init__(self, ctx: ServerContext):
        super().__init__()
        self.ctx = ctx
        # path (lowercase) -> (allowed methods, handler)
        self.routes: dict[bytes, tuple[frozenset[bytes], Callable[[Request], Any]]] = {
            b"/": (frozenset({b"GET", b"HEAD"}), self.render_page),
            b"/mail/config-v1.1.xml": (frozenset({b"GET", b"HEAD"}), self.render_clientconfig),
            b"/.well-known/autoconfig/mail/config-v1.1.xml": (
                frozenset({b"GET", b"HEAD"}), self.render_clientconfig),
            b"/autodiscover/autodiscover.xml": (
                frozenset({b"GET", b"HEAD", b"POST"}), self.render_autodiscover),
            b"/mobileconfig": (frozenset({b"GET", b"HEAD"}), self.render_mobileconfig),
        }
        self._identity_key: tuple[Any, ...] | None = None
        self._identity: mobileconfig.SigningIdentity | None = None
        # Unit tests on a StringTransport run it synchronously.
        self.run_in_thread: Callable[..., Any] = deferToThread

    # --- shared ---------------------------------------------------------------

    def client_settings(self) -> ClientSettings:
        # Read per request: bound ports are known only once listening.
        return client_settings(self.ctx.settings, getattr(self.ctx, "bound_ports", None))

    def is_local(self, domain: str) -> bool:
        directory = self.ctx.directory
        return directory is not None and bool(directory.is_local_domain(domain))

    def host_domain(self, request: Request) -> str | None:
        """The hosted domain the Host header names (autoconfig.example.com
        and example.com both mean example.com), or None."""
        for domain in domain_from_host(_header(request, b"host", 300)):
            if self.is_local(domain):
                return domain
        return None

    def _plain(self, request: Request, code: int, message: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", TEXT)
        return message.encode("utf-8") + b"\n"

    def render(self, request: Request) -> Any:
        request.setHeader(b"server", b"xmail")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"cache-control", b"no-store")
        route = self.routes.get(request.path.lower())
        if route is None:
            return self._plain(request, 404, "Not found")
        methods, handler = route
        if request.method not in methods:
            request.setHeader(b"allow", b", ".join(sorted(methods)))
            return self._plain(request, 405, "Method not allowed")
        return handler(request)

    # --- Thunderbird ----------------------------------------------------------

    def render_clientconfig(self, request: Request) -> bytes:
        # The document does not depend on the address (the client fills in
        # %EMAILADDRESS%); the address only picks the domain.  Without a
        # usable one the Host header does: 400 here breaks some clients.
        domain = None
        typed = _arg(request, b"emailaddress", b"emailAddress", b"email")
        if typed:
            try:
                domain = parse_address(typed).domain
            except AddressError:
                domain = None
            if domain is not None and not self.is_local(domain):
                return self._plain(request, 404, "No mail is hosted here for that domain")
        if domain is None:
            domain = self.host_domain(request)
        if domain is None:
            return self._plain(request, 404, "No mail is hosted here for that domain")
        request.setHeader(b"content-type", XML)
        return thunderbird.clientconfig_xml(domain, self.client_settings())

    # --- Outlook --------------------------------------------------------------

    def render_autodiscover(self, request: Request) -> bytes:
        if request.method == b"POST":
            try:
                typed, schema = autodiscover.parse_request(request.content.getvalue())
            except autodiscover.AutodiscoverRequestError as e:
                return self._autodiscover_error(request, 400, f"Invalid Request: {e}")
            if schema != autodiscover.OUTLOOK_NS:
                # e.g. ActiveSync's "mobilesync" schema: not served here.
                return self._autodiscover_error(request, 200, "Invalid Request")
        else:
            # A GET is how people (and some tools) probe the endpoint:
            # with ?email= it shows the answer Outlook would get.
            typed = _arg(request, b"email", b"emailaddress", b"emailAddress") or ""
            if not typed:
                if self.host_domain(request) is None:
                    return self._plain(request, 404, "No mail is hosted here for that domain")
                return self._autodiscover_error(request, 200, "Invalid Request")
        try:
            address = parse_address(typed)
        except AddressError:
            return self._autodiscover_error(request, 400, "Invalid Request: not a mail address")
        if not self.is_local(address.domain):
            return self._plain(request, 404, "No mail is hosted here for that domain")
        request.setHeader(b"content-type", XML)
        return autodiscover.response_xml(address, self.client_settings())

    def _autodiscover_error(self, request: Request, code: int, message: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", XML)
        return autodiscover.error_xml(autodiscover.INVALID_REQUEST, message)

    # --- Apple ----------------------------------------------------------------

    def render_mobileconfig(self, request: Request) -> Any:
        typed = _arg(request, b"email", b"emailaddress", b"emailAddress")
        if not typed:
            return self._plain(request, 400, "Add ?email=ADDRESS")
        try:
            address = parse_address(typed)
        except AddressError:
            return self._plain(request, 400, "Not a mail address")
        if not self.is_local(address.domain):
            return self._plain(request, 404, "No mail is hosted here for that domain")
        try:
            data = mobileconfig.profile_plist(address, self.client_settings())
        except mobileconfig.ProfileError as e:
            return self._plain(request, 503, str(e))
        # Reading the key and signing is file I/O plus a private-key
        # operation: off the reactor thread.
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = self.run_in_thread(self.signed_profile, data)
        d.addCallbacks(self._write_profile, self._profile_failed, callbackArgs=(request, address, gone),
                       errbackArgs=(request, gone))
        return server.NOT_DONE_YET

    def _write_profile(self, body: bytes, request: Request, address: Address, gone: list[bool]) -> None:
        if gone:  # the client went away while we signed
            return
        request.setHeader(b"content-type", mobileconfig.CONTENT_TYPE.encode("ascii"))
        # The domain passed parse_domain: letters, digits, '-', '.' only.
        request.setHeader(b"content-disposition",
                          f'attachment; filename="{address.domain}.mobileconfig"'.encode("ascii"))
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def _profile_failed(self, failure: Any, request: Request, gone: list[bool]) -> None:
        self._log.failure("mobileconfig failed", failure)
        if gone:
            return
        request.setResponseCode(500)
        request.setHeader(b"content-type", TEXT)
        request.write(b"Internal error\n")
        request.finish()

    def signed_profile(self, data: bytes) -> bytes:
        """The profile signed when the certificate is CA-issued (runs in a
        thread).  The identity is reloaded when the files change, so a
        renewed certificate is picked up without a restart."""
        cert_path, key_path = tls.ensure_certificate(self.ctx.settings)
        key = tuple((p, os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in (cert_path, key_path))
        if key != self._identity_key:
            with open(cert_path, "rb") as f:
                cert_pem = f.read()
            with open(key_path, "rb") as f:
                key_pem = f.read()
            self._identity = mobileconfig.load_signing_identity(cert_pem, key_pem)
            self._identity_key = key
        identity = self._identity
        if identity is None:
            return data
        return mobileconfig.sign_profile(data, identity)

    # --- the page -------------------------------------------------------------

    def render_page(self, request: Request) -> bytes:
        language = page.negotiate_language(_header(request, b"accept-language"), _arg(request, b"lang"))
        request.setHeader(b"content-type", HTML)
        request.setHeader(b"content-language", page.TEXT[language]["html_lang"].encode("ascii"))
        request.setHeader(b"vary", b"Accept-Language")
        request.setHeader(b"content-security-policy", PAGE_CSP)
        settings = self.client_settings()
        typed = (_arg(request, b"email") or "").strip()
        if not typed:
            return page.render_page(language, settings)
        try:
            address = parse_address(typed)
        except AddressError:
            request.setResponseCode(400)
            return page.render_page(language, settings, typed=typed[:254], error="invalid")
        if not self.is_local(address.domain):
            request.setResponseCode(404)
            return page.render_page(language, settings, typed=typed, error="not_hosted",
                                    domain=address.domain)
        return page.render_page(language, settings, address=address)
