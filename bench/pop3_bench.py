"""
POP3 benchmark: mailnet and Dovecot's POP3 side by side, in the same run,
on copies of the same Maildir, with the same password hash.

    /tmp/venv/bin/python bench/pop3_bench.py [--messages 10000] [--sessions 120]

What it measures (the client is the same Python code for both servers):

* RETR throughput: one session downloads every message of a maildrop of
  ``--messages`` messages (1-64 KB, seeded), RETR commands pipelined in
  windows of 64 (RFC 2449 PIPELINING), over TLS (pop3s) and in the clear.
  Reported in messages/s and MB/s; the median of ``--rounds`` rounds, each
  of which measures both servers, in alternating order (so that other load
  on the machine falls on both alike).
* Sessions per second: ``--clients`` threads, each on its own user (100
  messages), doing connect + TLS + USER/PASS + STAT + QUIT, ``--sessions``
  sessions in all (``--sessions 0`` skips this part).  Both servers check the same ``{ARGON2ID}`` hash (made
  by mailnet: m=64 MiB, t=3, p=4).  mailnet is run with its verified-login
  cache on (``[auth] cache_seconds = 300``, the default) and off (0).
  Dovecot runs with its defaults: its auth cache is off, and even when on it
  still hashes each password, so it has no equivalent of mailnet's cache.

Dovecot runs as our own child process with its own config in the work
directory, on 127.0.0.1 high ports, and is stopped by PID at the end.
Needs the ``dovecot-pop3d`` package.  Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.harness import MailServer  # noqa: E402
from tests.pop3.dovecot import Dovecot  # noqa: E402

DOMAIN = "example.test"
PASSWORD = "bench-password"
WINDOW = 64


# Mail


WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua").split()


def makeMessage(rng, i):
    size = int(min(64 * 1024, max(1024, rng.lognormvariate(8.6, 0.8))))  # median ~5 KB
    head = (f"From: Sender {i % 97} <s{i % 97}@example.org>\nTo: bench@{DOMAIN}\n"
            f"Subject: benchmark message {i}\nMessage-ID: <{i}.bench@example.org>\n"
            f"Date: Mon, 23 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n")
    lines = []
    total = len(head)
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        if rng.random() < 0.02:
            line = "." + line  # exercise dot-stuffing
        lines.append(line)
        total += len(line) + 1
    return (head + "\n".join(lines) + "\n").encode()


def makeMaildir(path, count, seed, crlf=False):
    rng = random.Random(seed)
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    total = 0
    for i in range(count):
        data = makeMessage(rng, i)
        if crlf:
            data = data.replace(b"\n", b"\r\n")
        total += len(data)
        with open(os.path.join(path, "new", f"1700000000.M{i}P1.bench"), "wb") as f:
            f.write(data)
    return total


# A minimal pipelining POP3 client


class Client:
    def __init__(self, port, tls=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.line()

    def recv(self):
        data = self.sock.recv(1 << 18)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self.recv()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        line = self.line()
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"{text.split()[0]}: {line!r}")
        return line

    def login(self, user):
        self.cmd(f"USER {user}")
        self.cmd(f"PASS {PASSWORD}")

    def retrAll(self, count):
        """RETR 1..count pipelined; returns the bytes received."""
        received = 0
        done = 0
        sent = 0
        tail = b""
        while done < count:
            while sent < count and sent - done < WINDOW:
                batch = min(WINDOW - (sent - done), count - sent)
                self.sock.sendall(b"".join(b"RETR %d\r\n" % n for n in range(sent + 1, sent + batch + 1)))
                sent += batch
            data = self.buf or self.sock.recv(1 << 18)
            self.buf = b""
            if not data:
                raise ConnectionError("closed")
            received += len(data)
            # Each multi-line response ends with CRLF.CRLF, which byte-stuffing
            # keeps out of message bodies.
            joined = tail + data
            done += joined.count(b"\r\n.\r\n")
            tail = joined[-4:]
        return received

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.line()
        finally:
            self.sock.close()


def tlsContext():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def retrOnce(port, tls, user):
    c = Client(port, tls)
    c.login(user)
    count = int(c.cmd("STAT").split()[1])
    start = time.perf_counter()
    received = c.retrAll(count)
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed, count, received


def retrResult(samples):
    """The median round of [(elapsed, count, received)]."""
    elapsed, count, received = sorted(samples)[len(samples) // 2]
    return {"messages_per_s": count / elapsed, "mb_per_s": received / elapsed / 1e6, "seconds": elapsed,
            "messages": count, "rounds_s": [round(s[0], 3) for s in samples]}


def benchSessions(port, tls, users, total):
    lock = threading.Lock()
    left = [total]
    errors = []

    def worker(user):
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            try:
                c = Client(port, tls)
                c.login(user)
                c.cmd("STAT")
                c.close()
            except Exception as e:  # report, do not hide
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(u,)) for u in users]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"sessions_per_s": (total - len(errors)) / elapsed, "seconds": elapsed, "errors": errors[:3], "failed": len(errors)}


# Servers


def startDovecot(work, users, hashes, cert, key):
    """Dovecot on copies of ``users`` ({login: template Maildir})."""
    dovecot = Dovecot(os.path.join(work, "dovecot"), cert, key)
    for user, source in users.items():
        dovecot.addUser(user, hashes[user], source)
    return dovecot.start()


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:
        return "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--sessions", type=int, default=120)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--crlf", action="store_true",
                        help="store messages with CRLF line ends (as mailnet's own deliveries are) instead of LF "
                             "(as Dovecot, procmail and mutt write them)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not shutil.which("dovecot"):
        sys.exit("dovecot is not installed (apt-get install dovecot-pop3d)")

    work = tempfile.mkdtemp(prefix="pop3bench-", dir="/tmp")
    os.chmod(work, 0o755)  # Dovecot's auth and mail processes run as other users
    print(f"work directory {work}", flush=True)
    templates = os.path.join(work, "templates")
    big = f"bench@{DOMAIN}"
    small = [f"s{i}@{DOMAIN}" for i in range(args.clients)]
    t0 = time.perf_counter()
    size = makeMaildir(os.path.join(templates, "bench"), args.messages, seed=1, crlf=args.crlf)
    for i, user in enumerate(small):
        makeMaildir(os.path.join(templates, user.split("@")[0]), 100, seed=100 + i, crlf=args.crlf)
    print(f"made {args.messages} messages ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)

    results = {"messages": args.messages, "maildrop_mb": size / 1e6, "dovecot": version(["dovecot", "--version"]),
               "line_ends": "CRLF" if args.crlf else "LF"}
    mailnetDir = os.path.join(work, "mailnet")
    server = None
    dovecot = None
    try:
        def startMailnet(cacheSeconds):
            s = MailServer(mailnetDir, config={
                "auth": {"allow_plaintext": True, "cache_seconds": cacheSeconds},
                "log": {"level": "info"},  # the harness waits for the "ready" line
            })
            s.start()
            return s

        server = startMailnet(300)
        hashes = {}
        for user in [big] + small:
            server.addUser(user, PASSWORD)
        with open(os.path.join(server.dataDir, "users")) as f:
            for line in f:
                name, _, rest = line.strip().partition(":")
                hashes[name] = rest.split(":")[0]
        for user in [big] + small:
            local = user.split("@")[0]
            dest = server.maildir(user)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copytree(os.path.join(templates, local), dest)
        dovecot = startDovecot(
            work, {u: os.path.join(templates, u.split("@")[0]) for u in [big] + small}, hashes,
            server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
        dPlain, dSecure = dovecot.port, dovecot.tlsPort
        print(f"mailnet pid {server.process.pid}, dovecot pid {dovecot.process.pid}", flush=True)
        tls = tlsContext()
        servers = {
            "mailnet": {"pop3": server.port("pop3"), "pop3s": server.port("pop3s")},
            "dovecot": {"pop3": dPlain, "pop3s": dSecure},
        }

        # Warm up: first logins index the Maildirs; one full read fills the page cache.
        for name, ports in servers.items():
            t = time.perf_counter()
            c = Client(ports["pop3"])
            c.login(big)
            c.cmd("STAT")
            c.close()
            print(f"{name}: first login over {args.messages} new messages took {time.perf_counter() - t:.2f} s", flush=True)
            results.setdefault("first_login_s", {})[name] = time.perf_counter() - t
            for user in small:
                c = Client(ports["pop3"])
                c.login(user)
                c.close()
            c = Client(ports["pop3"])
            c.login(big)
            c.retrAll(args.messages)
            c.close()

        # Interleaved rounds: each measures both servers (in alternating
        # order), so that other load on the machine falls on both alike.
        for transport in ("pop3s", "pop3"):
            samples = {name: [] for name in servers}
            order = list(servers.items())
            for n in range(args.rounds):
                for name, ports in (order if n % 2 == 0 else order[::-1]):
                    samples[name].append(retrOnce(ports[transport], tls if transport == "pop3s" else None, big))
            for name in servers:
                r = retrResult(samples[name])
                results.setdefault("retr", {}).setdefault(transport, {})[name] = r
                print(f"RETR {transport:5} {name:8} {r['messages_per_s']:8.0f} msg/s {r['mb_per_s']:7.1f} MB/s "
                      f"(rounds: {r['rounds_s']} s)", flush=True)

        def sessions(label, port):
            r = benchSessions(port, tls, small, args.sessions)
            results.setdefault("sessions", {})[label] = r
            extra = f" ({r['failed']} failed: {r['errors']})" if r["failed"] else ""
            print(f"sessions pop3s {label:22} {r['sessions_per_s']:7.1f} /s{extra}", flush=True)

        if args.sessions:
            sessions("mailnet cache on", servers["mailnet"]["pop3s"])
            sessions("dovecot", servers["dovecot"]["pop3s"])
            server.stop()
            server = startMailnet(0)
            sessions("mailnet cache off", server.port("pop3s"))
    finally:
        if dovecot is not None:
            dovecot.stop()
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"Ratios mailnet / dovecot ({results['dovecot']}, {args.messages} messages, {results['maildrop_mb']:.0f} MB, "
          f"{results['line_ends']} files; load average at the end %.2f %.2f %.2f):" % os.getloadavg())
    for transport, pair in results["retr"].items():
        m, d = pair["mailnet"], pair["dovecot"]
        print(f"  RETR over {transport:5}: {m['messages_per_s'] / d['messages_per_s']:.2f}x "
              f"({m['messages_per_s']:.0f} vs {d['messages_per_s']:.0f} msg/s, {m['mb_per_s']:.1f} vs {d['mb_per_s']:.1f} MB/s)")
    s = results.get("sessions", {})
    for label in ("mailnet cache on", "mailnet cache off") if s else ():
        print(f"  sessions/s, {label:17}: {s[label]['sessions_per_s'] / s['dovecot']['sessions_per_s']:.2f}x "
              f"({s[label]['sessions_per_s']:.1f} vs {s['dovecot']['sessions_per_s']:.1f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
