"""
IMAP benchmark: mailnet beside Dovecot, on the same Maildir, in one run.

    /tmp/venv/bin/python bench/imap_bench.py [--big 100000] [--search 10000]
        [--bodies 2000] [--idle 1000] [--runs 5] [--keep]
        [--only select,flags,bodies,search,idle]

What it does:

1. Starts mailnet (the real twistd plugin, Maildir store, 127.0.0.1 port 0)
   and makes the user bench@example.test with folders Big (``--big`` small
   messages with mixed flags), Search (``--search`` messages of varied text,
   a third of them quoted-printable or base64), Bodies (``--bodies``
   messages of 2-200 KB) and an empty INBOX.  Message files are written
   straight into the Maildir, as an MDA would; mailnet indexes them at the
   first SELECT (timed and reported, not part of the ratios).
2. Copies that Maildir (with its dovecot-uidlist, so the UIDs are the same)
   for Dovecot, and starts Dovecot (Debian's dovecot-imapd) as our own
   process with its own config in the run directory, on a free 127.0.0.1
   port; Dovecot builds its index at its first SELECT (also not in the
   ratios).
3. Measures, in ``--runs`` rounds that each measure both servers in
   alternating order (so that other load on the machine falls on both
   alike), reporting the median of each (``--only`` picks a subset):
   * SELECT Big (a fresh connection each time),
   * UID FETCH 1:* (FLAGS) on Big,
   * FETCH 1:* BODY.PEEK[] throughput on Bodies,
   * SEARCH TEXT over Search (a word in ~1% of the messages, decoded),
   * memory per connection with ``--idle`` clients logged in, INBOX
     selected, in IDLE (mailnet: growth of the process RSS; Dovecot: growth
     of the summed PSS of all its processes, and RSS for reference).
4. Stops both servers by PID and prints a table with the ratios
   (mailnet / Dovecot: time, or memory; for throughput Dovecot / mailnet, so
   that below 2.0 means "within 2x" everywhere).

The client is a small blocking IMAP reader over a socket (literals read in
bulk), the same for both servers.
"""

from __future__ import annotations

import argparse
import base64
import os
import quopri
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.harness import MailServer  # noqa: E402

USER = "bench@example.test"
PASSWORD = "bench-pw"
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu meeting report invoice budget "
         "schedule project release server network update review customer support").split()
NEEDLE = "zanzibar"  # appears in ~1% of the Search messages, sometimes only after decoding


# A tiny IMAP client


class Client:
    def __init__(self, port, timeout=120):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb", buffering=1 << 20)
        self.n = 0
        greeting = self.f.readline()
        assert greeting.startswith(b"* OK"), greeting

    def send(self, line: bytes):
        self.sock.sendall(line + b"\r\n")

    def command(self, text: bytes):
        """Send a command, read to its tagged reply; return (untagged lines, bytes of literals, tagged line)."""
        self.n += 1
        tag = b"b%d" % self.n
        self.send(tag + b" " + text)
        return self.read(tag)

    def read(self, tag):
        lines = []
        literalBytes = 0
        f = self.f
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("server closed")
            m = _LITERAL.search(line)
            while m:
                n = int(m.group(1))
                left = n
                while left:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        raise ConnectionError("server closed in a literal")
                    left -= len(chunk)
                literalBytes += n
                line = f.readline()
                m = _LITERAL.search(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line)
                return lines, literalBytes, line
            lines.append(line)

    def login(self):
        self.command(b"LOGIN " + USER.encode() + b" " + PASSWORD.encode())

    def close(self):
        try:
            self.sock.sendall(b"z LOGOUT\r\n")
        except OSError:
            pass
        self.sock.close()


_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


# Message generation


_LINES = None


