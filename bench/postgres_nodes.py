#!/usr/bin/env python3
"""
SMTP durable acceptance with 1, 2 and 3 mailnet nodes on one PostgreSQL,
same run, and where the CPU goes.

    /work/main/.venv/bin/python bench/postgres_nodes.py [--messages 600] [--sessions 12] [--repeat 2]

Starts its own PostgreSQL (Unix socket, fsync on) and, per measurement, 1 to
3 mailnet nodes on one fresh database; ``--sessions`` smtplib clients spread
round-robin over the nodes send 4 KB messages.  Reports messages/s, the CPU
seconds the nodes and the PostgreSQL processes used per message, and from
the database's CPU per message an estimate of messages/s per database core.
On a 2-core machine more nodes cannot bring more throughput: the point is
where the bottleneck is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from postgres_vs_maildir import USER, message  # noqa: E402

from tests.harness import MailServer  # noqa: E402
from tests.store.postgres_fixture import PostgresServer, binDir  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpuOf(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def postgresCpu(pg):
    """CPU seconds of the postmaster and its children (backends, WAL writer...) so far."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        master = int(f.readline())
    total = cpuOf(master)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            if ppid == master:
                total += cpuOf(int(entry))
    return total


def load(nodes, messages, sessions):
    per = messages // sessions
    errors = []

    def client(k):
        import smtplib

        node = nodes[k % len(nodes)]
        try:
            with smtplib.SMTP("127.0.0.1", node.port("smtp"), timeout=120) as s:
                for i in range(per):
                    s.sendmail("load@remote.test", [USER[0]], message(k * per + i))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(sessions)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"SMTP clients failed: {errors[0]!r}")
    return per * sessions, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--sessions", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    bindir = binDir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = PostgresServer(bindir, fsync=True)
    scratch = tempfile.mkdtemp(prefix="mailnet-bench-nodes-")
    rows = {}
    try:
        pg.init()
        pg.makeTemplate()
        for r in range(args.repeat):
            for count in (1, 2, 3):
                dbname = pg.newDatabase()
                config = {"limits": {"connections_per_ip": 1000}, "store": {"backend": "postgres"},
                          "postgres": {"host": pg.dir, "port": pg.port, "dbname": dbname}}
                nodes = [MailServer(os.path.join(scratch, f"r{r}n{count}-{k}"), config=config) for k in range(count)]
                try:
                    for node in nodes:
                        node.start()
                        node.addUser(*USER)
                    cpu0 = [cpuOf(n.process.pid) for n in nodes]
                    db0 = postgresCpu(pg)
                    sent, elapsed = load(nodes, args.messages, args.sessions)
                    nodeCpu = sum(cpuOf(n.process.pid) - c for n, c in zip(nodes, cpu0))
                    dbCpu = postgresCpu(pg) - db0
                finally:
                    for node in nodes:
                        node.stop()
                    pg.dropDatabase(dbname)
                rate = sent / elapsed
                rows.setdefault(count, []).append((rate, nodeCpu / sent * 1000, dbCpu / sent * 1000))
                print(f"run {r + 1}, {count} node(s): {rate:.0f} msgs/s", file=sys.stderr, flush=True)
    finally:
        pg.destroy()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.messages} messages of 4 KB, {args.sessions} SMTP sessions spread over the nodes, "
          f"median of {args.repeat}, {os.cpu_count()} cores\n")
    print("| nodes | msgs/s | node CPU ms/msg | PostgreSQL CPU ms/msg | msgs/s per database core (estimate) |")
    print("|---|---|---|---|---|")
    for count, values in rows.items():
        rate, node, db = (statistics.median(v[i] for v in values) for i in range(3))
        print(f"| {count} | {rate:.0f} | {node:.2f} | {db:.2f} | {1000 / db:.0f} |")


if __name__ == "__main__":
    main()
