"""
Maildir store benchmark (not a test).

    python bench/store_maildir.py [--messages 100000] [--deliveries 3000]

1. Opening a big folder: builds a 100,000-message INBOX once under
   /tmp/mailnet-bench-maildir (as our store would have left it: files in
   cur/ with S=/W= in their names, dovecot-uidlist, mailnet-modseq), then
   times openFolder() + messages() with a fresh store (page cache warm),
   and once without the sidecar (the first open of a Dovecot-made folder,
   which must stat every file once).  Then the email ids of all of them
   (``emailIds``) and ``findEmail`` of one, first and second time.
2. Durable deliveries per second of 4 KB messages with 1 and with 20
   deliveries in flight (a real reactor and the default thread pool, so
   group commit happens as in the server), to one INBOX and to 20 INBOXes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from mailnet.store.maildir.files import UidList  # noqa: E402
from mailnet.store.maildir.modlog import ModLog  # noqa: E402
from mailnet.store.maildir import MaildirStore  # noqa: E402

BIG = "/tmp/mailnet-bench-maildir"
USER = "big@bench.test"
BODY = (
    b"From: bench@example.test\r\nTo: big@bench.test\r\nSubject: bench\r\n\r\n"
    + b"x" * 70
    + b"\r\n"
) * 1


def message(size):
    line = b"y" * 76 + b"\r\n"
    out = BODY
    while len(out) + len(line) <= size:
        out += line
    return out + b"z" * (size - len(out))


def build(n):
    """The big folder, written directly in our on-disk format (no fsyncs)."""
    account = os.path.join(BIG, "bench.test", "big")
    done = os.path.join(BIG, f".built-{n}")
    if os.path.exists(done):
        return account
    shutil.rmtree(BIG, ignore_errors=True)
    store = MaildirStore(BIG, runner=lambda f, *a: defer.maybeDeferred(f, *a))
    store.getAccount(USER)
    data = message(2000)
    cur = os.path.join(account, "cur")
    records, lines = [], []
    t0 = time.time() - n
    uidlist = UidList(account)
    uidlist.readNew()
    for i in range(1, n + 1):
        base = f"{int(t0 + i)}.M{i}P1Q{i}.bench,S={len(data)},W={len(data)}"
        flags = "S" if i % 3 else ""
        with open(os.path.join(cur, f"{base}:2,{flags}"), "wb") as f:
            f.write(data)
        records.append((i, base, ()))
        lines.append(ModLog.added(2, i, float(int(t0 + i)), len(data), flags))
    uidlist.append(records)
    log = ModLog(account)
    log.readNew()
    log.append(lines)
    open(done, "w").close()
    return account


@defer.inlineCallbacks
def timeOpen(reactor, n):
    account = build(n)
    results = []
    for _ in range(3):
        store = MaildirStore(BIG, reactor=reactor)
        t = time.perf_counter()
        acct = yield store.getAccount(USER, create=False)
        folder = yield acct.openFolder("INBOX")
        infos = folder.messages()
        results.append(time.perf_counter() - t)
        assert len(infos) == n, len(infos)
        t = time.perf_counter()
        yield folder.refresh()
        refresh = time.perf_counter() - t
        t = time.perf_counter()
        ids = folder.emailIds([i.uid for i in infos])
        idTime = time.perf_counter() - t
        finds = []
        for _ in range(2):
            t = time.perf_counter()
            found = yield acct.findEmail(ids[infos[n // 2].uid])
            finds.append(time.perf_counter() - t)
            assert found == ("INBOX", infos[n // 2].uid), found
        folder.close()
        store.close()
    print(f"open {n} messages (openFolder + messages()): best {min(results):.3f} s, "
          f"runs {', '.join(f'{r:.3f}' for r in results)}; refresh() after: {refresh * 1000:.2f} ms")
    print(f"emailIds() of all {n}: {idTime * 1000:.0f} ms; findEmail: first in this process "
          f"{finds[0] * 1000:.0f} ms (reads the uidlists), then {finds[1] * 1000:.1f} ms")
    # Without the sidecar: the first open of a folder Dovecot made.
    side = os.path.join(account, ModLog.NAME)
    saved = side + ".saved"
    os.rename(side, saved)
    try:
        store = MaildirStore(BIG, reactor=reactor)
        t = time.perf_counter()
        acct = yield store.getAccount(USER, create=False)
        folder = yield acct.openFolder("INBOX")
        folder.messages()
        first = time.perf_counter() - t
        folder.close()
        store.close()
    finally:
        os.replace(saved, side)
    print(f"first open without sidecar (stats every file once): {first:.3f} s")


@defer.inlineCallbacks
def timeDeliveries(reactor, total, concurrency, users, size=4096):
    root = "/tmp/mailnet-bench-deliveries"
    shutil.rmtree(root, ignore_errors=True)
    store = MaildirStore(root, reactor=reactor)
    names = [f"u{i}@bench.test" for i in range(users)]
    for name in names:
        yield store.getAccount(name)
    data = message(size)
    counter = iter(range(total))

    @defer.inlineCallbacks
    def worker():
        for i in counter:
            d = store.newDelivery()
            d.addRecipient(names[i % users])
            d.write(data)
            yield d.commit()

    t = time.perf_counter()
    t0 = os.times()
    yield defer.gatherResults([worker() for _ in range(concurrency)])
    elapsed = time.perf_counter() - t
    t1 = os.times()
    user, system = t1.user - t0.user, t1.system - t0.system
    store.close()
    shutil.rmtree(root, ignore_errors=True)
    rate = total / elapsed
    print(f"{total} durable deliveries of {size} B, {concurrency:2d} in flight, "
          f"{users:2d} mailbox(es): {rate:7.0f}/s ({elapsed:.2f} s, "
          f"CPU per delivery: user {user / total * 1e6:.0f} us, system {system / total * 1e6:.0f} us)")
    return rate


def fsyncRate(n=200):
    """The disk's own speed right now: create, write 4 KB, fsync, serially."""
    d = "/tmp/mailnet-bench-fsync"
    os.makedirs(d, exist_ok=True)
    t = time.perf_counter()
    for i in range(n):
        fd = os.open(f"{d}/{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        os.close(fd)
    rate = n / (time.perf_counter() - t)
    shutil.rmtree(d, ignore_errors=True)
    return rate


@defer.inlineCallbacks
def main(reactor, args):
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {os.uname().release}, "
          f"load {os.getloadavg()[0]:.1f}; baseline: {fsyncRate():.0f} fsyncs/s")
    if args.messages:
        yield timeOpen(reactor, args.messages)
    for concurrency, users in ((1, 1), (20, 1), (20, 20)):
        yield timeDeliveries(reactor, args.deliveries, concurrency, users)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--deliveries", type=int, default=3000)
    task.react(main, [parser.parse_args()])
