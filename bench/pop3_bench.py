"""POP3 on a 10,000-message maildrop, over loopback.

    python bench/pop3_bench.py [--messages N] [--data DIR]

The server (a full XmailService: store, portal, listeners) runs in this
process on its reactor thread; the client runs in a child process so the two
do not share a GIL.  Prints:

- login time (USER/PASS until "+OK", password hashing included) and the
  time from "+OK" to the end of STAT + UIDL (the message list is fixed at
  login; target < 100 ms) — median of 5 sessions;
- RETR throughput of every message over one connection, pipelined
  (RFC 2449 PIPELINING), in wire MB/s (target >= 100 MB/s);
- RETR of one 40 MB message (the file is read in a thread, 64 KiB at a time).

--data reuses a populated data directory (populating 10,000 messages with
fsync takes a while).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.protocols.test_pop3_server import RawPOP3  # noqa: E402

ADDRESS = "bench@example.com"
PASSWORD = "bench password"
LINE = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"


def make_message(i: int, rng: random.Random) -> bytes:
    header = (f"From: sender{i % 97}@example.org\r\nTo: {ADDRESS}\r\nSubject: message {i}\r\n"
              f"Date: Tue, 3 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{i}.bench@example.org>\r\n"
              f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    # Sizes spread like a real inbox: mostly a few kB, some tens of kB.
    lines = int(rng.lognormvariate(4.2, 1.0)) + 5
    body = b"".join((b"." if j % 40 == 0 else b"") + LINE for j in range(min(lines, 2000)))
    return header + body


# --- client (child process) -------------------------------------------------------


class Client(RawPOP3):
    """The tests' exact-bytes POP3 client, with Nagle off for the latency figures."""

    def __init__(self, port: int):
        super().__init__(port)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def login(self) -> None:
        assert self.cmd(f"USER {ADDRESS}").startswith(b"+OK")
        status = self.cmd(f"PASS {PASSWORD}")
        assert status.startswith(b"+OK"), status


def client_listing(port: int, expected: int) -> None:
    logins, listings = [], []
    for _ in range(5):
        client = Client(port)
        started = time.perf_counter()
        client.login()
        logged_in = time.perf_counter()
        count = int(client.cmd("STAT").split()[1])
        uidls = client.multiline("UIDL")[1].count(b"\r\n") - 1  # less the "." line
        done = time.perf_counter()
        assert count == expected and uidls == expected, (count, uidls)
        client.cmd("QUIT")
        logins.append(logged_in - started)
        listings.append(done - logged_in)
    print(f"login (USER/PASS, maildrop list fixed): first {logins[0] * 1000:.1f} ms (password hash), "
          f"median {statistics.median(logins) * 1000:.1f} ms (verification cached)")
    print(f"STAT + UIDL of {expected} messages after login: median "
          f"{statistics.median(listings) * 1000:.1f} ms (min {min(listings) * 1000:.1f} ms)")


def client_retr_all(port: int, expected: int, window: int = 64) -> None:
    client = Client(port)
    client.login()
    started = time.perf_counter()
    sent = received = 0
    wire = 0
    tail = b""
    sock = client.sock
    # Pipelined (RFC 2449 §6.6): keep `window` RETRs in flight.  A response
    # ends at its first CRLF "." CRLF, which dot-stuffing makes unambiguous.
    while received < expected:
        if sent < expected and sent - received < window:
            batch = min(window - (sent - received), expected - sent)
            sock.sendall(b"".join(b"RETR %d\r\n" % (sent + k + 1) for k in range(batch)))
            sent += batch
        data = sock.recv(1 << 20)
        if not data:
            raise EOFError
        wire += len(data)
        joined = tail + data
        received += joined.count(b"\r\n.\r\n")
        tail = joined[-4:]
    elapsed = time.perf_counter() - started
    client.cmd("QUIT")
    print(f"RETR all {expected} messages, one connection: {wire / 1e6:.1f} MB in {elapsed:.2f} s = "
          f"{wire / 1e6 / elapsed:.1f} MB/s, {expected / elapsed:.0f} messages/s")


