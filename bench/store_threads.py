"""
Thread ids benchmark (not a test).

    python bench/store_threads.py [--messages 20000]

Builds a Maildir INBOX of N messages in threads of five (Message-ID,
References, "Re:" subjects) under /tmp/mailnet-bench-threads, written
directly in our on-disk format, then times ``threadIds`` of all of them
with a real reactor and the store's thread pool: the first time (every
header read and indexed into an empty mailnet-threads.sqlite), again in
the same process (the cache), and in a fresh store (a lookup in the
database).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from mailnet.store.maildir import MaildirStore  # noqa: E402
from mailnet.store.maildir.files import UidList  # noqa: E402
from mailnet.store.maildir.modlog import ModLog  # noqa: E402
from mailnet.store.threads import FILE_NAME  # noqa: E402

BIG = "/tmp/mailnet-bench-threads"
USER = "big@bench.test"


def message(i):
    root = i - i % 5
    head = [b"From: bench@example.test", b"To: big@bench.test",
            b"Subject: %s topic %d" % (b"Re:" if i % 5 else b"", root),
            b"Message-ID: <m%d@bench.test>" % i]
    if i % 5:
        head.append(b"References: " + b" ".join(b"<m%d@bench.test>" % j for j in range(root, i)))
    return b"\r\n".join(head) + b"\r\n\r\n" + (b"y" * 76 + b"\r\n") * 20


def build(n):
    account = os.path.join(BIG, "bench.test", "big")
    done = os.path.join(BIG, f".built-{n}")
    if os.path.exists(done):
        return account
    shutil.rmtree(BIG, ignore_errors=True)
    store = MaildirStore(BIG, runner=lambda f, *a: defer.maybeDeferred(f, *a))
    store.getAccount(USER)
    cur = os.path.join(account, "cur")
    records, lines = [], []
    t0 = time.time() - n
    uidlist = UidList(account)
    uidlist.readNew()
    for i in range(1, n + 1):
        data = message(i)
        base = f"{int(t0 + i)}.M{i}P1Q{i}.bench,S={len(data)},W={len(data)}"
        with open(os.path.join(cur, f"{base}:2,S"), "wb") as f:
            f.write(data)
        records.append((i, base, ()))
        lines.append(ModLog.added(2, i, float(int(t0 + i)), len(data), "S"))
    uidlist.append(records)
    log = ModLog(account)
    log.readNew()
    log.append(lines)
    open(done, "w").close()
    return account


@defer.inlineCallbacks
def main(reactor, args):
    n = args.messages
    account = build(n)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(os.path.join(account, FILE_NAME + suffix)):
            os.unlink(os.path.join(account, FILE_NAME + suffix))
    times = []
    for fresh in (True, False):
        store = MaildirStore(BIG, reactor=reactor)
        acct = yield store.getAccount(USER, create=False)
        folder = yield acct.openFolder("INBOX")
        uids = [i.uid for i in folder.messages()]
        for _ in range(2 if fresh else 1):
            t = time.perf_counter()
            ids = yield folder.threadIds(uids)
            times.append(time.perf_counter() - t)
        assert len(ids) == n and len(set(ids.values())) == len({i - i % 5 for i in range(1, n + 1)})
        folder.close()
        yield store.close()
    print(f"threadIds of {n} messages: first time (read and index every header) {times[0]:.2f} s, "
          f"again (cache) {times[1] * 1000:.0f} ms, fresh store (database lookup) {times[2] * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    task.react(main, [parser.parse_args()])
