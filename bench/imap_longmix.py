"""
Long-lived IMAP sessions: mailnet beside Dovecot, on copies of one Maildir, in one run.

    /work/main/.venv/bin/python bench/imap_longmix.py [--clients 10] [--messages 200]
        [--seconds 10] [--runs 3] [--seed 1] [--dovecot-fsync optimized]
        [--only mailnet,dovecot] [--profile FILE] [--keep]

What it does (issue 12, "speed of long-lived sessions"):

1. Starts mailnet (the real server, Maildir store, 127.0.0.1 port 0), makes
   the user bench@example.test and writes ``--messages`` small messages
   into a folder Mix straight into the Maildir; mailnet indexes them at a
   first SELECT.  Copies that Maildir (with its dovecot-uidlist, so the UIDs
   are the same) for Dovecot and starts a private Dovecot on a free
   127.0.0.1 port (the one of bench/imap_bench.py).
2. In ``--runs`` rounds, each measuring both servers in alternating order
   (so other load on the machine falls on both alike), ``--clients`` client
   processes log in, SELECT Mix, wait for each other, and then for
   ``--seconds`` seconds do a seeded random mix of commands without logging
   out, as the ten-session stress test does: APPEND 15%, FETCH by sequence
   number 35% (UID FLAGS, FLAGS BODY.PEEK[HEADER], BODY.PEEK[] or UID
   RFC822.SIZE of one to six messages), STORE 30% (+FLAGS, -FLAGS or
   +FLAGS.SILENT of \\Seen, \\Flagged or \\Deleted), EXPUNGE 10%, SELECT
   5%, NOOP 5%.  Each client keeps a client's view of the message count
   (from EXISTS and EXPUNGE) and picks sequence numbers from it.  The
   measure is commands completed per second, all clients together; NO and
   BAD answers are counted and shown.
   Dovecot runs with its default ``mail_fsync = optimized`` (fsync where mail
   could otherwise be lost: new messages); ``--dovecot-fsync always`` makes
   it fsync its index writes too.  mailnet fsyncs new messages, and the
   directory after its own renames and unlinks (flag changes, expunges),
   so it does more fsyncs than Dovecot's default and fewer than ``always``.
3. Prints, for each round and as medians over the rounds: commands/s; the
   server's CPU time (user + system, from /proc) per command, for Dovecot
   summed over all its processes; the mean latency of each command; and
   the ratios Dovecot / mailnet of commands/s (below 1.0: mailnet is
   faster) and mailnet / Dovecot of CPU per command.  On a shared machine
   the absolute figures move a lot between runs; read the ratios, over a
   few runs.

``--profile FILE``: run mailnet under yappi (every thread, CPU time) if it
is installed, else cProfile (the reactor thread only), and write the stats
to FILE (pstats format; read with ``python -m pstats FILE``).  The hook is a
``sitecustomize`` module in the run directory, put first on mailnet's
PYTHONPATH: nothing in the product knows of it.  Profiling slows mailnet
down, so the ratio of such a run is not the product's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from imap_bench import (PASSWORD, USER, Client, createFolders, dovecotOnCopy, smallMessage,  # noqa: E402
                        timeSelect, writeFolder)

from tests.harness import MailServer  # noqa: E402

FOLDER = b"Mix"

SITECUSTOMIZE = """\
import atexit, os
_out = os.environ.get("MAILNET_BENCH_PROFILE")
if _out:
    try:
        import yappi
    except ImportError:
        yappi = None
    if yappi is not None:
        yappi.set_clock_type("cpu")
        yappi.start(builtins=False, profile_threads=True)

        def _dump():
            yappi.stop()
            yappi.convert2pstats(yappi.get_func_stats()).dump_stats(_out)
    else:
        import cProfile
        _p = cProfile.Profile()
        _p.enable()

        def _dump():
            _p.disable()
            _p.dump_stats(_out)
    _done = []

    def _once():
        if not _done:
            _done.append(1)
            _dump()
    atexit.register(_once)
    # twistd ends a SIGTERM shutdown by killing itself with the signal again
    # (no atexit then): write the profile first.
    _kill = os.kill

    def _killing(pid, sig):
        if pid == os.getpid():
            _once()
        _kill(pid, sig)
    os.kill = _killing
