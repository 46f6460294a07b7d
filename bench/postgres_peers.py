#!/usr/bin/env python3
"""
mailnet on PostgreSQL beside mailnet on Maildir, Postfix and Dovecot, in
one run, same clients, as ratios.

    .venv/bin/python bench/postgres_peers.py [--messages 600] [--sessions 8] [--repeat 3]

* SMTP durable acceptance: ``--sessions`` smtplib clients in threads, each
  sending its share of ``--messages`` 4 KB messages over one connection
  (persistent sessions); messages/s until the last 250.  Every server
  answers 250 only once the message is on disk: mailnet-Maildir after
  fsync, mailnet-PostgreSQL after COMMIT (PostgreSQL with fsync on),
  Postfix after its queue file is fsynced (/work/shared/bench start-peers).
* IMAP on the same messages (plain IMAP, LOGIN, one connection): ``UID
  FETCH 1:* (FLAGS RFC822.SIZE)``, ``UID FETCH 1:* BODY.PEEK[]``,
  ``BODY.PEEK[]`` one message per command for 200 messages, ``SEARCH TEXT``
  (a word in one message of ten, so every body is read) and ``SEARCH
  SUBJECT``.  Dovecot gets the same messages written into its Maildir.

Rounds alternate (maildir, postgres, postfix/dovecot, ...); medians and
the ratios postgres/maildir and postgres/peer are printed as a Markdown
table, with the load average before and after.  ``--old DIR`` (a checkout
of older code, e.g. ``git archive main | tar -x -C DIR``) adds a PostgreSQL
node running that code to every round (after the new one), and its ratios
to the table: before and after from the same run.  Everything started here
is stopped at the end.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import imap_bench  # noqa: E402
import smtp_bench  # noqa: E402
from benchlib import loadavg, loadMessage, mailnetNode, smtpLoad  # noqa: E402
from tests.store.postgres_fixture import PostgresServer, binDir  # noqa: E402

USER = ("alice@example.test", "alice-pw")


def message(i):
    return loadMessage(i, to=b"someone@example.test", word=b"needle" if i % 10 == 0 else b"hay")


def smtpRun(port, rcpt, messages, sessions):
    sent, seconds = smtpLoad(port, rcpt, messages, sessions, message)
    return sent / seconds


def imapRun(port, user, password, expect):
    m = imaplib.IMAP4("127.0.0.1", port, timeout=300)
    m.login(user, password)
    typ, data = m.select("INBOX", readonly=True)
    assert int(data[0]) == expect, (data, expect)
    out = {}

    def timed(name, *command):
        start = time.perf_counter()
        typ, data = m.search(None, *command[1:]) if command[0] == "SEARCH" else m.uid(*command)
        out[name] = time.perf_counter() - start
        assert typ == "OK", (name, data)
        return data

    timed("uid fetch flags", "FETCH", "1:*", "(FLAGS RFC822.SIZE)")
    timed("uid fetch bodies", "FETCH", "1:*", "BODY.PEEK[]")
    start = time.perf_counter()
    for n in range(1, min(200, expect) + 1):
        m.fetch(str(n), "BODY.PEEK[]")
    out["200 x fetch one"] = time.perf_counter() - start
    hits = timed("search text", "SEARCH", "TEXT", "needle")
    assert len(hits[0].split()) == expect // 10, hits
    timed("search subject", "SEARCH", "SUBJECT", '"bench 7"')
    m.logout()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postfix-port", type=int, default=12135)
    ap.add_argument("--old", help="a checkout of older code: its PostgreSQL node runs in every round too")
    args = ap.parse_args()
    count = args.messages // args.sessions * args.sessions
    bindir = binDir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = PostgresServer(bindir, fsync=True)
    scratch = tempfile.mkdtemp(prefix="mailnet-bench-pgpeers-")
    os.chmod(scratch, 0o755)  # Postfix's daemons run as postfix
    # Postfix in this run's own scratch dir and port (other benchmarks may use the defaults).
    smtp_bench.SCRATCH = os.path.join(scratch, "smtp")
    smtp_bench.PORTS["postfix"] = args.postfix_port
    names = ("maildir", "postgres", "postgres-old", "peer") if args.old else ("maildir", "postgres", "peer")
    results = {name: {} for name in names}
    loads = [loadavg()]
    dovecot = None
    try:
        pg.init()
        pg.makeTemplate()
        smtp_bench.peers("start", "postfix")
        # Dovecot: the same messages, written once into its Maildir.
        mail = os.path.join(scratch, "dovecot-mail")
        inbox = os.path.join(mail, imap_bench.USER)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(inbox, sub))
        for i in range(count):
            with open(os.path.join(inbox, "cur", f"{1700000000 + i}.M{i}P1.bench:2,"), "wb") as f:
                f.write(message(i))
        dovecot = imap_bench.Dovecot(os.path.join(scratch, "dovecot-run"), mail)
        dovecot.start()
        for r in range(args.repeat):
            for name in names:
                if name == "peer":
                    smtp_bench.emptyMaildir(smtp_bench.maildirFor("postfix", None))
                    rate = smtpRun(smtp_bench.PORTS["postfix"], smtp_bench.RCPT, args.messages, args.sessions)
                    results[name].setdefault("smtp msgs/s", []).append(rate)
                    for key, value in imapRun(dovecot.port, imap_bench.USER, imap_bench.PASSWORD, count).items():
                        results[name].setdefault(key + " (s)", []).append(value)
                    print(f"run {r + 1} postfix: {rate:.0f} msgs/s", file=sys.stderr, flush=True)
                    continue
                config = {"limits": {"connections_per_ip": 1000}, "auth": {"allow_plaintext": True}}
                env = {"PYTHONPATH": os.path.abspath(args.old)} if name == "postgres-old" else None
                with mailnetNode(os.path.join(scratch, f"{name}{r}"), config,
                                 pg=pg if name.startswith("postgres") else None,
                                 user=USER, remove=True, env=env) as server:
                    rate = smtpRun(server.port("smtp"), USER[0], args.messages, args.sessions)
                    results[name].setdefault("smtp msgs/s", []).append(rate)
                    for key, value in imapRun(server.port("imap"), *USER, count).items():
                        results[name].setdefault(key + " (s)", []).append(value)
                    print(f"run {r + 1} {name}: {rate:.0f} msgs/s", file=sys.stderr, flush=True)
    finally:
        loads.append(loadavg())
        if dovecot:
            dovecot.stop()
        smtp_bench.peers("stop", "postfix")
        pg.destroy()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{count} messages of 4 KB, {args.sessions} persistent SMTP sessions, median of {args.repeat};"
          f" load average {loads[0]} before, {loads[1]} after\n")
    if args.old:
        print("| measure | mailnet Maildir | PostgreSQL old | PostgreSQL new | Postfix / Dovecot "
              "| old / Maildir | new / Maildir | old / peer | new / peer |")
        print("|---|---|---|---|---|---|---|---|---|")
        for key in results["maildir"]:
            a, o, b, c = (statistics.median(results[n][key]) for n in ("maildir", "postgres-old", "postgres", "peer"))
            print(f"| {key} | {a:.3f} | {o:.3f} | {b:.3f} | {c:.3f} | {o / a:.2f} | {b / a:.2f} "
                  f"| {o / c:.2f} | {b / c:.2f} |")
        return
    print("| measure | mailnet Maildir | mailnet PostgreSQL | Postfix / Dovecot | PostgreSQL / Maildir | PostgreSQL / peer |")
    print("|---|---|---|---|---|---|")
    for key in results["maildir"]:
        a, b, c = (statistics.median(results[n][key]) for n in ("maildir", "postgres", "peer"))
        print(f"| {key} | {a:.3f} | {b:.3f} | {c:.3f} | {b / a:.2f} | {b / c:.2f} |")


if __name__ == "__main__":
    main()
