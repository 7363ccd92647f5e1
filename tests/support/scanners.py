"""Real scanner daemons for tests: clamd, rspamd (+ the redis its Bayes
classifier needs), each started from Debian's binaries with a config
generated in a temporary directory, on free loopback ports.

Usable without pytest (the daemon-level acceptance tests start them too):

    clamd = start_clamd(directory)        # clamd.tcp, clamd.unix, clamd.stop()
    rspamd = start_rspamd(directory, dns_port=zone.port)
    ...                                   # rspamd.url, rspamd.controller, rspamd.stop()

- clamd loads one tiny signature file (the EICAR test string's md5 and
  size, `.hdb`: no freshclam, no download); its StreamMaxLength is a
  parameter so tests can go over it.
- rspamd loads no plugin that needs the Internet or a resolver (the
  resolver is still pointed at the loopback zone, so no check ever waits
  for a timeout), keeps Bayes in a private redis-server, and has two test
  rules: a Subject containing `XMAIL-SCORE=7.5` scores exactly 7.5
  (symbol XMAIL_TEST_SCORE), one containing `XMAIL-TEST-SPAM` scores 20.
- Readiness is a real exchange (clamd PING -> PONG, redis PING, rspamd
  /ping on both workers), never a sleep.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

# The EICAR test file (https://www.eicar.org/download-anti-malware-testfile/).
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Xmail.Test.EICAR"
SPAM_MARK = "XMAIL-TEST-SPAM"  # in a Subject: rspamd score 20 (over every default threshold)
STARTUP = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _short_dir(directory: str, prefix: str) -> str:
    """A directory for unix sockets: sun_path holds 108 octets at most."""
    if len(directory) < 80:
        return directory
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


@dataclass
class Daemon:
    name: str
    process: subprocess.Popen[bytes]
    directory: str
    log: str
    started_in: float = 0.0  # seconds from exec to ready
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for cleanup in self._cleanups:
            cleanup()
        self._cleanups.clear()

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"


def _spawn(name: str, argv: list[str], directory: str) -> Daemon:
    out = os.path.join(directory, f"{name}.out")
    with open(out, "wb") as f:
        process = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=directory)
    return Daemon(name, process, directory, out)


def _wait_ready(daemon: Daemon, ready: Callable[[], bool], started: float, timeout: float = STARTUP) -> None:
    deadline = started + timeout
    while True:
        if daemon.process.poll() is not None:
            raise RuntimeError(f"{daemon.name} exited ({daemon.process.returncode}):\n{daemon.log_tail()}")
        try:
            if ready():
                daemon.started_in = time.monotonic() - started
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            daemon.stop()
            raise RuntimeError(f"{daemon.name} not ready after {timeout} s:\n{daemon.log_tail()}")
        time.sleep(0.05)  # polling for readiness, not proving an absence


# -- clamd -------------------------------------------------------------------------------------

@dataclass
class Clamd(Daemon):
    port: int = 0
    socket_path: str = ""
    stream_max_length: int = 0

    @property
    def tcp(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    @property
    def unix(self) -> str:
        return f"unix:{self.socket_path}"


def clamd_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"zPING\0")
        return s.recv(16) == b"PONG\0"


def start_clamd(directory: str, stream_max_length: int = 1024 * 1024) -> Clamd:
    """clamd in `directory` with the EICAR signature only; TCP on a free
    loopback port and a unix socket."""
    os.makedirs(directory, exist_ok=True)
    db = os.path.join(directory, "db")
    os.makedirs(db, exist_ok=True)
    # .hdb: "md5:size:name" of a whole file (or of a decoded MIME part).
    with open(os.path.join(db, "xmail-test.hdb"), "w") as f:
        f.write(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{EICAR_NAME}\n")
    sockets = _short_dir(directory, "xclamd")
    socket_path = os.path.join(sockets, "clamd.sock")
    port = free_port()
    conf = os.path.join(directory, "clamd.conf")
    with open(conf, "w") as f:
        f.write(f"""Foreground yes
DatabaseDirectory {db}
LocalSocket {socket_path}
TCPSocket {port}
TCPAddr 127.0.0.1
LogFile {directory}/clamd.log
PidFile {directory}/clamd.pid
TemporaryDirectory {directory}
StreamMaxLength {stream_max_length}
MaxThreads 4
SelfCheck 3600
""")
    started = time.monotonic()
    daemon = _spawn("clamd", ["clamd", "--foreground", f"--config-file={conf}"], directory)
    clamd = Clamd(daemon.name, daemon.process, directory, daemon.log, port=port, socket_path=socket_path,
                  stream_max_length=stream_max_length)
    if sockets != directory:
        clamd._cleanups.append(lambda: shutil.rmtree(sockets, ignore_errors=True))
    _wait_ready(clamd, lambda: clamd_ping(port), started)
    return clamd


# -- redis (rspamd's Bayes store) ----------------------------------------------------------------

def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def start_redis(directory: str) -> tuple[Daemon, int]:
    os.makedirs(directory, exist_ok=True)
    port = free_port()
    started = time.monotonic()
    daemon = _spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", directory, "--logfile", "redis.log"], directory)
    _wait_ready(daemon, lambda: redis_ping(port), started)
    return daemon, port


# -- rspamd --------------------------------------------------------------------------------------

_RULES = r"""
-- Test rules (tests/support/scanners.py): a way for a test to ask for a score.
rspamd_config.XMAIL_TEST_SPAM = {
  callback = function(task)
    local subject = task:get_subject()
    return subject ~= nil and subject:find("XMAIL-TEST-SPAM", 1, true) ~= nil
  end,
  score = 20.0,
  description = "xmail test: Subject asks for a score of 20",
}
rspamd_config.XMAIL_TEST_SCORE = {
  callback = function(task)
    local subject = task:get_subject()
    if subject == nil then return false end
    local wanted = subject:match("XMAIL%-SCORE=(%d+%.?%d*)")
    if wanted == nil then return false end
    return true, tonumber(wanted)
  end,
  score = 1.0,
  description = "xmail test: Subject asks for an exact score",
}
"""


@dataclass
class Rspamd(Daemon):
    port: int = 0
    controller_port: int = 0
    password: str = ""
    redis: Daemon | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def controller(self) -> str:
        return f"http://127.0.0.1:{self.controller_port}"

    def stat(self) -> dict:
        """The controller's /stat (learned counts and more)."""
        import json

        request = urllib.request.Request(self.controller + "/stat", headers={"Password": self.password})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def stop(self) -> None:
        super().stop()
        if self.redis is not None:
            self.redis.stop()


