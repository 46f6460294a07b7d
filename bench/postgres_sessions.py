#!/usr/bin/env python3
"""
The webmail's cookie sessions on a PostgreSQL-backed node: the old code
(sessions in the node's memory, not shared) against this code (sessions
in the database, shared by the nodes: a query per cookie request), same
run, alternating rounds:

    .venv/bin/python bench/postgres_sessions.py --old /tmp/main-archive [--logins 30] [--requests 300] [--repeat 3]

Each round: ``--logins`` logins through /webmail/login (each one a new
session), then ``--requests`` JMAP ``Core/echo`` calls with the cookie and
its CSRF token on one keep-alive connection.  Reports logins/s,
requests/s and the ratio new/old.  Starts its own PostgreSQL (fsync on),
stopped at the end.
"""

from __future__ import annotations

import argparse
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
ECHO = json.dumps({"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {"a": 1}, "0"]]})


def login(server):
    c = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=120)
    try:
        c.request("POST", "/webmail/login", json.dumps({"username": USER[0], "password": USER[1]}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, body
        return r.getheader("set-cookie").split(";")[0], json.loads(body)["csrf"]
    finally:
        c.close()


def run(server, logins, requests):
    login(server)  # warm: the first connection, the login path
    start = time.perf_counter()
    for _ in range(logins):
        cookie, csrf = login(server)
    logged = time.perf_counter() - start
    c = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=120)
    headers = {"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": "application/json"}
    try:
        start = time.perf_counter()
        for _ in range(requests):
            c.request("POST", "/jmap/api/", ECHO, headers)
            r = c.getresponse()
            body = r.read()
            assert r.status == 200, body
        asked = time.perf_counter() - start
    finally:
        c.close()
    return logins / logged, requests / asked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="a checkout of the old code (git archive trial24)")
    ap.add_argument("--logins", type=int, default=30)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bindir = binDir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = PostgresServer(bindir, fsync=True)
    scratch = tempfile.mkdtemp(prefix="mailnet-bench-sessions-")
    res = {"old login": [], "new login": [], "old request": [], "new request": []}
    load = [os.getloadavg()[0]]
    try:
        pg.init()
        pg.makeTemplate()
        for r in range(args.repeat):
            for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
                old = args.old if which == "old" else None
                config = {"auth": {"allow_plaintext": True}}
                with postgresNode(pg, os.path.join(scratch, f"{which}{r}"), config, old=old, user=USER) as server:
                    logins, requests = run(server, args.logins, args.requests)
                    res[f"{which} login"].append(logins)
                    res[f"{which} request"].append(requests)
                    print(f"run {r + 1} {which}: {logins:.1f} logins/s, {requests:.1f} cookie requests/s",
                          file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
    finally:
        pg.destroy()
        shutil.rmtree(scratch, ignore_errors=True)
    m = {k: statistics.median(v) for k, v in res.items()}
    print(f"\n{args.logins} webmail logins, then {args.requests} JMAP Core/echo calls with the cookie, one client, "
          f"median of {args.repeat}; load average {load[0]:.1f} at the start, {load[-1]:.1f} at the end\n")
    print("| measure | old code (sessions in memory) | new code (PostgreSQL) | new / old |")
    print("|---|---|---|---|")
    for what, name in (("login", "logins/s (argon2 and the session row)"), ("request", "cookie requests/s")):
        print(f"| {name} | {m['old ' + what]:.1f} | {m['new ' + what]:.1f} | {m['new ' + what] / m['old ' + what]:.2f} |")


if __name__ == "__main__":
    main()
