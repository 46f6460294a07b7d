#!/usr/bin/env python3
"""
JMAP uploads (RFC 8620 s6.1) on a PostgreSQL-backed node: the old code
(uploads as fsynced files in the node's data_dir, not shared) against
this code (uploads in the database, shared by the nodes), same run,
alternating rounds:

    .venv/bin/python bench/postgres_uploads.py --old /tmp/main-archive [--count 40] [--size 262144] [--repeat 3]

Each round: ``--count`` uploads of ``--size`` random bytes over HTTP (one
client, one connection per request, Basic auth on loopback), the 201
awaited each time, then each blob downloaded once.  Reports uploads/s,
MB/s both ways, and the ratio new/old.  Starts its own PostgreSQL (fsync
on), stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.benchlib import postgresNode  # noqa: E402
from tests.store.postgres_fixture import PostgresServer, binDir  # noqa: E402

USER = ("alice@example.test", "alice-pw")


def auth():
    return "Basic " + base64.b64encode(f"{USER[0]}:{USER[1]}".encode()).decode()


def call(server, method, path, body=None, contentType="application/octet-stream"):
    c = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=120)
    try:
        c.request(method, path, body, {"Authorization": auth(), "Content-Type": contentType})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def run(server, count, size):
    from mailnet.jmap.core import accountIdFor

    account = accountIdFor(USER[0])
    blobs = [os.urandom(size) for _ in range(count)]
    call(server, "GET", "/.well-known/jmap")  # warm: the login cache, the first connection
    start = time.perf_counter()
    ids = []
    for data in blobs:
        status, body = call(server, "POST", f"/jmap/upload/{account}/", data)
        assert status == 201, body
        ids.append(json.loads(body)["blobId"])
    up = time.perf_counter() - start
    start = time.perf_counter()
    for blobId, data in zip(ids, blobs):
        status, body = call(server, "GET", f"/jmap/download/{account}/{blobId}/x.bin")
        assert status == 200 and body == data
    down = time.perf_counter() - start
    return count / up, count / down


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="a checkout of the old code (git archive trial24)")
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--size", type=int, default=256 * 1024)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bindir = binDir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = PostgresServer(bindir, fsync=True)
    scratch = tempfile.mkdtemp(prefix="mailnet-bench-uploads-")
    res = {"old up": [], "new up": [], "old down": [], "new down": []}
    load = [os.getloadavg()[0]]
    try:
        pg.init()
        pg.makeTemplate()
        for r in range(args.repeat):
            for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
                old = args.old if which == "old" else None
                config = {"auth": {"allow_plaintext": True}}
                with postgresNode(pg, os.path.join(scratch, f"{which}{r}"), config, old=old, user=USER) as server:
                    up, down = run(server, args.count, args.size)
                    res[f"{which} up"].append(up)
                    res[f"{which} down"].append(down)
                    print(f"run {r + 1} {which}: {up:.1f} uploads/s, {down:.1f} downloads/s", file=sys.stderr,
                          flush=True)
            load.append(os.getloadavg()[0])
    finally:
        pg.destroy()
        shutil.rmtree(scratch, ignore_errors=True)
    m = {k: statistics.median(v) for k, v in res.items()}
    mb = args.size / 1e6
    print(f"\n{args.count} uploads of {args.size} bytes, one client, median of {args.repeat}; "
          f"load average {load[0]:.1f} at the start, {load[-1]:.1f} at the end\n")
    print("| measure | old code (files in data_dir) | new code (PostgreSQL) | new / old |")
    print("|---|---|---|---|")
    for what in ("up", "down"):
        name = "upload (201 after fsync/commit)" if what == "up" else "download"
        print(f"| {name}, per s (MB/s) | {m['old ' + what]:.1f} ({m['old ' + what] * mb:.1f}) | "
              f"{m['new ' + what]:.1f} ({m['new ' + what] * mb:.1f}) | {m['new ' + what] / m['old ' + what]:.2f} |")


if __name__ == "__main__":
    main()
