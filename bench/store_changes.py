"""
Account changes benchmark (not a test).

    python bench/store_changes.py [--messages 100000] [--runs 5] [--deliveries 2000]

1. ``changesSince`` on a big account.  Builds a Maildir INBOX of N
   messages with ``bench/store_threads.py``'s generator (under
   /tmp/mailnet-bench-changes), takes the account's journal baseline
   (timed: the journal made from scratch), makes 10 changes (5
   deliveries, 5 flag changes) in a process that then asks the state, as
   a JMAP server does, and times, in fresh processes (open the store and
   the account, answer ``changesSince(S)``), the answer with the 10
   changes.  Then the same after 10 deliveries by a process that never
   asked (the journal must sync the folder once: another program could
   have written it).
2. Delivery rate with the journal idle (no account listener: nothing
   but two stats per folder per group commit) and working (a listener on
   the account: every group commit is followed by an ingest and a
   notification), interleaved runs in one process, through the store
   with a real reactor and its thread pool, 20 deliveries in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from twisted.internet import defer, task  # noqa: E402

import store_threads  # noqa: E402
from mailnet.store.maildir import MaildirStore  # noqa: E402

BIG = "/tmp/mailnet-bench-changes"
USER = store_threads.USER
MSG = b"From: a@bench.test\r\nTo: big@bench.test\r\nSubject: hello\r\n\r\n" + b"x" * 2000 + b"\r\n"


def child(mode, state=""):
    """Run one step in a fresh process; returns its JSON answer."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode, state],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@defer.inlineCallbacks
def childMain(reactor, mode, state):
    t0 = time.perf_counter()
    store = MaildirStore(BIG, reactor=reactor, changesPoll=0)
    account = yield store.getAccount(USER, create=False)
    out = {}
    if mode == "baseline":
        out["state"] = yield account.currentState()
    elif mode == "change":
        # 5 deliveries and 5 flag changes, then the state (a JMAP server asks).
        out["state"] = yield account.currentState()
        for _ in range(5):
            d = store.newDelivery()
            d.addRecipient(USER)
            d.write(MSG)
            yield d.commit()
        inbox = yield account.openFolder("INBOX")
        uids = [i.uid for i in inbox.messages()[:5]]
        yield inbox.setFlags(uids, ["$bench%d" % time.time_ns()], "add")
        inbox.close()
        yield account.currentState()
    elif mode == "deliver":
        for _ in range(10):
            d = store.newDelivery()
            d.addRecipient(USER)
            d.write(MSG)
            yield d.commit()
    elif mode == "changes":
        c = yield account.changesSince(state)
        out["ms"] = (time.perf_counter() - t0) * 1000
        out["n"] = len(c.emails.created + c.emails.updated + c.emails.destroyed)
        out["syncs"] = store.journalAt(account).syncs
    yield store.close()
    print(json.dumps(out))


class Heard:
    def __init__(self):
        self.n = 0

    def accountChanged(self, account, state, types):
        self.n += 1


@defer.inlineCallbacks
def deliveryRate(reactor, n, listen):
    root = os.path.join(BIG, "rate")
    store = MaildirStore(root, reactor=reactor, changesPoll=0)
    user = "rate%d@bench.test" % time.time_ns()
    account = yield store.getAccount(user)
    heard = Heard()
    syncs = 0
    if listen:
        yield account.currentState()
        syncs = -store.journalAt(account).syncs  # the baseline's
        account.addListener(heard)
    t0 = time.perf_counter()
    sem = defer.DeferredSemaphore(20)

    def one():
        d = store.newDelivery()
        d.addRecipient(user)
        d.write(MSG)
        return d.commit()

    yield defer.gatherResults([sem.run(one) for _ in range(n)])
    elapsed = time.perf_counter() - t0
    if listen:
        yield account.currentState()
        account.removeListener(heard)
    syncs += store.journalAt(account).syncs if listen else 0
    yield store.close()
    return n / elapsed, heard.n, syncs


@defer.inlineCallbacks
def main(reactor, args):
    if args.rate_only:
        yield rates(reactor, args)
        return
    store_threads.BIG = BIG
    t = time.perf_counter()
    store_threads.build(args.messages)
    print(f"Maildir of {args.messages} messages ready ({time.perf_counter() - t:.0f} s); load {os.getloadavg()[0]:.1f}")
    for suffix in ("", "-wal", "-shm"):
        path = os.path.join(BIG, "bench.test", "big", "mailnet-changes.sqlite" + suffix)
        if os.path.exists(path):
            os.unlink(path)
    t = time.perf_counter()
    child("baseline")
    print(f"journal made from scratch (reads the folder once): {time.perf_counter() - t:.1f} s")
    state = child("change")["state"]
    times = []
    for _ in range(args.runs):
        r = child("changes", state)
        assert r["n"] == 10, r
        times.append(r["ms"])
    print(f"fresh process, changesSince(S) with 10 changes (open store + account + answer): "
          f"median {statistics.median(times):.1f} ms, all {', '.join('%.1f' % x for x in times)}; "
          f"folders synced {r['syncs']}; load {os.getloadavg()[0]:.1f}")
    state = child("baseline")["state"]
    child("deliver")
    r = child("changes", state)
    print(f"after 10 deliveries by a process that never asked: first answer {r['ms']:.0f} ms "
          f"(folders synced {r['syncs']}), then:", end=" ")
    r = child("changes", state)
    print(f"{r['ms']:.1f} ms (folders synced {r['syncs']})")
    yield rates(reactor, args)


@defer.inlineCallbacks
def rates(reactor, args):
    rates = {False: [], True: []}
    for rep in range(args.repeat):
        for listen in ((False, True) if rep % 2 == 0 else (True, False)):
            rate, heard, syncs = yield deliveryRate(reactor, args.deliveries, listen)
            rates[listen].append(rate)
            print(f"  journal {'working' if listen else 'idle   '} {rate:6.0f} deliveries/s"
                  + (f" ({heard} notifications, {syncs} folder syncs)" if listen else ""))
    idle, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"delivery rate, medians of {args.repeat}: idle {idle:.0f}/s, working {on:.0f}/s ({on / idle:.2f}); "
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        task.react(childMain, [sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""])
    else:
        parser = argparse.ArgumentParser()
        parser.add_argument("--messages", type=int, default=100000)
        parser.add_argument("--runs", type=int, default=5)
        parser.add_argument("--deliveries", type=int, default=2000)
        parser.add_argument("--repeat", type=int, default=4)
        parser.add_argument("--rate-only", action="store_true")
        task.react(main, [parser.parse_args()])
