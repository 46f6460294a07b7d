"""
NOTIFY (RFC 5465) latency: mailnet beside Dovecot, in one run.

    .venv/bin/python bench/imap_notify.py [--rounds 40] [--watchers 1,20] [--runs 3]

``--watchers`` sessions of one user log in, SELECT INBOX and set
``NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (PERSONAL (MessageNew
MessageExpunge))``, then wait without a command (no IDLE).  Another
session APPENDs ``--rounds`` small messages, alternately to a folder Side
(the watchers get ``* STATUS Side ...``) and to INBOX (``* n EXISTS``).  The
measure is the time from sending the APPEND to the last watcher having
read its notification (a round where some watcher had none within 5 s
counts as missed) (the watchers are read one after the other; the
time of the last is the latest arrival), as median and 90th percentile,
per kind.  Both servers run on copies of the same Maildir, each run
measures both, in alternating order; Dovecot runs with
``mailbox_list_index = yes``, which its NOTIFY for other mailboxes needs.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from imap_bench import PASSWORD, USER, Client, createFolders, dovecotOnCopy  # noqa: E402

from tests.harness import MailServer  # noqa: E402

NOTIFY = b"NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (PERSONAL (MessageNew MessageExpunge))"


def message(n):
    return (b"From: bench@example.test\r\nTo: bench@example.test\r\nSubject: notify %d\r\n"
            b"Message-ID: <notify%d@example.test>\r\n\r\nbody %d\r\n" % (n, n, n))


def waitLine(client, test, timeout):
    """Read the lines the server sends unasked until one passes ``test``; None after ``timeout`` seconds."""
    buf = client.__dict__.setdefault("pending", b"")
    deadline = time.perf_counter() + timeout
    while True:
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            if test(line + b"\r\n"):
                client.pending = buf
                return line
        left = deadline - time.perf_counter()
        if left <= 0 or not select.select([client.sock], [], [], left)[0]:
            client.pending = buf
            return None
        data = client.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed")
        buf += data


def measure(port, watchers, rounds, timeout=5.0):
    """{kind: [seconds per round]} for kind "status" (another mailbox) and "exists" (the selected one)."""
    clients = []
    for _ in range(watchers):
        c = Client(port, timeout=30)
        c.login()
        c.command(b"SELECT INBOX")
        _, _, tagged = c.command(NOTIFY)
        clients.append(c)
    writer = Client(port, timeout=30)
    writer.login()
    times = {"status": [], "exists": []}
    missed = {"status": 0, "exists": 0}
    try:
        for n in range(rounds):
            box = b"Side" if n % 2 == 0 else b"INBOX"
            data = message(n)
            start = time.perf_counter()
            writer.n += 1
            tag = b"w%d" % writer.n
            writer.sock.sendall(b"%s APPEND %s {%d+}\r\n" % (tag, box, len(data)) + data + b"\r\n")
            kind = "status" if box == b"Side" else "exists"
            got = True
            deadline = start + timeout
            for c in clients:
                if box == b"Side":
                    line = waitLine(c, lambda line: line.startswith((b"* STATUS Side", b'* STATUS "Side"')),
                                    deadline - time.perf_counter())
                else:
                    line = waitLine(c, lambda line: line.endswith(b" EXISTS\r\n"), deadline - time.perf_counter())
                got = got and line is not None
            if got:
                times[kind].append(time.perf_counter() - start)
            else:
                missed[kind] += 1
            writer.read(tag)
    finally:
        for c in clients:
            c.close()
        writer.close()
    return times, missed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--watchers", default="1,20")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("dovecot") is None:
        sys.exit("dovecot is not installed (apt-get install dovecot-imapd)")
    run = tempfile.mkdtemp(prefix="imapnotify-")
    os.chmod(run, 0o755)
    server = MailServer(os.path.join(run, "mailnet"), config={
        "store": {"backend": "maildir"},
        "auth": {"allow_plaintext": True, "failure_delay": 0.05},
        "limits": {"connections": 5000, "connections_per_ip": 5000, "imap_connections_per_user": 5000},
    })
    dovecot = None
    try:
        server.start()
        server.addUser(USER, PASSWORD)
        createFolders(server.port("imap"), b"Side")
        dovecot = dovecotOnCopy(run, server)
        with open(os.path.join(dovecot.run, "dovecot.conf"), "a") as f:
            f.write("mailbox_list_index = yes\n")
        dovecot.start()
        servers = [("mailnet", server.port("imap")), ("dovecot", dovecot.port)]
        results = {}
        misses = {}
        for watchers in [int(w) for w in args.watchers.split(",")]:
            for n in range(args.runs):
                for name, port in (servers if n % 2 == 0 else servers[::-1]):
                    times, missed = measure(port, watchers, args.rounds)
                    for kind, values in times.items():
                        results.setdefault((watchers, kind, name), []).extend(values)
                        misses[(watchers, kind, name)] = misses.get((watchers, kind, name), 0) + missed[kind]
        load = os.getloadavg()[0]
        print("load average at the end: %.1f" % load)
        print("%-8s %-7s %12s %12s %12s %12s %8s" % ("watchers", "kind", "mailnet p50", "dovecot p50",
                                                     "mailnet p90", "dovecot p90", "p50 ratio"))
        for watchers in [int(w) for w in args.watchers.split(",")]:
            for kind in ("status", "exists"):
                m = sorted(results[(watchers, kind, "mailnet")])
                d = sorted(results[(watchers, kind, "dovecot")])
                lost = "missed (none within 5 s): mailnet %d, dovecot %d" % (
                    misses[(watchers, kind, "mailnet")], misses[(watchers, kind, "dovecot")])
                if not m or not d:
                    print("%-8d %-7s %s" % (watchers, kind, lost))
                    continue
                mp50, dp50 = statistics.median(m), statistics.median(d)
                mp90, dp90 = m[int(len(m) * 0.9)], d[int(len(d) * 0.9)]
                print("%-8d %-7s %10.1fms %10.1fms %10.1fms %10.1fms %8.2f" % (
                    watchers, kind, mp50 * 1000, dp50 * 1000, mp90 * 1000, dp90 * 1000, mp50 / dp50), lost)
    finally:
        if dovecot is not None:
            dovecot.stop()
        server.stop()
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
