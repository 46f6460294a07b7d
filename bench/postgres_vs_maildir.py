#!/usr/bin/env python3
"""
The PostgreSQL store beside the Maildir store, same run, same clients.

    /work/main/.venv/bin/python bench/postgres_vs_maildir.py [--messages 600] [--sessions 8] [--repeat 3] [--s3]

Starts its own PostgreSQL (initdb in a temporary directory, Unix socket
only, **fsync on**: a commit is on disk before the 250, as a Maildir
delivery is fsynced) and two mailnet servers, one per backend, and runs
alternately (maildir, postgres, maildir, ...):

* SMTP durable acceptance: ``--sessions`` smtplib clients in threads, each
  sending its share of ``--messages`` 4 KB messages over one connection;
  messages/s.
* IMAP FETCH over implicit TLS on a folder of those messages: one
  ``UID FETCH 1:* (FLAGS RFC822.SIZE)`` (index only), one
  ``UID FETCH 1:* BODY.PEEK[]`` (every body), and ``BODY.PEEK[]`` one
  message per command for 200 messages (a round trip to the store each).

``--s3``: a third server, PostgreSQL with ``[postgres] bodies = "s3"``
against moto's S3 server (a Python test server on 127.0.0.1, much slower
than a real object store: the ratio is an upper bound of the cost).

Prints medians and the postgres/maildir ratio (above 1: postgres is slower
for times, faster for rates) as a Markdown table.  Everything started here
is stopped at the end.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import ssl
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from benchlib import loadMessage, mailnetNode, smtpLoad  # noqa: E402
from tests.store.postgres_fixture import PostgresServer, binDir  # noqa: E402

USER = ("alice@example.test", "alice-pw")


def message(i):
    return loadMessage(i)


def smtpRun(server, messages, sessions):
    sent, seconds = smtpLoad(server.port("smtp"), USER[0], messages, sessions, message)
    return sent / seconds


def imapRun(server):
    ctx = ssl.create_default_context(cafile=server.certFile)
    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=ctx, timeout=300)
    m.login(*USER)
    m.select("INBOX", readonly=True)
    out = {}
    start = time.perf_counter()
    m.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE)")
    out["fetch flags"] = time.perf_counter() - start
    start = time.perf_counter()
    m.uid("FETCH", "1:*", "BODY.PEEK[]")
    out["fetch bodies"] = time.perf_counter() - start
    start = time.perf_counter()
    for n in range(1, 201):
        m.fetch(str(n), "BODY.PEEK[]")
    out["200 x fetch one"] = time.perf_counter() - start
    m.logout()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--s3", action="store_true", help="also PostgreSQL with bodies in moto's S3 server")
    args = ap.parse_args()
    bindir = binDir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = PostgresServer(bindir, fsync=True)
    scratch = tempfile.mkdtemp(prefix="mailnet-bench-pg-")
    backends = ("maildir", "postgres") + (("postgres+s3",) if args.s3 else ())
    results = {b: {} for b in backends}
    s3 = None
    try:
        pg.init()
        pg.makeTemplate()
        if args.s3:
            from tests.store.s3_fixture import BUCKET, S3Server

            s3 = S3Server()
            s3.start()
            s3.client().create_bucket(Bucket=BUCKET)
        for r in range(args.repeat):
            for backend in backends:
                on = pg if backend.startswith("postgres") else None
                extra = dict(s3.config(f"run{r}/"), s3_timeout=30) if backend == "postgres+s3" else None
                with mailnetNode(os.path.join(scratch, f"{backend}{r}"), {"limits": {"connections_per_ip": 1000}},
                                 pg=on, postgres=extra, user=USER) as server:
                    rate = smtpRun(server, args.messages, args.sessions)
                    results[backend].setdefault("smtp msgs/s", []).append(rate)
                    for key, value in imapRun(server).items():
                        results[backend].setdefault(key + " (s)", []).append(value)
                    print(f"run {r + 1} {backend}: {rate:.0f} msgs/s", file=sys.stderr, flush=True)
    finally:
        if s3 is not None:
            s3.stop()
        pg.destroy()
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.messages} messages of 4 KB, {args.sessions} SMTP sessions, median of {args.repeat}\n")
    others = backends[1:]
    print("| measure | " + " | ".join(backends) + " | " + " | ".join(f"{b} / maildir" for b in others) + " |")
    print("|---" * (len(backends) + len(others) + 1) + "|")
    for key in results["maildir"]:
        m = {b: statistics.median(results[b][key]) for b in backends}
        print(f"| {key} | " + " | ".join(f"{m[b]:.3f}" for b in backends) + " | "
              + " | ".join(f"{m[b] / m['maildir']:.2f}" for b in others) + " |")

if __name__ == "__main__":
    main()