def text(rng, words):
    """About ``words`` words of text in 12-word lines, from a pool of random lines."""
    global _LINES
    if _LINES is None:
        pool = random.Random(0)
        _LINES = [" ".join(pool.choice(WORDS) for _ in range(12)) for _ in range(4096)]
    count = max(1, words // 12)
    return "\r\n".join(_LINES[rng.randrange(4096)] for _ in range(count)) + "\r\n"


def header(rng, i, subject, extra=""):
    return ("From: Sender %d <sender%d@example.org>\r\nTo: bench@example.test\r\nSubject: %s\r\n"
            "Date: Mon, %d Jan 2024 10:%02d:%02d +0000\r\nMessage-ID: <%d.%d@bench.example>\r\n%s"
            % (i % 97, i % 97, subject, 1 + i % 28, i % 60, (i * 7) % 60, i, rng.randrange(1 << 30), extra))


def smallMessage(rng, i):
    return (header(rng, i, "note %d %s" % (i, rng.choice(WORDS))) + "\r\n" + text(rng, 40)).encode()


def searchMessage(rng, i):
    body = text(rng, 350)
    hit = i % 100 == 7
    if hit:
        body = body.replace("\r\n", " %s\r\n" % NEEDLE, 1)
    kind = i % 3
    if kind == 0:
        return (header(rng, i, "search %d" % i) + "\r\n" + body).encode()
    if kind == 1:
        encoded = quopri.encodestring(body.replace("alpha", "\u00e4lpha").encode("utf-8")).decode("ascii")
        return (header(rng, i, "search %d" % i, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: quoted-printable\r\n") + "\r\n" + encoded.replace("\n", "\r\n")
                .replace("\r\r\n", "\r\n")).encode()
    encoded = base64.encodebytes(body.encode()).decode("ascii").replace("\n", "\r\n")
    return (header(rng, i, "search %d" % i, "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=bb\r\n")
            + "\r\n--bb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + encoded + "--bb--\r\n").encode()


def bodyMessage(rng, i):
    size = rng.choice([2, 5, 10, 20, 50, 100, 200]) * 1024
    return (header(rng, i, "body %d" % i) + "\r\n" + text(rng, size // 6)).encode()


FLAG_CHOICES = ["S", "S", "S", "S", "", "FS", "RS", "S", "DS", ""]


def writeFolder(path, count, make, seed, flags=True):
    rng = random.Random(seed)
    cur = os.path.join(path, "cur")
    os.makedirs(cur, exist_ok=True)
    total = 0
    start = int(time.time()) - count
    for i in range(count):
        data = make(rng, i)
        total += len(data)
        info = rng.choice(FLAG_CHOICES) if flags else ""
        name = "%d.M%dP%d.bench,S=%d,W=%d:2,%s" % (start + i, i, os.getpid(), len(data), len(data), info)
        with open(os.path.join(cur, name), "wb") as f:
            f.write(data)
        os.utime(os.path.join(cur, name), (start + i, start + i))
    return total


# Servers


def freePort():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


DOVECOT_CONF = """\
base_dir = {run}/base
state_dir = {run}/state
log_path = {run}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
default_process_limit = 3000
default_client_limit = 6000
default_vsz_limit = 0
mail_max_userip_connections = 3000
mail_location = maildir:{mail}/%u
mail_fsync = always
maildir_very_dirty_syncs = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {run}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 1
  client_limit = 3000
}}
service imap {{
  process_limit = 3000
}}
service anvil {{
  client_limit = 7000
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
"""


class Dovecot:
    def __init__(self, run, mail):
        import pwd

        self.run = run
        self.mail = mail
        self.port = freePort()
        # Dovecot will not touch mail as root: the copy belongs to "nobody".
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        for base, dirs, files in os.walk(mail):
            os.chown(base, self.uid, self.gid)
            for name in files:
                os.chown(os.path.join(base, name), self.uid, self.gid)
        os.makedirs(run, exist_ok=True)
        with open(os.path.join(run, "dovecot.conf"), "w") as f:
            f.write(DOVECOT_CONF.format(run=run, mail=mail, port=self.port, uid=self.uid, gid=self.gid))
        with open(os.path.join(run, "passwd"), "w") as f:
            f.write("%s:{PLAIN}%s\n" % (USER, PASSWORD))
        self.pid = None

    def start(self):
        subprocess.run(["dovecot", "-c", os.path.join(self.run, "dovecot.conf")], check=True)
        pidfile = os.path.join(self.run, "base", "master.pid")
        for _ in range(100):
            if os.path.exists(pidfile):
                with open(pidfile) as f:
                    self.pid = int(f.read().strip())
                break
            time.sleep(0.05)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("dovecot did not start: " + open(os.path.join(self.run, "dovecot.log")).read()[-2000:])

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            for _ in range(200):
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            self.pid = None

    def pids(self):
        return [self.pid] + descendants(self.pid)


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                pass
    out = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def memory(pids):
    """(sum of RSS, sum of PSS) in bytes."""
    rss = pss = 0
    for pid in pids:
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def createFolders(port, *names):
    """Log in to the IMAP server on ``port`` as USER and CREATE the folders (bytes)."""
    c = Client(port)
    c.login()
    for name in names:
        c.command(b"CREATE " + name)
    c.close()


def dovecotOnCopy(run, server):
    """A :class:`Dovecot` (not started yet) under ``run`` serving a copy of USER's Maildir of mailnet ``server``."""
    mailCopy = os.path.join(run, "dovecot-mail")
    os.makedirs(mailCopy)
    shutil.copytree(server.maildir(USER), os.path.join(mailCopy, USER), symlinks=True)
    return Dovecot(os.path.join(run, "dovecot"), mailCopy)


# Measurements


def timeSelect(port, folder):
    c = Client(port)
    c.login()
    t = time.perf_counter()
    lines, _, _ = c.command(b"SELECT " + folder)
    elapsed = time.perf_counter() - t
    c.close()
    exists = next(int(l.split()[1]) for l in lines if l.endswith(b"EXISTS\r\n"))
    return elapsed, exists


def timeFlags(port, folder):
    c = Client(port)
    c.login()
    c.command(b"SELECT " + folder)
    t = time.perf_counter()
    lines, _, _ = c.command(b"UID FETCH 1:* (FLAGS)")
    elapsed = time.perf_counter() - t
    c.close()
    return elapsed, len(lines)


def timeBodies(port, folder):
    c = Client(port)
    c.login()
    c.command(b"SELECT " + folder)
    t = time.perf_counter()
    lines, nbytes, _ = c.command(b"FETCH 1:* BODY.PEEK[]")
    elapsed = time.perf_counter() - t
    c.close()
    return elapsed, nbytes


def timeSearch(port, folder, word):
    c = Client(port)
    c.login()
    c.command(b"SELECT " + folder)
    t = time.perf_counter()
    lines, _, _ = c.command(b"SEARCH TEXT " + word.encode())
    elapsed = time.perf_counter() - t
    c.close()
    found = [l for l in lines if l.startswith(b"* SEARCH")]
    return elapsed, len(found[0].split()) - 2 if found else 0


def idleClients(port, count):
    clients = []
    for _ in range(count):
        c = Client(port)
        c.login()
        c.command(b"SELECT INBOX")
        c.n += 1
        c.send(b"i IDLE")
        line = c.f.readline()
        assert line.startswith(b"+"), line
        clients.append(c)
    return clients


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", type=int, default=100000)
    parser.add_argument("--search", type=int, default=10000)
    parser.add_argument("--bodies", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--only", default="select,flags,bodies,search,idle",
                        help="comma-separated subset of select,flags,bodies,search,idle")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if shutil.which("dovecot") is None:
        sys.exit("dovecot is not installed (apt-get install dovecot-imapd)")

    run = tempfile.mkdtemp(prefix="imapbench-")
    os.chmod(run, 0o755)  # Dovecot's auth process runs as the dovecot user
    print("run directory:", run)
    server = MailServer(os.path.join(run, "mailnet"), config={
        "store": {"backend": "maildir"},
        "auth": {"allow_plaintext": True, "failure_delay": 0.05},
        "limits": {"connections": 5000, "connections_per_ip": 5000, "imap_connections_per_user": 5000},
    })
    dovecot = None
    results = {}
    try:
        server.start()
        server.addUser(USER, PASSWORD)
        port = server.port("imap")
        createFolders(port, b"Big", b"Search", b"Bodies")
        t = time.time()
        sizes = {
            "Big": writeFolder(server.maildir(USER, "Big"), args.big, smallMessage, 1),
            "Search": writeFolder(server.maildir(USER, "Search"), args.search, searchMessage, 2),
            "Bodies": writeFolder(server.maildir(USER, "Bodies"), args.bodies, bodyMessage, 3, flags=False),
        }
        print("wrote %d messages (%.0f MB) in %.1fs" % (args.big + args.search + args.bodies,
                                                         sum(sizes.values()) / 1e6, time.time() - t))
        first = {}
        for folder in (b"Big", b"Search", b"Bodies"):
            first[folder] = timeSelect(port, folder)[0]
        print("mailnet first SELECT (indexing): " + ", ".join("%s %.2fs" % (k.decode(), v) for k, v in first.items()))

        # The same Maildir for Dovecot.
        local, domain = USER.split("@")
        dovecot = dovecotOnCopy(run, server)
        dovecot.start()
        first = {}
        for folder in (b"Big", b"Search", b"Bodies"):
            first[folder] = timeSelect(dovecot.port, folder)[0]
        print("dovecot first SELECT (indexing): " + ", ".join("%s %.2fs" % (k.decode(), v) for k, v in first.items()))

        # Interleaved: each round measures both servers, in alternating
        # order, so that other load on the machine falls on both alike.
        servers = [("mailnet", port), ("dovecot", dovecot.port)]
        samples = {name: {} for name, _ in servers}
        for n in range(args.runs):
            for name, p in (servers if n % 2 == 0 else servers[::-1]):
                got = samples[name]
                if "select" in only:
                    elapsed, exists = timeSelect(p, b"Big")
                    assert exists == args.big, (name, exists)
                    got.setdefault("select", []).append(elapsed)
                if "flags" in only:
                    elapsed, count = timeFlags(p, b"Big")
                    assert count == args.big, (name, count)
                    got.setdefault("flags", []).append(elapsed)
                if "bodies" in only:
                    elapsed, nbytes = timeBodies(p, b"Bodies")
                    got.setdefault("bodies", []).append(nbytes / elapsed / 1e6)
                    got["bodies_bytes"] = nbytes
                if "search" in only:
                    elapsed, hits = timeSearch(p, b"Search", NEEDLE)
                    got.setdefault("search", []).append(elapsed)
                    got["search_hits"] = hits
        for name, _ in servers:
            r = results.setdefault(name, {})
            for key, values in samples[name].items():
                r[key] = statistics.median(values) if isinstance(values, list) else values
            if len(only - {"idle"}):
                print("%s: SELECT %.3fs, UID FETCH FLAGS %.3fs, BODY[] %.0f MB/s, SEARCH TEXT %.3fs (%d hits)"
                      % (name, r.get("select", 0), r.get("flags", 0), r.get("bodies", 0), r.get("search", 0),
                         r.get("search_hits", 0)))
                for key in ("select", "flags", "bodies", "search"):
                    if key in samples[name]:
                        print("  %s runs: %s" % (key, " ".join("%.3f" % v for v in samples[name][key])))

        # Memory per IDLE connection, mailnet in a fresh process (memory freed
        # by the measurements above would otherwise be reused and hide the cost).
        if "idle" in only:
            server.stop()
            server.start()
            port = server.port("imap")
        for name, p, pids in (("mailnet", port, lambda: [server.process.pid]), ("dovecot", dovecot.port, dovecot.pids)):
            if "idle" not in only:
                break
            warm = idleClients(p, 5)
            time.sleep(0.5)
            before = memory(pids())
            clients = idleClients(p, args.idle)
            time.sleep(1.0)
            after = memory(pids())
            r = results[name]
            r["idle_rss"] = (after[0] - before[0]) / args.idle
            r["idle_pss"] = (after[1] - before[1]) / args.idle
            print("%s: %d IDLE clients: +%.1f MB RSS, +%.1f MB PSS (%.1f KB / %.1f KB per connection)"
                  % (name, args.idle, (after[0] - before[0]) / 1e6, (after[1] - before[1]) / 1e6,
                     r["idle_rss"] / 1024, r["idle_pss"] / 1024))
            for c in clients + warm:
                c.sock.close()
            time.sleep(1.0)
    finally:
        if dovecot is not None:
            dovecot.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)

    m, d = results["mailnet"], results["dovecot"]
    print()
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    print("| measurement | mailnet | Dovecot 2.3 | ratio (mailnet cost / Dovecot) |")
    print("|---|---|---|---|")
    if "select" in only:
        print("| SELECT, %d messages | %.3f s | %.3f s | %.2f |" % (args.big, m["select"], d["select"], m["select"] / d["select"]))
    if "flags" in only:
        print("| UID FETCH 1:* (FLAGS), %d messages | %.3f s | %.3f s | %.2f |" % (args.big, m["flags"], d["flags"], m["flags"] / d["flags"]))
    if "bodies" in only:
        print("| FETCH 1:* BODY.PEEK[], %d messages, %.0f MB | %.0f MB/s | %.0f MB/s | %.2f |" % (
            args.bodies, m["bodies_bytes"] / 1e6, m["bodies"], d["bodies"], d["bodies"] / m["bodies"]))
    if "search" in only:
        print("| SEARCH TEXT, %d messages | %.3f s | %.3f s | %.2f |" % (args.search, m["search"], d["search"], m["search"] / d["search"]))
    if "idle" in only:
        print("| memory per IDLE connection (%d clients) | %.0f KB RSS | %.0f KB PSS (%.0f KB RSS) | %.2f (of PSS) |" % (
            args.idle, m["idle_rss"] / 1024, d["idle_pss"] / 1024, d["idle_rss"] / 1024, m["idle_rss"] / d["idle_pss"]))


if __name__ == "__main__":
    main()
