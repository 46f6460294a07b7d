"""
IMAP SORT benchmark: mailnet beside Dovecot, on the same Maildir, in one run.

    /work/main/.venv/bin/python bench/imap_sort_bench.py [--count 2000] [--runs 5] [--keep]

What it does (the servers, the client and the Dovecot setup are those of
bench/imap_bench.py):

1. Starts mailnet and writes ``--count`` messages into a folder ``Sort``
   straight into the Maildir (subjects with Re:/Fwd:/[list] prefixes and
   encoded words, From/To with and without display names, Dates in
   several zones, some missing), then copies the Maildir for Dovecot and
   starts it.
2. Times, per server, the first ``SORT (DATE) UTF-8 ALL`` after the first
   SELECT (cold: mailnet reads every header, Dovecot fills its cache
   file), then in ``--runs`` rounds, alternating which server goes first,
   what a webmail list view does: connect, log in, SELECT, then one of
   ``SORT (DATE) UTF-8 ALL``, ``SORT (SUBJECT) UTF-8 ALL``,
   ``SORT (REVERSE DISPLAYFROM) UTF-8 ALL`` (only the SORT is timed).
3. Sorts once more by every key on both servers (untimed) and says where
   the orders differ; prints medians and the ratio mailnet / Dovecot
   (below 1.0: mailnet is faster).
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

from bench.imap_bench import (PASSWORD, USER, WORDS, Client, createFolders, dovecotOnCopy, text,  # noqa: E402
                              writeFolder)
from tests.harness import MailServer  # noqa: E402

NAMES = ["Alice Archer", "bob", "Chloé Dupont", "=?utf-8?q?J=C3=B6rg_M=C3=BCller?=", '"Smith, Jane"', "", "zed"]
ZONES = ["+0000", "-0500", "+0100", "+0530", "-0800"]
PREFIXES = ["", "", "Re: ", "RE: Re: ", "Fwd: ", "[list] ", "Re: [list] ", "=?utf-8?q?Re=3A_?=", "Re[2]: ",
            "re [x]: ", "FW: [a] [b] ", "[fwd: "]


def sortMessage(rng, i):
    name = rng.choice(NAMES)
    local = "user%d" % rng.randrange(300)
    frm = ("%s <%s@example.org>" % (name, local)) if name else "%s@example.org" % local
    if rng.random() < 0.05:
        frm = "%s@example.org (%s)" % (local, rng.choice(NAMES[:3]))
    subject = rng.choice(PREFIXES) + " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 5)))
    if subject.startswith("[fwd: "):
        subject += "]"
    if rng.random() < 0.1:
        subject += " (fwd)"
    if rng.random() < 0.02:
        subject = rng.choice(["[PATCH]", "[a] [b]", "Re:", "", "=?utf-8?q?=C3=84rger?=", "\u00e9t\u00e9"])
    head = "From: %s\r\nTo: %s <dest%d@example.test>\r\nSubject: %s\r\n" % (frm, rng.choice(NAMES) or "Dest",
                                                                            rng.randrange(50), subject)
    if rng.random() < 0.4:
        head += "Cc: %s <cc%d@example.net>, other@example.net\r\n" % (rng.choice(NAMES) or "Copy", rng.randrange(80))
    if rng.random() < 0.97:
        head += "Date: %s, %d %s 2024 %02d:%02d:%02d %s\r\n" % (
            rng.choice(["Mon", "Tue", "Wed"]), rng.randrange(1, 29), rng.choice(["Jan", "Feb", "Mar"]),
            rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.choice(ZONES))
    head += "Message-ID: <%d.%d@bench.example>\r\n" % (i, rng.randrange(1 << 30))
    return (head + "\r\n" + text(rng, 60)).encode()


def timeSort(port, command, select=b"Sort"):
    c = Client(port)
    c.login()
    c.command(b"SELECT " + select)
    t = time.perf_counter()
    lines, _, _ = c.command(command)
    elapsed = time.perf_counter() - t
    c.close()
    found = [l for l in lines if l.startswith(b"* SORT")]
    return elapsed, found[0].split()[2:] if found else []


COMMANDS = [("SORT (DATE)", b"SORT (DATE) UTF-8 ALL"), ("SORT (SUBJECT)", b"SORT (SUBJECT) UTF-8 ALL"),
            ("SORT (REVERSE DISPLAYFROM)", b"SORT (REVERSE DISPLAYFROM) UTF-8 ALL")]


CHECK_KEYS = ["ARRIVAL", "SIZE", "DATE", "SUBJECT", "FROM", "TO", "CC", "DISPLAYFROM", "DISPLAYTO",
              "REVERSE SUBJECT", "SUBJECT DATE"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    if shutil.which("dovecot") is None:
        sys.exit("dovecot is not installed (apt-get install dovecot-imapd)")
    run = tempfile.mkdtemp(prefix="imapsortbench-")
    os.chmod(run, 0o755)
    print("run directory:", run)
    server = MailServer(os.path.join(run, "mailnet"), config={
        "store": {"backend": "maildir"},
        "auth": {"allow_plaintext": True, "failure_delay": 0.05},
    })
    dovecot = None
    try:
        server.start()
        server.addUser(USER, PASSWORD)
        port = server.port("imap")
        createFolders(port, b"Sort")
        writeFolder(server.maildir(USER, "Sort"), args.count, sortMessage, 7)
        timeSort(port, b"NOOP")  # mailnet indexes the folder at its first SELECT
        dovecot = dovecotOnCopy(run, server)
        dovecot.start()
        timeSort(dovecot.port, b"NOOP")
        servers = [("mailnet", port), ("dovecot", dovecot.port)]
        cold = {}
        for name, p in servers:
            cold[name] = timeSort(p, b"SORT (DATE) UTF-8 ALL")[0]
        print("first SORT (DATE), cold: " + ", ".join("%s %.3fs" % kv for kv in cold.items()))
        samples = {name: {label: [] for label, _ in COMMANDS} for name, _ in servers}
        orders = {}
        for n in range(args.runs):
            for name, p in (servers if n % 2 == 0 else servers[::-1]):
                for label, command in COMMANDS:
                    elapsed, order = timeSort(p, command)
                    assert len(order) == args.count, (name, label, len(order))
                    samples[name][label].append(elapsed)
                    orders[(name, label)] = order
        # Every key once more, untimed: do the two servers agree?
        for key in CHECK_KEYS:
            command = b"SORT (" + key.encode() + b") UTF-8 ALL"
            orders[("mailnet", key)] = timeSort(port, command)[1]
            orders[("dovecot", key)] = timeSort(dovecot.port, command)[1]
        for label in [label for label, _ in COMMANDS] + CHECK_KEYS:
            mine, theirs = orders[("mailnet", label)], orders[("dovecot", label)]
            differ = sum(1 for a, b in zip(mine, theirs) if a != b)
            print("%s: %s" % (label, "same order as Dovecot" if mine == theirs else
                              "the orders differ at %d of %d positions" % (differ, args.count)))
    finally:
        if dovecot is not None:
            dovecot.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    print()
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    print("| measurement, %d messages | mailnet | Dovecot | ratio (mailnet / Dovecot) |" % args.count)
    print("|---|---|---|---|")
    print("| first SORT (DATE), cold | %.3f s | %.3f s | %.2f |" % (cold["mailnet"], cold["dovecot"],
                                                                 cold["mailnet"] / cold["dovecot"]))
    for label, _ in COMMANDS:
        m = statistics.median(samples["mailnet"][label])
        d = statistics.median(samples["dovecot"][label])
        print("| %s, warm | %.4f s | %.4f s | %.2f |" % (label, m, d, m / d))


if __name__ == "__main__":
    main()
