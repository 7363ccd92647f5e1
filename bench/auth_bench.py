"""Logins through the shared checker: argon2id verification and the cache.

    python bench/auth_bench.py [--logins N] [--concurrency C]

A real Directory on a fresh LMDB environment, the DirectoryChecker with its
verifier pool (one thread per core), driven on a running reactor.  Prints:

- argon2id hash and verify time of one password (policy parameters);
- cold logins/s: C logins at a time, each a full verification on the pool;
- cached logins/s: the same password again (a client's 5-10 connections);
- refused: logins answered LoginUnavailable when C exceeds the bounded queue.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.cred.credentials import UsernamePassword  # noqa: E402
from twisted.internet import defer, reactor  # noqa: E402

from xmail.auth import passwords  # noqa: E402
from xmail.auth.checker import DirectoryChecker  # noqa: E402
from xmail.auth.directory import Directory  # noqa: E402
from xmail.auth.interfaces import LoginUnavailable  # noqa: E402
from xmail.config import Settings  # noqa: E402
from xmail.db.environment import IndexEnvironment  # noqa: E402

PASSWORD = "correct horse battery staple"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()

    start = time.perf_counter()
    stored = passwords.hash_password(PASSWORD)
    hash_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    assert passwords.verify(PASSWORD, stored).ok
    verify_ms = (time.perf_counter() - start) * 1000
    print(f"argon2id m={passwords.ARGON2_MEMORY_KIB} KiB t={passwords.ARGON2_TIME_COST} "
          f"p={passwords.ARGON2_PARALLELISM}: hash {hash_ms:.1f} ms, verify {verify_ms:.1f} ms")

    data = tempfile.mkdtemp(prefix="xmail-auth-bench-")
    env = IndexEnvironment(os.path.join(data, "index"), reactor=reactor)
    env.open()
    settings = dataclasses.replace(Settings(), server=dataclasses.replace(Settings().server, data_dir=data))
    directory = Directory(env, settings)
    directory.add_domain("example.com")
    users = [f"user{i}@example.com" for i in range(args.logins)]
    for address in users:
        directory.add_user(address, password_hash=stored)
    checker = DirectoryChecker(directory, reactor)

    @defer.inlineCallbacks
    def run() -> defer.Deferred[None]:
        results = {"ok": 0, "refused": 0}

        def count(_: object, key: str) -> None:
            results[key] += 1

        @defer.inlineCallbacks
        def wave(names: list[str]) -> defer.Deferred[float]:
            began = time.perf_counter()
            for i in range(0, len(names), args.concurrency):
                batch = []
                for name in names[i:i + args.concurrency]:
                    d = checker.requestAvatarId(UsernamePassword(name.encode(), PASSWORD.encode()))
                    d.addCallback(count, "ok")
                    d.addErrback(lambda f: f.trap(LoginUnavailable) and count(None, "refused"))
                    batch.append(d)
                yield defer.gatherResults(batch)
            return time.perf_counter() - began

        cold = yield wave(users)
        print(f"cold logins: {args.logins} in {cold:.2f} s = {args.logins / cold:.0f}/s "
              f"(concurrency {args.concurrency}, {checker.pool._workers} verifier threads)")
        warm = yield wave(users * 5)
        print(f"cached logins: {5 * args.logins} in {warm * 1000:.1f} ms = {5 * args.logins / warm:.0f}/s")
        results["ok"] = results["refused"] = 0
        burst = [checker.requestAvatarId(UsernamePassword(b"user0@example.com", b"wrong %d" % i))
                 for i in range(checker.pool._max_pending + 50)]
        refused = 0
        for d in burst:
            try:
                yield d
            except LoginUnavailable:
                refused += 1
            except Exception:
                pass
        print(f"burst of {len(burst)} wrong passwords: {refused} answered LoginUnavailable "
              f"(queue bound {checker.pool._max_pending})")

    def done(_: object) -> None:
        env.close()
        reactor.stop()

    def go() -> None:
        run().addBoth(done)

    reactor.callWhenRunning(go)
    reactor.run()


if __name__ == "__main__":
    main()
