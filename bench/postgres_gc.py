#!/usr/bin/env python3
"""
What the sweep of unreferenced bodies costs (mailnet/store/postgres/gc.py),
with ``[postgres] bodies = "s3"`` on moto's S3 server, same run:

    .venv/bin/python bench/postgres_gc.py --old /tmp/main-archive [--messages 300] [--sessions 4] [--repeat 3]

* SMTP durable acceptance with bodies in S3, alternating rounds of the old
  code (``--old``: a checkout of main, whose deliveries take no advisory
  lock) and this code (a shared advisory lock per new body, against the
  sweep): messages/s, and the ratio new/old.
* The sweep: after each new-code round every message is expunged over IMAP
  and the sweep (``gc.sweep``, grace 0, in this process: what ``mailnet db
  gc --grace 0`` runs, without the process start) removes the objects;
  objects/s, beside
  the peer: the same number of objects listed and deleted by a bare boto3
  client (one ``delete_object`` each, as the sweep does), with no database.

Starts its own PostgreSQL (fsync on) and moto's S3 server; everything is
stopped at the end.  moto is a Python server on the same cores, so the
object-store side is slow and the ratios say how much the database side
adds to it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.benchlib import postgresNode  # noqa: E402
from bench.postgres_vs_maildir import USER, smtpRun  # noqa: E402
from tests.store.postgres_fixture import PostgresServer, binDir  # noqa: E402
from tests.store.s3_fixture import BUCKET, S3Server  # noqa: E402


def expungeAll(server):
    import imaplib
    import ssl

    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=ssl.create_default_context(
        cafile=server.certFile), timeout=300)
    m.login(*USER)
    m.select("INBOX")
    m.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
    m.expunge()
    m.logout()


def timedSweep(pg, dbname, s3, prefix):
    """gc.sweep with grace 0 in this process (this code), timed without the process start."""
    from mailnet.store.postgres import gc
    from mailnet.store.postgres.db import Database

    objects = s3.objectStore(prefix)
    objects.client  # made before the clock starts, as in a running node
    db = Database(pg.settings(dbname), objects=objects)
    try:
        start = time.perf_counter()
        report = gc.sweep(db, objects, 0)
        elapsed = time.perf_counter() - start
    finally:
        db.close()
    assert report.removed == report.orphans > 0, report
    return elapsed


def bareSweep(s3, prefix, n, body):
    """The peer: n objects PUT, then listed and deleted one by one by boto3 alone; objects/s of the delete."""
    client = s3.client()
    for i in range(n):
        client.put_object(Bucket=BUCKET, Key=f"{prefix}{i:064x}", Body=body)
    start = time.perf_counter()
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=o["Key"])
            count += 1
    elapsed = time.perf_counter() - start
    assert count == n, count
    return n / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="a checkout of the old code (git archive main)")
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bindir = binDir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = PostgresServer(bindir, fsync=True)
    s3 = S3Server()
    scratch = tempfile.mkdtemp(prefix="mailnet-bench-gc-")
    res = {"old smtp": [], "new smtp": [], "gc": [], "bare": []}
    load = [os.getloadavg()[0]]
    try:
        pg.init()
        pg.makeTemplate()
        s3.start()
        s3.client().create_bucket(Bucket=BUCKET)
        for r in range(args.repeat):
            for which in ("old", "new"):
                old = args.old if which == "old" else None
                prefix = f"{which}{r}/"
                config = {"limits": {"connections_per_ip": 1000}, "postgres": dict(s3.config(prefix), s3_timeout=30)}
                with postgresNode(pg, os.path.join(scratch, f"{which}{r}"), config, old=old, user=USER) as server:
                    rate = smtpRun(server, args.messages, args.sessions)
                    res[f"{which} smtp"].append(rate)
                    line = f"run {r + 1} {which}: {rate:.0f} msgs/s"
                    if which == "new":
                        expungeAll(server)
                        n = len(s3.keys(prefix))
                        elapsed = timedSweep(pg, server.dbname, s3, prefix)
                        assert not s3.keys(prefix)
                        res["gc"].append(n / elapsed)
                        res["bare"].append(bareSweep(s3, f"bare{r}/", n, b"x" * 4096))
                        line += f"; gc {n / elapsed:.0f} objects/s, bare boto3 {res['bare'][-1]:.0f}/s"
                    print(line, file=sys.stderr, flush=True)
        load.append(os.getloadavg()[0])
    finally:
        s3.stop()
        pg.destroy()
        shutil.rmtree(scratch, ignore_errors=True)
    m = {k: statistics.median(v) for k, v in res.items()}
    print(f"\n{args.messages} messages of 4 KB, {args.sessions} SMTP sessions, bodies in moto S3, "
          f"median of {args.repeat}; load average {load[0]:.1f} at the start, {load[-1]:.1f} at the end\n")
    print("| measure | old code / peer | new code | new / old-or-peer |")
    print("|---|---|---|---|")
    print(f"| SMTP durable acceptance, msgs/s | {m['old smtp']:.0f} | {m['new smtp']:.0f} | "
          f"{m['new smtp'] / m['old smtp']:.2f} |")
    print(f"| sweep (gc.sweep), objects/s, vs bare boto3 list+delete | "
          f"{m['bare']:.0f} | {m['gc']:.0f} | {m['gc'] / m['bare']:.2f} |")


if __name__ == "__main__":
    main()
