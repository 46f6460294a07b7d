"""
Message list benchmark (not a test).

    python bench/store_list.py [--messages 100000] [--repeat 7] [--skip-rebuild]

Builds a Maildir account of N messages (bench/store_threads.py's
generator, under /tmp/mailnet-bench-list), then, with a real reactor and
the store's thread pool:

1. rebuild: the list index (and the thread index) deleted, a fresh store
   answers ``listEmails(limit=50)``, which reads and indexes every message;
2. the newest 50 with their list fields (``listEmails(limit=50)`` and
   ``emailSummaries`` of those 50) in a fresh store (cold: the folder's
   index is loaded for the flags), then again in the same store (warm),
   ``--repeat`` times: the median and the best; every ``open`` of a file
   under new/ or cur/ meanwhile is counted (``builtins.open`` and
   ``os.open`` wrapped, in every thread);
3. ``listEmails`` alone in a fresh store (the stamps say nothing changed).
"""

from __future__ import annotations

import argparse
import builtins
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from twisted.internet import defer, task  # noqa: E402

import store_threads  # noqa: E402
from mailnet.store.maildir import MaildirStore  # noqa: E402
from mailnet.store.summaries import FILE_NAME  # noqa: E402
from mailnet.store.threads import FILE_NAME as THREADS_FILE  # noqa: E402

store_threads.BIG = "/tmp/mailnet-bench-list"  # our own copy (others may run store_threads at the same time)
USER = store_threads.USER


class OpenCounter:
    """Counts opens of message files (paths with /new/ or /cur/), in every thread."""

    def __init__(self):
        self.count = 0
        self.realOpen, self.realOsOpen = builtins.open, os.open

    def _seen(self, file):
        if isinstance(file, (str, bytes, os.PathLike)):
            p = os.fsdecode(os.fspath(file))
            if "/cur/" in p or "/new/" in p:
                self.count += 1

    def __enter__(self):
        def spyOpen(file, *a, **kw):
            self._seen(file)
            return self.realOpen(file, *a, **kw)

        def spyOsOpen(file, *a, **kw):
            self._seen(file)
            return self.realOsOpen(file, *a, **kw)

        builtins.open, os.open = spyOpen, spyOsOpen
        return self

    def __exit__(self, *exc):
        builtins.open, os.open = self.realOpen, self.realOsOpen


def drop(account, names):
    for name in names:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(os.path.join(account, name + suffix))
            except FileNotFoundError:
                pass


@defer.inlineCallbacks
def newest50(reactor, store):
    acct = yield store.getAccount(USER, create=False)
    t = time.perf_counter()
    listed = yield acct.listEmails(limit=50)
    found = yield acct.emailSummaries(listed.ids)
    elapsed = time.perf_counter() - t
    assert len(found) == 50 and listed.total >= 50, (len(found), listed.total)
    return elapsed, listed, found


@defer.inlineCallbacks
def main(reactor, args):
    n = args.messages
    account = store_threads.build(n)
    print(f"{n} messages in {account}; load average {os.getloadavg()[0]:.1f}")
    if not args.skip_rebuild or not os.path.exists(os.path.join(account, FILE_NAME)):
        drop(account, [FILE_NAME, THREADS_FILE])
        store = MaildirStore(store_threads.BIG, reactor=reactor)
        acct = yield store.getAccount(USER, create=False)
        t, cpu = time.perf_counter(), time.process_time()
        listed = yield acct.listEmails(limit=50)
        rebuild, cpu = time.perf_counter() - t, time.process_time() - cpu
        indexed = store.summariesAt(account).indexed
        yield store.close()
        assert listed.total == n, listed.total
        print(f"rebuild (list index and thread index from nothing, {indexed} messages read): {rebuild:.1f} s "
              f"({rebuild / n * 1e6:.0f} µs per message), CPU {cpu:.1f} s ({cpu / n * 1e6:.0f} µs per message); "
              f"load average {os.getloadavg()[0]:.1f}")
    cold, warm, alone = [], [], []
    opens = 0
    for _ in range(args.repeat):
        store = MaildirStore(store_threads.BIG, reactor=reactor)
        with OpenCounter() as counter:
            acct = yield store.getAccount(USER, create=False)
            t = time.perf_counter()
            yield acct.listEmails(limit=50)
            alone.append(time.perf_counter() - t)
            yield store.close()
            store = MaildirStore(store_threads.BIG, reactor=reactor)
            elapsed, listed, found = yield newest50(reactor, store)
            cold.append(elapsed)
            for _ in range(3):
                elapsed, listed, found = yield newest50(reactor, store)
                warm.append(elapsed)
        opens += counter.count
        yield store.close()
    newest = max(found.values(), key=lambda s: s.receivedAt)
    print(f"newest: {newest.subject!r} from {newest.sender}, preview {newest.preview[:30]!r}..., "
          f"thread {newest.threadId}")

    def ms(xs):
        return f"median {statistics.median(xs) * 1000:.1f} ms, best {min(xs) * 1000:.1f} ms"

    print(f"listEmails(limit=50) alone, fresh store: {ms(alone)}")
    print(f"newest 50 with list fields, fresh store (loads the folder for the flags): {ms(cold)}")
    print(f"newest 50 with list fields, again (folder loaded): {ms(warm)}")
    print(f"message files opened meanwhile: {opens}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-rebuild", action="store_true")
    task.react(main, [parser.parse_args()])
