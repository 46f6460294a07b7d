#!/usr/bin/env python3
"""
CPU per message of mail authentication, as a ratio against the same server
without it, in one run (interleaved repetitions, fresh server each time):

* ``mx``: 4 KB messages DKIM-signed by a.test arrive on the MX (MAIL FROM
  a.test from 127.0.0.1) for a local user; ``off`` = ``[mailauth] inbound =
  false``, ``on`` = SPF + DKIM verification + DMARC, the records served by
  the test DNS server (tests/queue/dnsserver.py, its own process: its CPU is
  not counted, as a real resolver's would not be).
* ``from``: the same mail on the MX with ``inbound = false``: ``off`` =
  ``local_spoofing = "label"`` (no filter), ``on`` = ``"reject"``, the
  default (the message is held for the From rule).  ``mx off`` includes
  that rule too.
* ``sign``: 4 KB messages submitted with AUTH by a local user to a local
  user; ``off`` = no DKIM key, ``on`` = an RSA-2048 key; ``sign-ed25519``:
  an Ed25519 key only; ``sign-both``: RSA and Ed25519, two signatures
  (``sign-ed`` is its old name).

CPU is the server process's (all its threads: reactor, store, mailauth
pool) from /proc, measured after a warm-up, divided by the messages sent;
the reactor thread's share is given apart (the checks and signing of a
4 KB message run there, the store's writes and fsyncs in its threads).
Clients are separate processes (bench/smtpshapes.py) so they do not share
the server's CPU accounting; ``--shape``: ``persistent`` sessions (the
default), a new ``connection`` per message (EHLO, MAIL, RCPT, DATA, QUIT)
or ``starttls`` per message (a new connection, EHLO, STARTTLS, EHLO), on
the smtp listener's development certificate; with AUTH for the signing
workloads (on the submission listener).  Each round runs every workload
off and on (the order alternating from round to round); the on/off ratio
is given per round and as the median of the rounds' ratios, next to the
ratio of the medians.

Before and after the server runs, the breakdown (bench/mailauth_parts.py):
the RSA-2048 operation (``openssl speed`` and ``cryptography``), Ed25519,
signing, and the check's parts (SPF, DKIM verification, DMARC, the
Authentication-Results field, the whole check with cached answers), each
in µs of CPU in this process.  For the signing workloads the floor that
the signature operations alone set is printed: (off + operations) / off.

    /work/main/.venv/bin/python bench/mailauth_bench.py [--messages 1000] [--sessions 4] [--repeat 3]
        [--shape persistent|connection|starttls]
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

from tests.harness import MailServer  # noqa: E402
from tests.mailauth.helpers import ZoneServer, txtOf  # noqa: E402

from mailauth_parts import breakdown  # noqa: E402 (bench/)
from smtpshapes import SHAPES, load  # noqa: E402 (bench/)

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid, tid=None):
    """CPU seconds of the process (all threads), or of one thread (``tid``; the reactor's is the pid)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def body4k():
    line = "The quick brown fox jumps over the lazy dog, again and again, 0123456789.\r\n"  # 76 bytes
    return line * 50  # about 3.8 KB, with the header 4 KB


def message(n):
    return (f"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: bench {n}\r\n"
            f"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{n}@a.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body4k()).encode()


def makeKeys(scratch):
    """a.test's keys (made once with `mailnet dkim keygen`) and the zone that publishes them."""
    holder = MailServer(os.path.join(scratch, "keys"), config={"domains": {"local": ["a.test"]}})
    zone = {
        "a.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "_dmarc.a.test": {"TXT": ["v=DMARC1; p=reject"]},
    }
    for algorithm, selector in (("rsa", "rsa1"), ("ed25519", "ed1")):
        name, value = txtOf(holder.mailnet("dkim", "keygen", "a.test", "--selector", selector,
                                           "--algorithm", algorithm).stdout)
        zone[name] = {"TXT": [value]}
    return os.path.join(holder.dataDir, "dkim", "a.test"), zone


def signedMessage(keyDir):
    from mailnet.mailauth import dkimsign, keys

    found = [k for k in keys.loadAll(os.path.dirname(os.path.dirname(keyDir)))["a.test"] if k.algorithm == "rsa"]
    data = message(0)
    return dkimsign.sign(data, found) + data


def run(workload, mode, scratch, keyDir, dnsPort, signed, args, n):
    directory = os.path.join(scratch, f"{workload}-{mode}-{n}")
    nameservers = {"nameservers": [f"127.0.0.1:{dnsPort}"], "timeout": 2}
    if workload == "from":  # inbound off; off = local_spoofing label (no filter), on = reject (the From rule)
        config = {"server": {"hostname": "mx.b.test"}, "domains": {"local": ["b.test"]},
                  "mailauth": {"inbound": False, "local_spoofing": "reject" if mode == "on" else "label"},
                  "dns": nameservers}
    elif workload == "mx":
        config = {"server": {"hostname": "mx.b.test"}, "domains": {"local": ["b.test"]},
                  "mailauth": {"inbound": mode == "on"}, "dns": nameservers}
    else:
        config = {"server": {"hostname": "mx.a.test"}, "domains": {"local": ["a.test"]},
                  "auth": {"allow_plaintext": True, "cache_seconds": 300}, "dns": nameservers}
    server = MailServer(directory, config=config)
    if workload.startswith("sign") and mode == "on":
        target = os.path.join(server.dataDir, "dkim", "a.test")
        os.makedirs(target, mode=0o700)
        for name in os.listdir(keyDir):
            if (workload == "sign-both" or name.endswith(".rsa.key") and workload == "sign"
                    or name.endswith(".ed25519.key") and workload == "sign-ed25519"):
                shutil.copy2(os.path.join(keyDir, name), target)
    server.start()
    try:
        if workload in ("mx", "from"):
            server.addUser("bob@b.test", "bob-pw")
            send = dict(login=None, sender="alice@a.test", rcpt="bob@b.test", data=signed)
            port = server.port("smtp")
        else:
            server.addUser("alice@a.test", "alice-pw")
            server.addUser("bob@a.test", "bob-pw")
            send = dict(login=("alice@a.test", "alice-pw"), sender="alice@a.test", rcpt="bob@a.test",
                        data=message(1).replace(b"bob@b.test", b"bob@a.test"))
            port = server.port("submission")
        pid = server.process.pid
        load(port, args.sessions * 10, args.sessions, shape=args.shape, **send)  # warm-up (imports, pools, caches)
        before, reactorBefore, started = cpu(pid), cpu(pid, pid), time.monotonic()
        sent = load(port, args.messages, args.sessions, shape=args.shape, **send)
        used, took = cpu(pid) - before, time.monotonic() - started
        reactor = cpu(pid, pid) - reactorBefore
        stored = len(server.messageFiles(send["rcpt"]))
        assert stored == sent + args.sessions * 10, (stored, sent)
        if mode == "on" and workload != "from":
            with open(server.messageFiles(send["rcpt"])[-1], "rb") as f:
                head = f.read(4096)
            markers = {"mx": [b"dkim=pass"], "sign": [b"a=rsa-sha256"], "sign-ed25519": [b"a=ed25519-sha256"],
                       "sign-both": [b"a=rsa-sha256", b"a=ed25519-sha256"]}[workload]
            assert all(m in head for m in markers), head[:1500]
        return used / sent * 1e6, sent / took, reactor / sent * 1e6
    finally:
        server.stop()


def sessionsOf(shape):
    return {"persistent": "persistent sessions", "connection": "clients, a connection per message",
            "starttls": "clients, a connection and STARTTLS per message"}[shape]


def printParts(parts, title):
    hot, cold = parts
    print(f"\n{title}: CPU µs per call in this process, hot (medians of 5 x 300) and cold (after 8 MB read)")
    for name, us in hot.items():
        print(f"  {name:52} {'-' if us is None else f'{us:8.1f}'}"
              + (f" {cold[name]:8.1f}" if name in cold else ""))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", default="mx,sign,sign-ed25519,sign-both")
    p.add_argument("--shape", choices=SHAPES, default="persistent",
                   help="persistent sessions, a connection per message, or a connection and STARTTLS per message")
    p.add_argument("--no-parts", action="store_true", help="leave out the in-process breakdown")
    args = p.parse_args()
    scratch = tempfile.mkdtemp(prefix="mailauth-bench-")
    keyDir, zone = makeKeys(scratch)
    dns = ZoneServer(scratch, zone)
    signed = signedMessage(keyDir)
    print(f"message: {len(signed)} bytes signed ({len(message(0))} before); load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    workloads = [{"sign-ed": "sign-both"}.get(w, w) for w in args.only.split(",")]
    results = {(w, m): [] for w in workloads for m in ("off", "on")}
    ratios = {w: [] for w in workloads}
    loads = [os.getloadavg()[0]]
    parts = []
    try:
        if not args.no_parts:
            parts.append(breakdown(keyDir, zone, signed, message(1)))
            printParts(parts[0], "breakdown before the server runs")
        for n in range(args.repeat):
            for w in workloads:
                got = {}
                for mode in ("off", "on") if n % 2 == 0 else ("on", "off"):
                    us, rate, reactor = run(w, mode, scratch, keyDir, dns.port, signed, args, n)
                    got[mode] = us
                    results[(w, mode)].append((us, rate, reactor))
                    print(f"  {w:12} {mode:3} round {n + 1}: {us:7.0f} µs CPU/msg ({reactor:5.0f} on the reactor thread),"
                          f" {rate:6.0f} msg/s", flush=True)
                ratios[w].append(got["on"] / got["off"])
                print(f"  {w:12} round {n + 1} on/off {ratios[w][-1]:.2f} (load {os.getloadavg()[0]:.1f})",
                      flush=True)
            loads.append(os.getloadavg()[0])
        if not args.no_parts:
            parts.append(breakdown(keyDir, zone, signed, message(1)))
            printParts(parts[1], "breakdown after the server runs")
    finally:
        dns.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nmedians of {args.repeat} rounds, {args.messages} messages over {args.sessions} {sessionsOf(args.shape)}; "
          f"load average (1 min) {min(loads):.1f} to {max(loads):.1f}")
    print("| workload | CPU µs/msg off | on | on - off | on/off (medians) | on/off per round | median of rounds |"
          " reactor thread µs/msg off | on | msg/s off | on |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    medians = {}
    for w in workloads:
        off = statistics.median(x[0] for x in results[(w, "off")])
        on = statistics.median(x[0] for x in results[(w, "on")])
        medians[w] = off
        roff = statistics.median(x[1] for x in results[(w, "off")])
        ron = statistics.median(x[1] for x in results[(w, "on")])
        toff = statistics.median(x[2] for x in results[(w, "off")])
        ton = statistics.median(x[2] for x in results[(w, "on")])
        print(f"| {w} | {off:.0f} | {on:.0f} | {on - off:.0f} | {on / off:.2f} | "
              f"{', '.join(f'{r:.2f}' for r in ratios[w])} | {statistics.median(ratios[w]):.2f} | {toff:.0f} | {ton:.0f} |"
              f" {roff:.0f} | {ron:.0f} |")
    if parts:
        def both(name, which=0):
            values = [x[which][name] for x in parts if x[which].get(name) is not None]
            return statistics.median(values) if values else None
        ops = {"sign": ["RSA-2048 sign (cryptography)"], "sign-ed25519": ["Ed25519 sign (cryptography)"],
               "sign-both": ["RSA-2048 sign (cryptography)", "Ed25519 sign (cryptography)"]}
        for w in workloads:
            if w in ops:
                op = sum(both(name) for name in ops[w])
                opCold = sum(both(name, 1) for name in ops[w])
                line = (f"floor of {w}: (off {medians[w]:.0f} + signature operations {op:.0f} hot, {opCold:.0f} cold)"
                        f" / off = {(medians[w] + op) / medians[w]:.2f} to {(medians[w] + opCold) / medians[w]:.2f}")
                if w == "sign" and both("openssl speed rsa2048 sign"):
                    rsa = both("openssl speed rsa2048 sign")
                    line += f"; with openssl speed's RSA ({rsa:.0f} µs): {(medians[w] + rsa) / medians[w]:.2f}"
                print(line)


if __name__ == "__main__":
    main()
