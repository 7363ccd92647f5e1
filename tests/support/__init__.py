"""The one test support package (issue 14, "Tests").

- `tests.support.wait`: `wait_until`, the one poll-with-deadline helper.
- `tests.support.server`: the in-process server (`RunningServer`) on the
  shared reactor thread, every listener on `tcp:0:interface=127.0.0.1`.
- `tests.support.daemon`: the one subprocess harness, a real
  `twistd -n xmail --config FILE` (one process or a supervisor and its
  workers), plus `twistd_argv()` / `xmailctl_argv()` that find the scripts
  next to `sys.executable` (no skip when they are not on PATH).
- `tests.support.clients`: one raw client per protocol (IMAP tagged lines,
  POP3, SMTP) over a real socket, with wire-syntax checking readers.

In-memory store objects for protocol unit tests ship in the package
itself: `xmail.store.memory`.
"""
