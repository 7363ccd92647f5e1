# -*- test-case-name: tests.workers -*-
"""Several worker processes on one data directory (issue #9).

With `[server] workers = N` (N > 1; 0 = the number of cores) the `twistd`
process is a supervisor (xmail.workers.supervisor): it binds every listener
before twistd drops privileges, then starts N workers
(`python -m xmail.workers.worker`), handing each the listening sockets the
way systemd socket activation does (LISTEN_FDS, descriptors from 3 on).
Each worker is a whole server -- every protocol, its own LMDB environment
on the shared index -- and accepts its connections itself, while it holds
no more than its share of them (xmail.workers.balance); the supervisor
never sees a session.  It restarts a worker that dies, forwards SIGHUP and
drains all of them on SIGTERM.

Shared between the workers:
- change notification and queue kicks: datagrams between the processes
  (xmail.workers.bus, injected into the store and the core);
- POP3 maildrop locks: flock'd lock files (xmail.protocols.pop3.maildrop);
- connection caps, login failure counts and the daily send counter:
  memory-mapped tables under data_dir/run/ (xmail.workers.shared);
- the singleton jobs (queue runner, Recycle purge, log pruning): run by the
  worker holding the flock on data_dir/run/leader.lock
  (xmail.db.leader, the one election, also in a process on its own);
  another takes it within a second of its death.

This package is imported by the worker before Twisted's endpoint module:
keep it free of imports.
"""
