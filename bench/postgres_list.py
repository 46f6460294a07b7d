#!/usr/bin/env python3
"""
The PostgreSQL message list index (docs/store.md "Message list index"),
two source trees A/B in one run, rounds alternating (A B, B A, ...).

    .venv/bin/python bench/postgres_list.py A=/tmp/main-tree B=. [--messages 2000] [--sessions 8] [--repeat 3]

Starts its own PostgreSQL (Unix socket, fsync on).  Per tree and round,
on a fresh database made by that tree's ``mailnet db init``, one node:

1. SMTP durable acceptance: ``--messages`` 4 KB messages to one account
   over ``--sessions`` smtplib sessions: messages/s, and the node's and
   PostgreSQL's CPU per message;
2. the first JMAP request of the node (``Email/query`` newest 50 plus
   ``Email/get`` of their list fields, one HTTP request), then the node
   restarted and the first request again, then a second one; then the
   node restarted again, a ``Core/echo`` first (the login, the session,
   what every first request costs) and then the page.

Then, for trees whose schema has ``body_summaries``: the table dropped
(a version 6 database) and ``mailnet db upgrade`` timed (it reads every
body once and fills the index).  Reports medians and the load average.
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
sys.path.insert(0, os.path.join(ROOT, "bench"))

from postgres_nodes import cpuOf, load, postgresCpu  # noqa: E402
from postgres_vs_maildir import USER  # noqa: E402

import tests.harness as harness  # noqa: E402
from tests.harness import MailServer  # noqa: E402
from tests.store.postgres_fixture import PostgresServer, binDir  # noqa: E402

CORE, MAIL = "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"


class TreeServer(MailServer):
    """A MailServer running the code of another source tree."""

    def __init__(self, tree, *args, **kw):
        super().__init__(*args, **kw)
        self.tree = tree

    def _inTree(self, f, *args, **kw):
        saved, harness.ROOT = harness.ROOT, self.tree
        try:
            return f(*args, **kw)
        finally:
            harness.ROOT = saved

    def start(self, timeout=120):
        return self._inTree(super().start, timeout)

    def mailnet(self, *args, **kw):
        return self._inTree(super().mailnet, *args, **kw)


def echo(server):
    """Seconds for one JMAP request that touches no mail (login, session, HTTP)."""
    return request(server, {"using": [CORE], "methodCalls": [["Core/echo", {"hello": True}, "e"]]})[0]


def request(server, payload):
    body = json.dumps(payload).encode()
    auth = base64.b64encode(f"{USER[0]}:{USER[1]}".encode()).decode()
    start = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=600)
    c.request("POST", "/jmap/api/", body, {"Content-Type": "application/json", "Authorization": "Basic " + auth})
    r = c.getresponse()
    data = json.loads(r.read())
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed, data


def firstPage(server):
    """Seconds for one JMAP request: the newest 50 ids and their list fields."""
    from mailnet.jmap.core import accountIdFor

    aid = accountIdFor(USER[0])
    elapsed, data = request(server, {"using": [CORE, MAIL], "methodCalls": [
        ["Email/query", {"accountId": aid, "sort": [{"property": "receivedAt", "isAscending": False}],
                         "limit": 50, "calculateTotal": True}, "q"],
        ["Email/get", {"accountId": aid, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                       "properties": ["subject", "from", "preview", "keywords", "receivedAt"]}, "g"]]})
    query, get = data["methodResponses"][0][1], data["methodResponses"][1][1]
    assert len(get["list"]) == 50 and all(e["subject"].startswith("bench ") for e in get["list"]), data
    return elapsed, query.get("total")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="+", help="NAME=path of a source tree")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    trees = [(t.split("=", 1)[0], os.path.abspath(t.split("=", 1)[1])) for t in args.trees]
    bindir = binDir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = PostgresServer(bindir, fsync=True)
    scratch = tempfile.mkdtemp(prefix="mailnet-bench-list-")
    rows = {name: [] for name, _ in trees}
    fills = []
    loads = [os.getloadavg()[0]]
    try:
        pg.init()
        for r in range(args.repeat):
            order = trees if r % 2 == 0 else list(reversed(trees))
            for name, tree in order:
                dbname = pg.newDatabase(schema=False)
                config = {"limits": {"connections_per_ip": 1000}, "store": {"backend": "postgres"},
                          "auth": {"allow_plaintext": True},
                          "postgres": {"host": pg.dir, "port": pg.port, "dbname": dbname}}
                node = TreeServer(tree, os.path.join(scratch, f"r{r}-{name}"), config=config)
                node.mailnet("db", "init")
                try:
                    node.start()
                    node.addUser(*USER)
                    cpu0, db0 = cpuOf(node.process.pid), postgresCpu(pg)
                    sent, elapsed = load([node], args.messages, args.sessions)
                    nodeCpu, dbCpu = cpuOf(node.process.pid) - cpu0, postgresCpu(pg) - db0
                    fresh, total = firstPage(node)
                    assert total == sent, (total, sent)
                    node.stop()
                    node.start()
                    restarted, _ = firstPage(node)
                    again, _ = firstPage(node)
                    node.stop()
                    node.start()  # once more: a request without mail first, then the page
                    login = echo(node)
                    afterLogin, _ = firstPage(node)
                    node.stop()
                    if name == trees[-1][0] and r == 0:
                        with pg.connect(dbname) as conn:
                            has = conn.execute("SELECT to_regclass('body_summaries')").fetchone()[0]
                            if has:
                                conn.execute("DROP TABLE body_summaries")
                                conn.execute("DROP INDEX messages_received")
                                conn.execute("DROP INDEX messages_folder_received")
                                conn.execute("UPDATE mailnet_schema SET version = 6")
                        if has:
                            t0 = time.perf_counter()
                            out = node.mailnet("db", "upgrade").stdout
                            fills.append((name, sent, time.perf_counter() - t0, out.strip()))
                finally:
                    node.stop()
                    pg.dropDatabase(dbname)
                rows[name].append((sent / elapsed, nodeCpu / sent * 1000, dbCpu / sent * 1000,
                                   fresh * 1000, restarted * 1000, again * 1000, login * 1000, afterLogin * 1000))
                loads.append(os.getloadavg()[0])
                print(f"round {r + 1} {name}: {sent / elapsed:.0f} msgs/s; first page {fresh * 1000:.0f} ms, "
                      f"after a restart {restarted * 1000:.0f} ms, again {again * 1000:.0f} ms; restarted, "
                      f"Core/echo {login * 1000:.0f} ms then the page {afterLogin * 1000:.0f} ms",
                      file=sys.stderr, flush=True)
    finally:
        pg.destroy()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.messages} messages of 4 KB to one account over {args.sessions} SMTP sessions, one node, "
          f"PostgreSQL fsync on; median of {args.repeat} rounds alternating the trees; {os.cpu_count()} cores, "
          f"load average (1 min) {min(loads):.1f} to {max(loads):.1f}\n")
    print("| tree | SMTP msgs/s | node CPU ms/msg | PostgreSQL CPU ms/msg | first JMAP page, fresh node (ms) "
          "| first page after a restart (ms) | next page (ms) | restarted: Core/echo first (ms) | then the page (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, values in rows.items():
        med = [statistics.median(v[i] for v in values) for i in range(8)]
        print(f"| {name} | {med[0]:.0f} | {med[1]:.2f} | {med[2]:.2f} | {med[3]:.0f} | {med[4]:.0f} | {med[5]:.0f} "
              f"| {med[6]:.0f} | {med[7]:.0f} |")
    if len(trees) == 2:
        (a, va), (b, vb) = rows.items()
        ratio = [statistics.median(v[i] for v in vb) / statistics.median(v[i] for v in va) for i in range(8)]
        print(f"\n{b}/{a}: SMTP msgs/s x{ratio[0]:.2f}, node CPU/msg x{ratio[1]:.2f}, PostgreSQL CPU/msg "
              f"x{ratio[2]:.2f}, first page after a restart x{ratio[4]:.3f} (after a Core/echo x{ratio[7]:.3f})")
    for name, sent, seconds, out in fills:
        print(f"\n{name}: `mailnet db upgrade` 6 -> 7 with {sent} messages: {seconds:.1f} s in all "
              f"({seconds / sent * 1000:.2f} s per 1,000 messages, process start included): {out}")


if __name__ == "__main__":
    main()
