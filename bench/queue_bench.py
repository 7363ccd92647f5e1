"""Outbound queue benchmark: durable enqueue rate, then delivery rate.

    python bench/queue_bench.py [--messages 2000] [--size 10240] [--concurrency 16] [--connections 4]

Phase 1 enqueues N messages through `DeliveryQueue.enqueue` (the path the
SMTP server takes: copy into data_dir/queue with fsync of file and
directory, then the record through the group-commit index writer), C at a
time, with delivery not yet started.  Phase 2 starts the queue and times how
long it takes to hand every message to an SMTP sink in a child process
(PIPELINING, one destination, up to --connections connections reused for
many messages) and to remove every record.  Prints figures; nothing is timed
inside unit tests.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SINK = r"""
import sys
from twisted.internet import reactor, protocol
from twisted.protocols.basic import LineReceiver

class Sink(LineReceiver):
    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20
    def connectionMade(self):
        self.data = False
        self.transport.write(b"220 sink ESMTP\r\n")
    def lineReceived(self, line):
        if self.data:
            if line == b".":
                self.data = False
                self.transport.write(b"250 2.0.0 ok\r\n")
            return
        verb = line[:4].upper()
        if verb == b"EHLO":
            self.transport.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
        elif verb == b"DATA":
            self.data = True
            self.transport.write(b"354 go\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.loseConnection()
        else:
            self.transport.write(b"250 ok\r\n")

port = reactor.listenTCP(0, protocol.Factory.forProtocol(Sink), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


def message(size: int, i: int) -> bytes:
    head = (f"From: alice@example.com\r\nTo: bob@other.test\r\nSubject: bench {i}\r\n"
            f"Message-ID: <bench-{i}@example.com>\r\n\r\n").encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head) - 2)]
    return head + body + b"\r\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()

    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE)
    sink_port = int(sink.stdout.readline())

    from twisted.internet import defer, reactor

    from xmail.auth.directory import Directory
    from xmail.config import parse
    from xmail.db.environment import IndexEnvironment
    from xmail.queue.interfaces import QueueRecipient
    from xmail.queue.runner import DeliveryQueue

    tmp = tempfile.mkdtemp(prefix="queue-bench-")
    settings = parse(f'[server]\nhostname = "mail.example.com"\ndata_dir = "{tmp}"\n'
                     f'[transport]\n"other.test" = "127.0.0.1:{sink_port}"\n')
    os.makedirs(settings.path("queue"))
    reactor.suggestThreadPoolSize(8)
    env = IndexEnvironment(settings.path("index"), reactor=reactor)
    env.open()
    env.start_writer()
    queue = DeliveryQueue(env, settings, None, Directory(env, settings), reactor,
                          max_per_destination=args.connections)
    bodies = [message(args.size, i) for i in range(args.messages)]
    latencies: list[float] = []
    results: dict[str, float] = {}

    @defer.inlineCallbacks
    def enqueue_all():
        pending = iter(bodies)

        @defer.inlineCallbacks
        def client():
            for body in pending:
                t0 = time.perf_counter()
                yield queue.enqueue("alice@example.com", [QueueRecipient("bob@other.test")], body)
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        yield defer.gatherResults([client() for _ in range(args.concurrency)])
        results["enqueue"] = time.perf_counter() - t0

    def queued() -> int:
        with env.read() as txn:
            return txn.stat(env.db("queue"))["entries"]

    @defer.inlineCallbacks
    def run():
        try:
            yield enqueue_all()
            assert queued() == args.messages
            t0 = time.perf_counter()
            queue.start()  # enqueue() above ran with delivery not started
            while queued():
                d = defer.Deferred()
                reactor.callLater(0.01, d.callback, None)
                yield d
            results["deliver"] = time.perf_counter() - t0
            yield queue.stop()
        finally:
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    env.close()
    sink.terminate()

    n = args.messages
    latencies.sort()
    print(f"messages: {n} x {args.size} bytes, enqueue concurrency {args.concurrency}, "
          f"delivery connections {args.connections}")
    print(f"durable enqueue: {n / results['enqueue']:.0f} messages/s "
          f"(p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms)")
    print(f"delivery to the SMTP sink, records removed: {n / results['deliver']:.0f} messages/s "
          f"({results['deliver']:.2f} s)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
