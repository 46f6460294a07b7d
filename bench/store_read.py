"""
Maildir store read-path benchmark (not a test).

    /tmp/venv/bin/python bench/store_read.py [--messages 10000] [--window 16] [--runs 5]

Builds two folders under a temporary directory, written as an MDA would
(files dropped into cur/): ``Crlf`` (CRLF line ends, ``S=``/``W=`` in the
names, as mailnet and Dovecot deliveries are) and ``Lf`` (bare LF, no sizes
in the names, as procmail or mutt write them), ``--messages`` messages of
2-20 KB each.  Opens them with a fresh :class:`MaildirStore` (its real
thread pool, the real reactor) and times, with ``--window`` opens in flight
(as IMAP's FETCH/SEARCH and POP3's pipelined RETR keep them):

* open + close of every message,
* open + read whole + close of every message.

Prints the median of ``--runs`` in microseconds per message.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from mailnet.store.maildir import MaildirStore  # noqa: E402

USER = "reader@bench.test"
WORDS = b"alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()


def makeMessage(rng, i, eol):
    size = rng.choice([2, 5, 10, 20]) * 1024
    lines = [b"From: a@example.org", b"To: " + USER.encode(), b"Subject: read %d" % i, b""]
    total = 60
    while total < size:
        line = b" ".join(rng.choice(WORDS) for _ in range(12))
        lines.append(line)
        total += len(line) + 2
    return eol.join(lines) + eol


def writeFolder(path, n, eol, seed):
    rng = random.Random(seed)
    cur = os.path.join(path, "cur")
    os.makedirs(cur, exist_ok=True)
    for i in range(n):
        data = makeMessage(rng, i, eol)
        if eol == b"\r\n":
            name = "%d.M%dP1.bench,S=%d,W=%d:2,S" % (1700000000 + i, i, len(data), len(data))
        else:
            name = "%d.M%dP1.bench:2,S" % (1700000000 + i, i)
        with open(os.path.join(cur, name), "wb") as f:
            f.write(data)


async def readAll(folder, uids, window, read):
    pending = {}
    position = 0
    total = 0

    def fill():
        nonlocal position
        while position < len(uids) and len(pending) < window:
            uid = uids[position]
            position += 1
            pending[uid] = folder.openMessage(uid)

    fill()
    for uid in uids:
        d = pending.pop(uid)
        fill()
        f = await d
        if read:
            total += len(f.read())
        f.close()
    return total


async def run(reactor, args):
    root = tempfile.mkdtemp(prefix="storeread-")
    try:
        store = MaildirStore(root, reactor=reactor)
        account = await store.getAccount(USER)
        for name, eol in (("Crlf", b"\r\n"), ("Lf", b"\n")):
            await account.createFolder(name)
            path = os.path.join(root, "bench.test", "reader", "." + name)
            writeFolder(path, args.messages, eol, seed=len(name))
        results = {}
        for name in ("Crlf", "Lf"):
            folder = await account.openFolder(name)
            uids = [i.uid for i in folder.messages()]
            assert len(uids) == args.messages, len(uids)
            await readAll(folder, uids, args.window, True)  # warm the page cache
            for label, read in (("open", False), ("open+read", True)):
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    await readAll(folder, uids, args.window, read)
                    times.append(time.perf_counter() - t)
                results[(name, label)] = statistics.median(times) / len(uids) * 1e6
            folder.close()
        await store.close()
        print("%d messages, window %d, median of %d runs (microseconds per message):"
              % (args.messages, args.window, args.runs))
        for (name, label), us in results.items():
            print("  %-4s %-10s %7.1f" % (name, label, us))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
