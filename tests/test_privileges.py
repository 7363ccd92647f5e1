"""`twistd --uid nobody --gid nogroup xmail` started as root binds a port
below 1024, then runs as nobody, and what it creates in data_dir is nobody's
alone (files 0600, directories 0700).

Runs the real daemon in a subprocess; needs root.
"""

from __future__ import annotations

import grp
import os
import poplib
import pwd
import shutil
import socket
import stat
import sys
import tempfile

import pytest

from tests.test_tls_reload import served_name, start_daemon, write_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to bind below 1024 and switch user")

# This test environment's Python lives under /root (mode 0700), which the
# daemon cannot read once it runs as nobody; a system Python can.  So every
# xmail module (and what it imports) is loaded before twistd drops root.
PRELOADING_TWISTD = """
import importlib, pkgutil, sys
import warnings
warnings.simplefilter("ignore")
names = ["xmail", "cryptography", "OpenSSL", "lmdb", "passlib", "argon2", "bcrypt",
         "prometheus_client", "twisted.internet", "twisted.protocols", "twisted.web",
         "twisted.logger", "encodings", "email", "json", "http", "xml"]
for package in [importlib.import_module(name) for name in names]:
    for module in pkgutil.walk_packages(getattr(package, "__path__", []), package.__name__ + "."):
        last = module.name.rsplit(".", 1)[-1]
        if "test" in module.name or "reactor" in last or last == "__main__":
            continue
        try:
            importlib.import_module(module.name)
        except Exception:
            pass
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
run()
"""


def _free_privileged_port() -> int:
    for port in range(1000, 600, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


def _status_ids(pid: int) -> tuple[list[int], list[int]]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return [int(v) for v in fields["Uid"].split()], [int(v) for v in fields["Gid"].split()]


@pytest.fixture
def public_tmp():
    # pytest's tmp_path sits in a 0700 directory of root that nobody cannot enter.
    path = tempfile.mkdtemp(prefix="xmail-priv-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_binds_below_1024_as_root_then_runs_as_nobody_with_private_files(public_tmp):
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup")
    data_dir = os.path.join(public_tmp, "data")
    os.mkdir(data_dir, 0o700)
    os.chown(data_dir, nobody.pw_uid, nogroup.gr_gid)  # the operator's one step
    config = os.path.join(public_tmp, "xmail.toml")
    port = _free_privileged_port()
    write_config(config, data_dir, "", pop3=f"tcp:{port}:interface=127.0.0.1")
    os.chmod(config, 0o644)

    daemon = start_daemon(config, twistd_options=("--uid", "nobody", "--gid", "nogroup"), cwd=public_tmp,
                          launcher=(sys.executable, "-c", PRELOADING_TWISTD))
    try:
        assert daemon.port("pop3") == port
        daemon.wait_for("xmail core started")
        uids, gids = _status_ids(daemon.pid)
        assert uids == [nobody.pw_uid] * 4 and gids == [nogroup.gr_gid] * 4

        pop = poplib.POP3("127.0.0.1", port, timeout=10)
        assert pop.getwelcome().startswith(b"+OK")
        pop.quit()
        # the generated certificate was made (and is read) by nobody
        assert served_name(daemon.port("pop3s")) == "mail.example.com"

        created = []
        for root, dirs, files in os.walk(data_dir):
            for name in dirs + files:
                created.append(os.path.join(root, name))
        names = {os.path.relpath(p, data_dir) for p in created}
        assert {"index/data.mdb", "index/lock.mdb", "tls/key.pem", "tls/cert.pem", "mail", "queue",
                "log"} <= names
        for path in created:
            st = os.lstat(path)
            assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nogroup.gr_gid), path
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                assert mode == 0o700, f"{path}: {oct(mode)}"
            else:
                assert mode & 0o077 == 0, f"{path}: {oct(mode)}"
    finally:
        assert daemon.stop() == 0


# -- socket activation and the systemd units in contrib/ -------------------------

CONTRIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "contrib")

# systemd sets LISTEN_PID to the pid of the process it starts; exec keeps it.
ACTIVATED_TWISTD = """
import os, sys
os.environ["LISTEN_PID"] = str(os.getpid())
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
run()
"""


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_socket_activation_with_systemd_endpoints(tmp_path):
    """What xmail.socket does: sockets bound by someone else arrive as fds
    3, 4 ... with LISTEN_FDS; `systemd:domain=INET:index=N` adopts them."""
    import fcntl
    import imaplib

    pop3_sock, imap_sock = _listening_socket(), _listening_socket()
    config = str(tmp_path / "xmail.toml")
    write_config(config, str(tmp_path / "data"), "",
                 pop3="systemd:domain=INET:index=0", imap="systemd:domain=INET:index=1")

    def hand_over() -> None:  # in the child, before exec: fds 3 and 4
        high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100) for s in (pop3_sock, imap_sock)]
        for target, fd in zip((3, 4), high, strict=True):
            os.dup2(fd, target)

    env = dict(os.environ, LISTEN_FDS="2", LISTEN_FDNAMES="pop3:imap")
    daemon = start_daemon(config, launcher=(sys.executable, "-c", ACTIVATED_TWISTD), env=env, pass_fds=(3, 4),
                          preexec_fn=hand_over)
    pop3_port, imap_port = pop3_sock.getsockname()[1], imap_sock.getsockname()[1]
    pop3_sock.close()
    imap_sock.close()  # the daemon holds its own copies now
    try:
        assert daemon.port("pop3") == pop3_port and daemon.port("imap") == imap_port
        pop = poplib.POP3("127.0.0.1", pop3_port, timeout=10)
        assert pop.getwelcome().startswith(b"+OK")
        pop.quit()
        with imaplib.IMAP4("127.0.0.1", imap_port, timeout=10) as imap:
            assert imap.noop()[0] == "OK"
    finally:
        assert daemon.stop() == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_contrib_units_pass_systemd_analyze_verify(tmp_path):
    import subprocess

    for name in ("xmail.service", "xmail.socket"):
        with open(os.path.join(CONTRIB, name)) as f:
            text = f.read()
        # verify checks that ExecStart= exists; twistd lives elsewhere here
        (tmp_path / name).write_text(text.replace("/usr/bin/twistd", shutil.which("twistd") or "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", "xmail.socket", "xmail.service"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_contrib_socket_toml_matches_the_socket_unit():
    from xmail.config import load

    settings = load(os.path.join(CONTRIB, "xmail-socket.toml"))
    with open(os.path.join(CONTRIB, "xmail.socket")) as f:
        streams = [line for line in f if line.startswith("ListenStream=")]
    ports = {"smtp": "25", "submission": "587", "submissions": "465", "pop3": "110", "pop3s": "995",
             "imap": "143", "imaps": "993", "http": "8080"}
    for name, port in ports.items():
        (description,) = getattr(settings.listen, name)
        index = int(description.rsplit("index=", 1)[1])
        assert streams[index].strip().endswith(f":{port}"), (name, streams[index])
