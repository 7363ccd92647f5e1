# -*- test-case-name: tests.autoconfig.test_cli,tests.test_cli_dns -*-
"""`xmailctl dns DOMAIN`: the zone fragment an operator adds for a domain
(MX, SPF, DKIM selectors, DMARC, autoconfig, SRV).

`xmailctl dns check DOMAIN`: resolves each of those records through
`[dns] servers` (xmail.dns.make_resolver, twisted.names) and prints one
line per record: status (ok / missing / different / failed), what, name,
type, expected, found.  Exit status 1 when any is not ok.
"""

from __future__ import annotations

import argparse
from typing import Any

from xmail.autoconfig.dnscheck import OK, check, report_line
from xmail.autoconfig.dnszone import DkimKey, records, zone_fragment
from xmail.autoconfig.model import client_settings
from xmail.cli.context import CliError, hosted_domain
from xmail.filter.dkimkeys import DkimKeyError, DkimKeyStore

CHECK = "check"


def register(subparsers: Any) -> None:
    dns = subparsers.add_parser(
        "dns", help="print the DNS records (MX, SPF, DKIM, DMARC, autoconfig, SRV) to add for a hosted "
                    "domain; `dns check DOMAIN` compares them with what DNS publishes",
        usage="xmailctl dns [-h] [--ttl SECONDS] DOMAIN\n       xmailctl dns check DOMAIN")
    dns.add_argument("words", nargs="+", metavar="DOMAIN | check DOMAIN")
    dns.add_argument("--ttl", type=_ttl, default=3600, metavar="SECONDS", help="record TTL (default 3600)")
    dns.set_defaults(func=dns_command)


def _ttl(text: str) -> int:
    # RFC 2181 §8: 0 .. 2^31 - 1.
    if not text.isdigit() or int(text) > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"not a TTL: {text!r}")
    return int(text)


def dns_command(ctx: Any, args: argparse.Namespace) -> int | None:
    words = args.words
    if len(words) == 2 and words[0] == CHECK:
        return check_zone(ctx, words[1])
    if len(words) != 1:
        raise CliError("usage: xmailctl dns DOMAIN | xmailctl dns check DOMAIN")
    print_zone(ctx, words[0], args.ttl)
    return None


def dkim_keys(ctx: Any, domain: str) -> list[DkimKey]:
    """The domain's selectors, active and retired (a retired key stays
    published until removed: mail signed before a rotation still verifies)."""
    store = DkimKeyStore(ctx.settings.path("dkim"))
    try:
        return [DkimKey(s.name, s.state, store.txt_record(domain, s.name)) for s in store.selectors(domain)]
    except DkimKeyError as e:
        raise CliError(str(e)) from None


def print_zone(ctx: Any, text: str, ttl: int) -> None:
    domain = hosted_domain(ctx, text)
    # From the config (with [autoconfig] overrides): the running server's
    # bound ports are not visible from here, and DNS must name fixed ports.
    ctx.stdout.write(zone_fragment(domain, client_settings(ctx.settings), ttl=ttl,
                                   dkim=dkim_keys(ctx, domain)))


def check_zone(ctx: Any, text: str) -> int:
    domain = hosted_domain(ctx, text)
    wanted = records(domain, client_settings(ctx.settings), dkim_keys(ctx, domain))
    findings = run_in_reactor(lambda reactor: check(_resolver(ctx, reactor), wanted))
    for finding in findings:
        ctx.out(*report_line(finding))
    return 0 if all(f.status == OK for f in findings) else 1


def _resolver(ctx: Any, reactor: Any) -> Any:
    from xmail.dns import make_resolver

    return make_resolver(ctx.settings.dns, reactor)


def run_in_reactor(start: Any) -> Any:
    """The result of `start(reactor)` (a Deferred), from a command line.

    xmailctl runs one command per process, so it runs the global reactor
    until the Deferred fires; a caller that already runs the reactor in
    another thread (the in-process tests, or an embedding program) gets
    the result through blockingCallFromThread instead (a reactor cannot
    be started twice)."""
    from twisted.internet import reactor
    from twisted.internet.threads import blockingCallFromThread

    if reactor.running:
        return blockingCallFromThread(reactor, start, reactor)
    outcome: list[Any] = []

    def go() -> None:
        d = start(reactor)
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)
    if not outcome:
        raise CliError("interrupted before the lookups finished")
    from twisted.python.failure import Failure

    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]