def _milter_worker(port: int | None) -> str:
    if port is None:
        return ""
    return (f'worker "rspamd_proxy" {{ bind_socket = "127.0.0.1:{port}"; count = 1; milter = yes; '
            'timeout = 120s; upstream "local" { default = yes; self_scan = yes; } }')


def _http_ping(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as reply:
        return reply.read().strip() == b"pong"


def start_rspamd(directory: str, dns_port: int, password: str = "test-controller-password",
                 dkim: bool = False, milter_port: int | None = None) -> Rspamd:
    """rspamd in `directory`: a normal worker and a controller (with
    `password`; loopback is not a secure_ip, so the password is really
    checked) on free loopback ports, its resolver the loopback zone at
    `dns_port`, Bayes in a private redis.  dkim=True also runs rspamd's
    DKIM check (symbols R_DKIM_ALLOW / R_DKIM_REJECT), keys from the zone.
    milter_port: also a proxy worker speaking the milter protocol there,
    scanning itself (Postfix's `smtpd_milters`, bench/protection_bench.py)."""
    os.makedirs(directory, exist_ok=True)
    redis, redis_port = start_redis(os.path.join(directory, "redis"))
    port, controller_port = free_port(), free_port()
    rules = os.path.join(directory, "rules.lua")
    with open(rules, "w") as f:
        f.write(_RULES)
    # A few suffixes instead of the 9 600-line public suffix list: parsing
    # that list is most of rspamd's start-up time (~15 s on a busy box).
    tld = os.path.join(directory, "tld.dat")
    with open(tld, "w") as f:
        f.write("com\nnet\norg\nexample\ntest\ninvalid\n")
    d = directory
    conf = os.path.join(directory, "rspamd.conf")
    with open(conf, "w") as f:
        f.write(f"""
options {{
  pidfile = "{d}/rspamd.pid";
  filters = "{'dkim' if dkim else ''}";
  dns {{ nameserver = ["127.0.0.1:{dns_port}"]; timeout = 1s; retransmits = 1; }}
  cache_file = "{d}/symbols.cache";
  hs_cache_dir = "{d}/";
  dynamic_conf = "{d}/rspamd_dynamic";
  history_file = "{d}/rspamd.history";
  stats_file = "{d}/stats.ucl";
  tempdir = "{d}";
  url_tld = "{tld}";
  task_timeout = 8s;
  allow_raw_input = true;
}}
logging {{ type = "file"; filename = "{d}/rspamd.log"; level = "info"; }}
lua = "{rules}";
actions {{ reject = 15; add_header = 6; greylist = 4; }}
{'dkim { }' if dkim else ''}
worker "normal" {{ bind_socket = "127.0.0.1:{port}"; count = 1; mime = true; }}
{_milter_worker(milter_port)}
worker "controller" {{
  bind_socket = "127.0.0.1:{controller_port}";
  count = 1;
  password = "{password}";
  secure_ip = "192.0.2.1";
  static_dir = "${{WWWDIR}}";
}}
classifier "bayes" {{
  tokenizer {{ name = "osb"; }}
  backend = "redis";
  servers = "127.0.0.1:{redis_port}";
  new_schema = true;
  min_tokens = 11;
  min_learns = 1;
  statfile {{ symbol = "BAYES_HAM"; spam = false; }}
  statfile {{ symbol = "BAYES_SPAM"; spam = true; }}
}}
""")
    argv = ["rspamd", "-f", "-c", conf]
    if os.geteuid() == 0:
        # As root rspamd refuses to run its workers unless told a user;
        # -i keeps them as root so they can use this private directory.
        argv.append("-i")
    started = time.monotonic()
    daemon = _spawn("rspamd", argv, directory)
    rspamd = Rspamd(daemon.name, daemon.process, directory, os.path.join(directory, "rspamd.log"),
                    port=port, controller_port=controller_port, password=password, redis=redis)
    try:
        _wait_ready(rspamd, lambda: _http_ping(port) and _http_ping(controller_port), started)
    except BaseException:
        redis.stop()
        raise
    return rspamd
