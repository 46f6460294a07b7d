"""
RFC 5267 contexts (SEARCH/SORT RETURN (UPDATE)): mailnet beside Dovecot,
on the same Maildir, in one run.

    .venv/bin/python bench/imap_context_bench.py [--count 2000] [--runs 30]

1. Writes ``--count`` messages (those of bench/imap_sort_bench.py) into a
   folder ``Ctx``, copies the Maildir for Dovecot and starts it.
2. On each server, session A keeps three contexts (``UID SEARCH RETURN
   (UPDATE) FLAGGED``, ``SEARCH RETURN (UPDATE COUNT) UNSEEN``, ``UID SORT
   RETURN (UPDATE) (DATE) UTF-8 UNSEEN``; Dovecot 2.3 has no CONTEXT=SORT, so not the last there) while session B flags, marks
   seen, appends and expunges; after each change A sends NOOP.  The
   ESEARCH update lines of the two servers are compared (tags made
   alike) and the differences printed.
3. ``--runs`` rounds, alternating which server goes first: B toggles
   \\Flagged on a message, A's NOOP (which brings the update) is timed.
   Prints medians and the ratio mailnet / Dovecot (below 1: faster).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.imap_bench import PASSWORD, USER, Client, createFolders, dovecotOnCopy, writeFolder  # noqa: E402
from bench.imap_sort_bench import sortMessage  # noqa: E402
from tests.harness import MailServer  # noqa: E402

CONTEXTS = [("flagged", b"UID SEARCH RETURN (UPDATE) FLAGGED"),
            ("unseen-count", b"SEARCH RETURN (UPDATE COUNT) UNSEEN"),
            ("sorted-unseen", b"UID SORT RETURN (UPDATE) (DATE) UTF-8 UNSEEN")]


def sessions(port, contexts=CONTEXTS):
    a = Client(port)
    a.login()
    caps, _, _ = a.command(b"CAPABILITY")
    sortContexts = b"CONTEXT=SORT" in b"".join(caps)
    a.command(b"SELECT Ctx")
    tags = {}
    for label, command in contexts:
        if b"SORT" in command and not sortContexts:
            continue  # Dovecot 2.3 does not advertise it (and its imap process crashed when asked)
        a.command(command)
        tags[b"b%d" % a.n] = label
    b = Client(port)
    b.login()
    b.command(b"SELECT Ctx")
    return a, b, tags


def updates(lines, tags):
    """The ESEARCH lines of the contexts, tags replaced by their labels."""
    out = []
    for line in lines:
        m = re.match(rb'\* ESEARCH \(TAG "([^"]+)"\)(.*)\r\n', line)
        if m and m.group(1) in tags:
            out.append(tags[m.group(1)] + m.group(2).decode())
    return out


def script(port, count):
    """The same changes on one server: [(what, the update lines A got)]."""
    a, b, tags = sessions(port)
    rng = random.Random(5)
    steps = []
    for i in range(4):
        uid = rng.randrange(1, count + 1)
        steps.append(("flag %d" % uid, b"UID STORE %d +FLAGS (\\Flagged)" % uid))
        steps.append(("seen %d" % uid, b"UID STORE %d +FLAGS (\\Seen)" % uid))
    steps.append(("unseen 1:3", b"UID STORE 1:3 -FLAGS (\\Seen)"))
    steps.append(("append", None))
    steps.append(("expunge 5", b"UID STORE 5 +FLAGS (\\Deleted \\Flagged)"))
    steps.append(("expunge 5 (2)", b"UID EXPUNGE 5"))
    out = []
    for what, command in steps:
        if command is None:
            msg = sortMessage(rng, count + 1)
            b.send(b"ap APPEND Ctx {%d+}\r\n" % len(msg) + msg)
            b.read(b"ap")
        else:
            b.command(command)
        lines, _, _ = a.command(b"NOOP")
        out.append((what, updates(lines, tags)))
    a.close()
    b.close()
    return out


def timeUpdates(port, rounds):
    a, b, tags = sessions(port)
    b.command(b"UID STORE 1000:1100 -FLAGS (\\Flagged)")
    a.command(b"NOOP")
    samples = []
    for n in range(rounds):
        b.command(b"UID STORE %d %sFLAGS (\\Flagged)" % (1000 + n // 2, b"+" if n % 2 == 0 else b"-"))
        t = time.perf_counter()
        lines, _, _ = a.command(b"NOOP")
        samples.append(time.perf_counter() - t)
        assert updates(lines, tags), lines
    a.close()
    b.close()
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    if shutil.which("dovecot") is None:
        sys.exit("dovecot is not installed (apt-get install dovecot-imapd)")
    run = tempfile.mkdtemp(prefix="imapctxbench-")
    print("run directory:", run)
    os.chmod(run, 0o755)
    server = MailServer(os.path.join(run, "mailnet"), config={
        "store": {"backend": "maildir"}, "auth": {"allow_plaintext": True, "failure_delay": 0.05}})
    dovecot = None
    try:
        server.start()
        server.addUser(USER, PASSWORD)
        port = server.port("imap")
        createFolders(port, b"Ctx")
        writeFolder(server.maildir(USER, "Ctx"), args.count, sortMessage, 7)
        dovecot = dovecotOnCopy(run, server)
        dovecot.start()
        servers = [("mailnet", port), ("dovecot", dovecot.port)]
        for name, p in servers:
            c = Client(p)
            c.login()
            caps, _, _ = c.command(b"CAPABILITY")
            print("%s: CONTEXT=SEARCH %s, CONTEXT=SORT %s" % (
                name, b"CONTEXT=SEARCH" in b"".join(caps), b"CONTEXT=SORT" in b"".join(caps)))
            c.close()
        # The same changes on both servers (run before the timing, which changes \Seen).
        seen = {name: script(p, args.count) for name, p in servers}
        same = 0
        for (what, mine), (_, theirs) in zip(seen["mailnet"], seen["dovecot"]):
            mine = [line for line in mine if not line.startswith("sorted")]  # Dovecot has no CONTEXT=SORT
            if mine == theirs:
                same += 1
            else:
                print("after %s:\n  mailnet: %s\n  dovecot: %s" % (what, mine, theirs))
        print("update lines the same as Dovecot's after %d of %d changes" % (same, len(seen["mailnet"])))
        samples = {name: [] for name, _ in servers}
        for n in range(2):
            for name, p in (servers if n % 2 == 0 else servers[::-1]):
                samples[name] += timeUpdates(p, args.runs // 2)
    finally:
        if dovecot is not None:
            dovecot.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    m = statistics.median(samples["mailnet"])
    d = statistics.median(samples["dovecot"])
    print("| %d messages, 3 contexts (Dovecot: 2) | mailnet | Dovecot | ratio (mailnet / Dovecot) |" % args.count)
    print("|---|---|---|---|")
    print("| NOOP bringing the update of a \\Flagged change | %.4f s | %.4f s | %.2f |" % (m, d, m / d))


if __name__ == "__main__":
    main()
