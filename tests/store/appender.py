"""A second process for store tests: appends messages through a synchronous
MailStore on an existing data directory and prints the UIDs it got.

    python -m tests.store.appender DATA_DIR ADDRESS FOLDER COUNT [restore UID...]
"""

from __future__ import annotations

import os
import sys
import time

from tests.store.conftest import SyncStore, result_of


def main(argv: list[str]) -> None:
    data_dir, address, folder, count = argv[:4]
    store = SyncStore(data_dir)
    try:
        mailbox = store.store.mailbox(address)
        if argv[4:5] == ["restore"]:
            restored = result_of(mailbox.recycle_restore([int(u) for u in argv[5:]]))
            for _old, _name, uid in restored:
                print(uid)
            return
        target = mailbox.folder(folder)
        go = os.environ.get("XMAIL_TEST_GO")
        if go:
            # Start together with the other process: say ready, wait for go.
            print("ready", flush=True)
            while not os.path.exists(go):
                time.sleep(0.005)
        for i in range(int(count)):
            result = result_of(target.append(f"Subject: from pid {i}\r\n\r\nbody {i}\r\n".encode()))
            print(result.uid, flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
