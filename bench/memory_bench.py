"""Memory and index size with many stored messages (issue 15, memory).

    python bench/memory_bench.py [--messages 100000] [--users 4] [--workers 2]
                                 [--data DIR] [--settle 10]

1. Fills `--users` INBOXes with `--messages` messages in all (bench/bulkload:
   files into cur/, index records in big transactions, parsed like a
   delivery, body text into the full-text index).  Messages are ~4 kB of
   varied text, a fifth with Chinese, a tenth multipart with HTML.  With
   `--data DIR` an existing data directory from an earlier run is reused.
2. Prints the index's bytes per message: the LMDB file's allocated size and
   each store database's pages (env.stat), and the full-text SQLite file.
3. Starts a real `twistd -n xmail` with `--workers` workers on that data,
   waits `--settle` seconds and prints PSS (from /proc/PID/smaps_rollup,
   summed over the supervisor and its workers; anonymous and file-backed),
   then again after one IMAP session per user has selected its INBOX,
   fetched all FLAGS and searched a body word, and logged out ("after use").
"""

from __future__ import annotations

import argparse
import imaplib
import os
import random
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path[:0] = [BENCH, REPO]

import bulkload  # noqa: E402

from tests.workers.daemon import PASSWORD, WorkerDaemon  # noqa: E402

DOMAIN = "example.com"
_WORDS = ("report meeting budget quarter invoice schedule project review update customer server "
          "release contract design team office travel holiday network storage backup client "
          "support ticket order delivery payment account security policy training agenda").split()
_CHINESE = ("请查收本季度的报告会议纪要预算项目进度客户合同设计团队"
            "办公室出差假期网络存储备份支持订单交付付款账户安全培训议程")


def _paragraph(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def make_message(n: int, rng: random.Random) -> bytes:
    lines = [_paragraph(rng, rng.randint(8, 16)) for _ in range(rng.randint(20, 40))]
    if n % 5 == 0:
        lines.insert(1, "".join(rng.choice(_CHINESE) for _ in range(60)))
    text = "\r\n".join(lines)
    headers = (f"From: Sender {n % 97} <sender{n % 97}@client.example>\r\nTo: user@{DOMAIN}\r\n"
               f"Subject: {_paragraph(rng, 5)} #{n}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
               f"Message-ID: <{n}.{rng.getrandbits(32)}@client.example>\r\nMIME-Version: 1.0\r\n")
    if n % 10 == 0:
        html = "<html><body>" + "".join(f"<p>{line}</p>" for line in lines) + "</body></html>"
        return (headers + 'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
                "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text +
                "\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html +
                "\r\n--b--\r\n").encode()
    return (headers + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n").encode()


def fill(daemon: WorkerDaemon, messages: int, users: list[str]) -> None:
    from xmail.config import load

    settings = load(daemon.config)
    env, directory, store = bulkload.open_store(settings, DOMAIN)
    rng = random.Random(1)
    started = time.monotonic()
    try:
        per_user = messages // len(users)
        for user in users:
            directory.add_user(user, password=PASSWORD)
            inbox = bulkload.provisioned_inbox(store, user)
            items = ((make_message(n, rng), frozenset({"\\Seen"}) if n % 3 else frozenset(), 1.7e9 + n)
                     for n in range(per_user))
            bulkload.bulk_append(store, inbox, items)
            print(f"  {user}: {per_user} messages ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        store.fulltext.close()
        env.close()


def index_figures(daemon: WorkerDaemon, messages: int) -> None:
    from xmail.config import load
    from xmail.db.environment import IndexEnvironment

    settings = load(daemon.config)
    path = settings.path("index")
    data = os.path.join(path, "data.mdb")
    allocated = os.stat(data).st_blocks * 512
    print(f"LMDB data.mdb: {allocated / 1e6:.1f} MB allocated = {allocated / messages:.0f} bytes/message")
    env = IndexEnvironment(path)
    env.open()
    try:
        names = ["store.records", "store.meta", "store.headers", "store.names", "store.modseq",
                 "store.fstate"]
        handles = {name: env.db(name) for name in names}
        with env.read() as txn:
            for name, db in handles.items():
                st = txn.stat(db)
                size = st["psize"] * (st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"])
                print(f"  {name:15s} {size / 1e6:8.1f} MB  {size / messages:7.0f} bytes/message "
                      f"({st['entries']} entries)")
    finally:
        env.close()
    fts = os.path.join(path, "fulltext.sqlite")
    if os.path.exists(fts):
        size = os.stat(fts).st_blocks * 512
        print(f"full-text SQLite (disk, not mapped): {size / 1e6:.1f} MB = "
              f"{size / messages:.0f} bytes/message")


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def pss(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return fields


def report_pss(daemon: WorkerDaemon, label: str) -> None:
    assert daemon.proc is not None
    total = {"Pss": 0, "Pss_Anon": 0, "Pss_File": 0}
    rows = []
    for pid in process_tree(daemon.proc.pid):
        try:
            fields = pss(pid)
        except OSError:
            continue
        for key in total:
            total[key] += fields.get(key, 0)
        rows.append(f"pid {pid} {fields.get('Pss', 0) / 1e6:.1f} MB")
    print(f"{label}: PSS {total['Pss'] / 1e6:.1f} MB (anonymous {total['Pss_Anon'] / 1e6:.1f} MB, "
          f"file {total['Pss_File'] / 1e6:.1f} MB) over {len(rows)} processes: {', '.join(rows)}",
          flush=True)


def use(daemon: WorkerDaemon, users: list[str]) -> None:
    for user in users:
        imap = imaplib.IMAP4("127.0.0.1", daemon.ports["imap"])
        imap.login(user, PASSWORD)
        imap.select("INBOX")
        imap.fetch("1:*", "(FLAGS)")
        imap.uid("SEARCH", "BODY", "budget")
        imap.logout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", help="work directory to create or reuse")
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    workdir = args.data or tempfile.mkdtemp(prefix="xmail-memory-")
    os.makedirs(workdir, exist_ok=True)
    users = [f"user{i}@{DOMAIN}" for i in range(args.users)]
    daemon = WorkerDaemon(workdir, workers=args.workers, limits="quota_messages = 0\n")
    if not os.path.exists(os.path.join(daemon.data, "index", "data.mdb")):
        print(f"filling {workdir}: {args.messages} messages for {args.users} users", flush=True)
        fill(daemon, args.messages, users)
    index_figures(daemon, args.messages)
    daemon.start(timeout=600)
    try:
        time.sleep(args.settle)
        report_pss(daemon, f"idle, {args.workers} workers")
        use(daemon, users)
        time.sleep(args.settle)
        report_pss(daemon, "after one session per user (SELECT, FETCH 1:* FLAGS, SEARCH BODY)")
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
