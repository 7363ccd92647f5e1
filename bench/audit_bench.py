"""Audit log write cost on the calling (reactor) thread: login and received
events, per event, appended with O_APPEND and no fsync.  Proposed for
bench/audit_bench.py (ops, issue #8).  Prints figures; asserts nothing."""

import dataclasses
import statistics
import sys
import tempfile
import time

from xmail.config import Settings
from xmail.ops.audit import AuditLog


def main(n: int = 20000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings()
        settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server, data_dir=tmp))
        audit = AuditLog(settings)
        for name, call in (
            ("login", lambda i: audit.login(f"user{i % 500}@example.com", "imap", "192.0.2.7",
                                            "PLAIN", "ok")),
            ("received (2 local rcpts)", lambda i: audit.mail(
                "received", protocol="mx", user="", sender="x@example.org",
                recipients=f"user{i % 500}@example.com,user{(i + 1) % 500}@example.com",
                size=12345, message_id=f"<{i}@example.org>")),
        ):
            samples = []
            for i in range(n):
                start = time.perf_counter()
                call(i)
                samples.append(time.perf_counter() - start)
            samples.sort()
            print(f"{name:26s} n={n}  median {statistics.median(samples) * 1e6:6.1f} us  "
                  f"p99 {samples[int(n * 0.99)] * 1e6:6.1f} us  max {samples[-1] * 1e6:7.1f} us")
        audit.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