"""


def message(n):
    return (b"From: bob@example.test\r\nTo: bench@example.test\r\nSubject: longmix %d\r\n"
            b"Message-ID: <longmix-%d@example.test>\r\n\r\nBody of message %d.\r\n" % (n, n, n))


class MixClient(Client):
    """The tiny client of imap_bench, with a client's view of the message count."""

    def __init__(self, port, seed):
        super().__init__(port)
        self.rng = random.Random(seed)
        self.count = 0
        self.errors = 0
        self.commands = 0
        self.latency = {}  # command name -> [count, seconds]

    def mix(self, text, literal=None):
        """One command; NO/BAD counted, not raised; the view follows EXISTS and EXPUNGE."""
        self.n += 1
        tag = b"b%d" % self.n
        t = time.perf_counter()
        if literal is not None:
            # LITERAL+ is offered by both servers: no round trip for the "+".
            self.sock.sendall(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        else:
            self.send(tag + b" " + text)
        try:
            lines, _, _ = self.read(tag)
        except RuntimeError:
            self.errors += 1
            lines = []
        self.commands += 1
        kept = self.latency.setdefault(text.split(b" ", 1)[0].decode(), [0, 0.0])
        kept[0] += 1
        kept[1] += time.perf_counter() - t
        for line in lines:
            m = _COUNTS.match(line)
            if m:
                if m.group(2) == b"EXISTS":
                    self.count = int(m.group(1))
                else:
                    self.count -= 1

    def someNumbers(self):
        first = self.rng.randint(1, self.count)
        if self.rng.random() < 0.5:
            return b"%d" % first
        return b"%d:%d" % (first, min(self.count, first + self.rng.randint(1, 5)))

    def step(self, n):
        rng = self.rng
        roll = rng.random()
        if self.count == 0 or roll < 0.15:
            self.mix(b"APPEND " + FOLDER, message(n))
        elif roll < 0.50:
            items = rng.choice([b"(UID FLAGS)", b"(FLAGS BODY.PEEK[HEADER])", b"(BODY.PEEK[])", b"(UID RFC822.SIZE)"])
            self.mix(b"FETCH " + self.someNumbers() + b" " + items)
        elif roll < 0.80:
            flag = rng.choice([b"\\Seen", b"\\Flagged", b"\\Deleted", b"\\Deleted"])
            how = rng.choice([b"+FLAGS", b"+FLAGS", b"-FLAGS", b"+FLAGS.SILENT"])
            self.mix(b"STORE " + self.someNumbers() + b" " + how + b" (" + flag + b")")
        elif roll < 0.90:
            self.mix(b"EXPUNGE")
        elif roll < 0.95:
            self.mix(b"SELECT " + FOLDER)
        else:
            self.mix(b"NOOP")


_COUNTS = re.compile(rb"\* (\d+) (EXISTS|EXPUNGE)\r\n$")


def clientProcess(port, seed, seconds, barrier, done, results):
    try:
        c = MixClient(port, seed)
        c.login()
        c.mix(b"SELECT " + FOLDER)
        c.commands = 0
        c.latency = {}
        barrier.wait(120)
        start = time.perf_counter()
        deadline = start + seconds
        n = 0
        while time.perf_counter() < deadline:
            c.step(1000000 * (seed + 1) + n)
            n += 1
        elapsed = time.perf_counter() - start
        results.put((seed, c.commands, c.errors, elapsed, None, c.latency))
        done.wait(120)  # the server's CPU time is read before the sessions end
        c.close()
    except Exception as e:  # a dropped connection: reported, not hidden
        results.put((seed, 0, 0, 0.0, "%s: %s" % (type(e).__name__, e), {}))


def cpuSeconds(pids):
    """(user, system) CPU seconds of these processes (and their reaped children)."""
    user = system = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
        except (OSError, IndexError):
            pass
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def measure(port, clients, seconds, seed, pids):
    """
    Commands per second of ``clients`` processes for ``seconds``:
    (rate, errors, failures, CPU seconds of the server per command, of
    which user time, {command: [count, seconds]}).
    """
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    done = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=clientProcess, args=(port, seed * 1000 + i, seconds, barrier, done, results))
             for i in range(clients)]
    for p in procs:
        p.start()
    try:
        barrier.wait(120)  # all logged in and selected
    except threading.BrokenBarrierError:
        failures = [r[4] for r in (results.get(timeout=5) for _ in procs if not results.empty()) if r[4]]
        sys.exit("clients could not log in and select: %s" % ("; ".join(failures) or "timeout"))
    cpu = cpuSeconds(pids())
    got = [results.get(timeout=seconds + 300) for _ in procs]
    after = cpuSeconds(pids())
    user, system = after[0] - cpu[0], after[1] - cpu[1]
    try:
        done.wait(30)
    except threading.BrokenBarrierError:
        pass
    for p in procs:
        p.join(30)
    failures = [r[4] for r in got if r[4]]
    total = sum(r[1] for r in got)
    elapsed = max(r[3] for r in got) or seconds
    latency = {}
    for r in got:
        for name, (count, spent) in r[5].items():
            kept = latency.setdefault(name, [0, 0.0])
            kept[0] += count
            kept[1] += spent
    return total / elapsed, sum(r[2] for r in got), failures, (user + system) / max(total, 1), user / max(total, 1), latency


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dovecot-fsync", default="optimized", choices=("always", "optimized", "never"),
                        help="Dovecot's mail_fsync (default: Dovecot's own default; see the docstring)")
    parser.add_argument("--only", default="mailnet,dovecot", help="mailnet, dovecot or both (default)")
    parser.add_argument("--profile", help="write a profile of mailnet to this file (see the docstring)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "dovecot" in only and shutil.which("dovecot") is None:
        sys.exit("dovecot is not installed (apt-get install dovecot-imapd)")

    run = tempfile.mkdtemp(prefix="imaplongmix-")
    os.chmod(run, 0o755)  # Dovecot's auth process runs as the dovecot user
    print("run directory:", run)
    env = None
    if args.profile:
        hook = os.path.join(run, "profilehook")
        os.makedirs(hook)
        with open(os.path.join(hook, "sitecustomize.py"), "w") as f:
            f.write(SITECUSTOMIZE)
        env = {"PYTHONPATH": hook + os.pathsep + ROOT, "MAILNET_BENCH_PROFILE": os.path.abspath(args.profile)}
    server = MailServer(os.path.join(run, "mailnet"), config={
        "store": {"backend": "maildir"},
        "auth": {"allow_plaintext": True, "failure_delay": 0.05},
        "limits": {"connections": 5000, "connections_per_ip": 5000, "imap_connections_per_user": 5000},
    }, env=env)
    dovecot = None
    rates = {"mailnet": [], "dovecot": []}
    cpus = {"mailnet": [], "dovecot": []}
    latencies = {"mailnet": {}, "dovecot": {}}
    errors = {"mailnet": 0, "dovecot": 0}
    try:
        server.start()
        server.addUser(USER, PASSWORD)
        port = server.port("imap")
        createFolders(port, FOLDER)
        writeFolder(server.maildir(USER, FOLDER.decode()), args.messages, smallMessage, 1)
        timeSelect(port, FOLDER)  # mailnet indexes the folder

        servers = []
        if "mailnet" in only:
            servers.append(("mailnet", port, lambda: [server.process.pid]))
        if "dovecot" in only:
            dovecot = dovecotOnCopy(run, server)
            conf = os.path.join(dovecot.run, "dovecot.conf")
            with open(conf) as f:
                text = f.read()
            with open(conf, "w") as f:
                f.write(text.replace("mail_fsync = always", "mail_fsync = " + args.dovecot_fsync))
            dovecot.start()
            timeSelect(dovecot.port, FOLDER)  # Dovecot builds its index
            servers.append(("dovecot", dovecot.port, dovecot.pids))

        for n in range(args.runs):
            for name, p, pids in (servers if n % 2 == 0 else servers[::-1]):
                rate, errs, failures, cpu, user, latency = measure(p, args.clients, args.seconds, args.seed + n, pids)
                if failures:
                    sys.exit("%s: client failures: %s" % (name, "; ".join(failures)))
                rates[name].append(rate)
                cpus[name].append(cpu)
                errors[name] += errs
                for command, (count, spent) in latency.items():
                    kept = latencies[name].setdefault(command, [0, 0.0])
                    kept[0] += count
                    kept[1] += spent
                print("round %d: %s %.0f commands/s, %.2f ms server CPU a command (%.2f user) (%d NO/BAD)"
                      % (n + 1, name, rate, cpu * 1000, user * 1000, errs), flush=True)
    finally:
        if dovecot is not None:
            dovecot.stop()
        server.stop(timeout=600 if args.profile else 30)  # writing a profile takes a while
        if args.profile and not os.path.exists(args.profile):
            print("no profile written; the server's last lines:\n" + "\n".join(server.output[-30:]))
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)

    print()
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    print("| %d sessions on one mailbox, %g s a round, %d rounds | commands/s (median) | rounds "
          "| server CPU ms a command (median) | NO/BAD |" % (args.clients, args.seconds, args.runs))
    print("|---|---|---|---|---|")
    for name in ("mailnet", "dovecot"):
        if rates[name]:
            print("| %s | %.0f | %s | %.2f | %d |" % (name, statistics.median(rates[name]),
                                                      " ".join("%.0f" % r for r in rates[name]),
                                                      statistics.median(cpus[name]) * 1000, errors[name]))
    print()
    print("mean latency (ms) by command: " + ", ".join(
        "%s %s" % (name, " ".join("%s %.1f" % (c, 1000 * s / n) for c, (n, s) in sorted(latencies[name].items())))
        for name in ("mailnet", "dovecot") if latencies[name]))
    if rates["mailnet"] and rates["dovecot"]:
        print("ratio Dovecot / mailnet: commands/s %.2f, server CPU a command %.2f" % (
            statistics.median(rates["dovecot"]) / statistics.median(rates["mailnet"]),
            statistics.median(cpus["mailnet"]) / statistics.median(cpus["dovecot"])))
    if args.profile:
        print("profile of mailnet written to", args.profile)


if __name__ == "__main__":
    main()
