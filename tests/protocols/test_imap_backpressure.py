"""Large answers are produced with transport back-pressure: a client that
does not read makes the server wait, not buffer (issue #5, IPushProducer)."""

from __future__ import annotations

import socket
import time

from tests.protocols.imap_support import Wire, deliver, message
from tests.support.wait import wait_until


def _imap_output(server) -> list[tuple[int, bool]]:  # type: ignore[no-untyped-def]
    """(output waiting to be sent, a command parked until the client reads)
    of each open IMAP connection, read on the reactor thread."""
    factory = server.service.listeners["imap"].factory
    factory = getattr(factory, "wrapped", factory)

    def sizes() -> list[tuple[int, bool]]:
        out = []
        for proto in factory.sessions:
            t = proto.transport
            waiting = len(t.dataBuffer) - t.offset + sum(len(d) for d in t._tempDataBuffer)
            out.append((waiting, proto.waiting_for_reader))
        return out

    return server.call(sizes)


def test_fetch_all_bodies_from_a_client_that_does_not_read(server) -> None:  # type: ignore[no-untyped-def]
    body = b"".join(b"%07d streaming back-pressure line of forty bytes\r\n" % i for i in range(6000))
    count = 100  # 100 x 330 kB = 33 MB of answer
    for i in range(count):
        deliver(server, "alice@example.com", message(f"big {i}", "") + body)
    with Wire(server.port("imap")) as w:
        w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        w.login()
        w.ok("EXAMINE INBOX")
        w.send(b"f1 FETCH 1:* (BODY.PEEK[])\r\n")
        # The kernel's buffers fill, the transport's buffer passes its bound
        # and pauses us; the FETCH then waits for the client to read (it
        # writes nothing more until then), with about one message waiting in
        # the server, not the 33 MB of the answer.  (Peak RSS, measured here
        # before, could not see that once the test process had peaked higher.)
        [(waiting, _parked)] = wait_until(lambda: [o for o in _imap_output(server) if o[1]],
                                          what="the FETCH to wait for the client")
        assert waiting < 2 * 1024 * 1024, f"{waiting} bytes of answer wait in the server"
        status, lines = w.until(b"f1")
        assert status.startswith(b"OK")
        assert len(lines) == count
        assert all(line.endswith(body + b")") for line in lines)


def test_a_flooding_client_does_not_slow_the_others(server) -> None:  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as flooder, Wire(server.port("imap")) as other:
        flooder.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        flooder.sock.setblocking(False)
        burst = b"f NOOP\r\n" * 50000
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # push until the server stops reading
            try:
                sent += flooder.sock.send(burst[sent % len(burst):])
            except BlockingIOError:
                break
        assert sent < 20 * len(burst)  # the server stopped reading at some point
        other.login()
        worst = 0.0
        for _ in range(20):
            start = time.monotonic()
            other.ok("NOOP")
            worst = max(worst, time.monotonic() - start)
        assert worst < 0.5
