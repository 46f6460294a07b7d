"""
IMAP OBJECTID, in process: what FETCH EMAILID/THREADID cost on top of a
metadata FETCH.

    /work/main/.venv/bin/python bench/imap_objectid.py [--count 5000] [--runs 15]

Delivers ``--count`` messages into a Maildir INBOX (a temporary directory),
opens one in-process session (tests/imap/helpers.World, no sockets),
SELECTs INBOX, runs each command once to warm up (the first EMAILID and
THREADID make the store compute the ids), then ``--runs`` rounds of
``UID FETCH 1:* (UID FLAGS)``, ``(UID FLAGS EMAILID)`` and
``(UID FLAGS THREADID)``, interleaved, and prints min and median per
command (the time includes the in-process client reading the answer).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mailnet.store.maildir import MaildirStore  # noqa: E402
from mailnet.store.testing import syncRunner  # noqa: E402
from tests.imap.helpers import World, message  # noqa: E402

COMMANDS = ("UID FETCH 1:* (UID FLAGS)", "UID FETCH 1:* (UID FLAGS EMAILID)", "UID FETCH 1:* (UID FLAGS THREADID)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mailnet-objectid-")
    try:
        w = World(store=MaildirStore(root, runner=syncRunner))
        for i in range(args.count):
            w.deliver(message("s%d" % i))
        c = w.client(login="alice@example.test")
        c.ok("SELECT INBOX")
        first = {cmd: c.ok(cmd).split(b"\r\n")[0][:80] for cmd in COMMANDS}
        times = {cmd: [] for cmd in COMMANDS}
        for _ in range(args.runs):
            for cmd in COMMANDS:
                t = time.perf_counter()
                c.ok(cmd)
                times[cmd].append(time.perf_counter() - t)
        print("%d messages, %d runs" % (args.count, args.runs))
        for cmd in COMMANDS:
            ts = sorted(times[cmd])
            print("%-36s min %6.1f ms  median %6.1f ms  %s" % (cmd, ts[0] * 1000, ts[len(ts) // 2] * 1000,
                                                             first[cmd].decode("ascii", "replace")))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