def client_retr_big(port: int, number: int) -> None:
    client = Client(port)
    client.login()
    started = time.perf_counter()
    client.sock.sendall(b"RETR %d\r\n" % number)
    status = client.line()
    assert status.startswith(b"+OK"), status
    wire = len(client.buffer)
    tail = client.buffer[-5:]
    while not tail.endswith(b"\r\n.\r\n"):
        data = client.sock.recv(1 << 20)
        wire += len(data)
        tail = (tail + data)[-5:]
    elapsed = time.perf_counter() - started
    client.cmd("QUIT")
    print(f"RETR one {wire / 1e6:.1f} MB message: {elapsed:.2f} s = {wire / 1e6 / elapsed:.1f} MB/s")


def run_client(args: list[str]) -> None:
    mode, port, value = args[0], int(args[1]), int(args[2])
    {"listing": client_listing, "retr-all": client_retr_all, "retr-big": client_retr_big}[mode](port, value)


# --- server (this process) ----------------------------------------------------------


def start_server(data_dir: str) -> Any:
    from twisted.internet import defer, reactor
    from twisted.internet.threads import blockingCallFromThread

    from xmail.config import ListenSettings, Settings
    from xmail.service import makeService

    any_port = ("tcp:0:interface=127.0.0.1",)
    listen = ListenSettings(**{f.name: () for f in dataclasses.fields(ListenSettings)})
    settings = Settings()
    settings = dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, data_dir=data_dir, hostname="bench.example.com"),
        listen=dataclasses.replace(listen, pop3=any_port),
        limits=dataclasses.replace(settings.limits, quota_messages=0))
    threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True).start()

    def call(fn: Any, *a: Any) -> Any:
        return blockingCallFromThread(reactor, lambda: defer.maybeDeferred(fn, *a))

    service = call(makeService, settings, reactor)
    call(service.startService)
    return service, call


def populate(service: Any, call: Any, count: int) -> None:
    ctx = service.ctx
    if ctx.directory.user(ADDRESS) is None:
        if not any(d == "example.com" for d, _ in ctx.directory.list_domains()):
            ctx.directory.add_domain("example.com")
        ctx.directory.add_user(ADDRESS, password=PASSWORD)
    call(ctx.store.provision, ADDRESS)
    have = call(lambda: ctx.store.mailbox(ADDRESS).folder("INBOX").status().messages)
    if have >= count + 1:
        return
    rng = random.Random(1)
    started = time.perf_counter()
    batch = 500
    for first in range(have, count, batch):
        messages = [make_message(i, rng) for i in range(first, min(first + batch, count))]
        call(lambda ms=messages: defer_all([ctx.store.deliver(ADDRESS, m) for m in ms]))
    # The last one is 40 MB, for the streaming figure.
    big = LINE * (40_000_000 // len(LINE))
    call(ctx.store.deliver, ADDRESS, make_message(count, rng) + big)
    print(f"populated {count} messages + one 40 MB in {time.perf_counter() - started:.1f} s")


def defer_all(deferreds: list[Any]) -> Any:
    from twisted.internet import defer

    return defer.gatherResults(deferreds, consumeErrors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        run_client(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--data", help="data directory to (re)use")
    options = parser.parse_args()
    data_dir = options.data or tempfile.mkdtemp(prefix="xmail-pop3-bench-")
    service, call = start_server(data_dir)
    populate(service, call, options.messages)
    port = service.port("pop3")
    total = call(lambda: service.ctx.store.mailbox(ADDRESS).folder("INBOX").status())
    print(f"maildrop: {total.messages} messages, {total.size / 1e6:.1f} MB, data in {data_dir}")

    def child(*args: Any) -> None:
        subprocess.run([sys.executable, os.path.abspath(__file__), "--client", *map(str, args)], check=True)

    child("listing", port, total.messages)
    child("retr-all", port, options.messages)
    child("retr-big", port, total.messages)
    call(service.stopService)


if __name__ == "__main__":
    main()
