#!/usr/bin/env python3
"""
SMTP reception benchmark: mailnet beside Postfix and aiosmtpd, same run.

Every server delivers every message durably into a Maildir (fsync before
the 250) for domain bench.test.  Load comes from Postfix's smtp-source via
/work/shared/bench/smtp-bench, which also checks that every message reached
the Maildir.  Workloads are interleaved (postfix, aiosmtpd, mailnet, and
again) and repeated; medians and ratios are printed at the end, as a
Markdown table.

    /tmp/venv/bin/python bench/smtp_bench.py [--repeat 3] [--messages 2000]
        [--only 20x4k,1x4k,...] [--servers postfix,aiosmtpd,mailnet]

Peers run in their own scratch dir (default /tmp/mailnet-bench-smtp) on
ports 12125 (Postfix) and 12126 (aiosmtpd), so that other benchmarks using
the shared defaults are not disturbed; mailnet listens on 12127.  Everything
started here is stopped at the end (by pid / postfix -c DIR stop).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("BENCH_SHARED", "/work/shared/bench")
SCRATCH = os.environ.get("BENCH_SCRATCH", "/tmp/mailnet-bench-smtp")
PORTS = {"postfix": 12125, "aiosmtpd": 12126, "mailnet": 12127}
RCPT = "user@bench.test"

# name: (sessions, size, extra smtp-source options, message count factor)
WORKLOADS = {
    "20x4k": (20, 4096, "", 1.0),
    "1x4k": (1, 4096, "", 0.25),
    "20x100k": (20, 100 * 1024, "", 0.5),
    "1x100k": (1, 100 * 1024, "", 0.125),
    "20x4k-d": (20, 4096, "-d", 1.0),
    "1x4k-d": (1, 4096, "-d", 0.25),
}
DESCRIPTIONS = {
    "20x4k": "20 sessions, 4 KB, one message per connection",
    "1x4k": "1 session, 4 KB, one message per connection",
    "20x100k": "20 sessions, 100 KB, one message per connection",
    "1x100k": "1 session, 100 KB, one message per connection",
    "20x4k-d": "20 sessions, 4 KB, persistent (-d)",
    "1x4k-d": "1 session, 4 KB, persistent (-d)",
}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Mailnet:
    """A mailnet process for the benchmark (fresh data dir per workload)."""

    def __init__(self, port):
        self.port = port
        self.process = None
        self.dir = os.path.join(SCRATCH, "mailnet")

    @property
    def maildir(self):
        return os.path.join(self.dir, "data", "mail", "bench.test", "user")

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        config = os.path.join(self.dir, "mailnet.toml")
        with open(config, "w") as f:
            f.write(f"""[server]
hostname = "bench-mailnet.localdomain"
data_dir = "{self.dir}/data"
[domains]
local = ["bench.test"]
[listen]
smtp = "tcp:{self.port}:interface=127.0.0.1:backlog=128"
submission = ""
submissions = ""
pop3 = ""
pop3s = ""
imap = ""
imaps = ""
http = ""
[limits]
connections_per_ip = 1000
[log]
level = "info"
""")
        env = dict(os.environ, PYTHONPATH=ROOT)
        run = [sys.executable, "-m", "mailnet", "--config", config]
        subprocess.run(run + ["user", "add", "user@bench.test", "bench-pw"], env=env, check=True,
                       capture_output=True)
        subprocess.run(run + ["alias", "add", "@bench.test", "user@bench.test"], env=env, check=True,
                       capture_output=True)
        profile = os.environ.get("BENCH_PROFILE")  # cProfile output of the reactor thread
        if profile:
            # not -m cProfile: twistd ends by re-raising SIGTERM, cProfile would write nothing
            run = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiled_mailnet.py"), "--config", config]
            env["BENCH_PROFILE_OUT"] = profile
        self.process = subprocess.Popen(run + ["run"], env=env, stdout=open(os.path.join(self.dir, "log"), "w"),
                                        stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        listeners = os.path.join(self.dir, "data", "run", "listeners.json")
        while not os.path.exists(listeners):
            if time.time() > deadline or self.process.poll() is not None:
                raise RuntimeError("mailnet did not start: " + open(os.path.join(self.dir, "log")).read())
            time.sleep(0.1)
        os.makedirs(os.path.join(self.maildir, "new"), exist_ok=True)
        os.makedirs(os.path.join(self.maildir, "cur"), exist_ok=True)
        os.makedirs(os.path.join(self.maildir, "tmp"), exist_ok=True)
        # deliver once so that the account exists (not timed)
        subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(self.port), "--to", RCPT, "--from",
                        "warm@load.test", "--silent", "2"], check=True, capture_output=True)

    def cpu(self):
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _procTimes(pid, children=False):
    """utime+stime (+ reaped children's when asked) of pid, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def peerCpu(name):
    """
    CPU seconds used so far by a peer: Postfix's master, the daemons it runs
    now and those it has reaped; aiosmtpd's one process.
    """
    if name == "postfix":
        try:
            with open(os.path.join(SCRATCH, "postfix", "data", "master.lock")) as f:
                master = int("".join(c for c in f.read() if c.isdigit()))
        except (OSError, ValueError):
            return None
        kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
        return _procTimes(master, children=True) + sum(_procTimes(int(k)) for k in kids)
    if name == "aiosmtpd":
        try:
            with open(os.path.join(SCRATCH, "aiosmtpd.pid")) as f:
                return _procTimes(int(f.read().strip()))
        except (OSError, ValueError):
            return None
    return None


def peers(action, *names):
    env = dict(os.environ, BENCH_SCRATCH=SCRATCH, PORT_POSTFIX=str(PORTS["postfix"]),
               PORT_AIOSMTPD=str(PORTS["aiosmtpd"]), PORT_TWISTD="12128")
    script = os.path.join(SHARED, "start-peers" if action == "start" else "stop-peers")
    subprocess.run([script, *names], env=env, check=action == "start")


def maildirFor(name, mailnet):
    if name == "mailnet":
        return mailnet.maildir
    return os.path.join(SCRATCH, "maildirs", name)


def emptyMaildir(path):
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if os.path.isdir(d):
            for entry in os.scandir(d):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass  # the server moved it new/ -> cur/ meanwhile (a folder opened)


def bench(name, port, sessions, messages, size, opts, maildir):
    env = dict(os.environ, SMTP_BENCH_OPTS=opts)
    result = subprocess.run([os.path.join(SHARED, "smtp-bench"), "127.0.0.1", str(port), RCPT, str(sessions),
                             str(messages), str(size), maildir], env=env, capture_output=True, text=True)
    line = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    match = re.search(r"= (\d+) msg/s, delivered (\d+)/(\d+)(?: \(in maildir after [\d.]+ s = (\d+) msg/s\))?", line)
    if result.returncode != 0 or not match or match.group(2) != match.group(3):
        log(f"  {name}: FAILED: {line.strip()} {result.stderr.strip()[:500]}")
        return None
    rate = int(match.group(4) or match.group(1))  # durable in the Maildir
    log(f"  {name:9} {line.strip()}")
    return rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2000, help="messages for the 20-session 4 KB workloads")
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--servers", default="postfix,aiosmtpd,mailnet")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()
    servers = a.servers.split(",")
    workloads = a.only.split(",")
    os.makedirs(SCRATCH, exist_ok=True)
    mailnet = Mailnet(PORTS["mailnet"])
    results = {w: {s: [] for s in servers} for w in workloads}
    cpu = {w: {s: [] for s in servers} for w in workloads}
    try:
        peerNames = [s for s in servers if s != "mailnet"]
        if peerNames:
            peers("start", *peerNames)
        for w in workloads:
            sessions, size, opts, factor = WORKLOADS[w]
            messages = max(50, int(a.messages * factor))
            log(f"{w}: {DESCRIPTIONS[w]}, {messages} messages")
            if "mailnet" in servers:
                mailnet.start()
            for rep in range(a.repeat):
                for s in servers:
                    maildir = maildirFor(s, mailnet)
                    emptyMaildir(maildir)
                    before = mailnet.cpu() if s == "mailnet" else peerCpu(s)
                    rate = bench(s, PORTS[s], sessions, messages, size, opts, maildir)
                    if s != "mailnet":
                        time.sleep(0.5)  # let Postfix's daemons finish and be counted
                    after = mailnet.cpu() if s == "mailnet" else peerCpu(s)
                    if rate and before is not None and after is not None:
                        cpu[w][s].append((after - before) / messages * 1e6)
                    results[w][s].append(rate)
            if "mailnet" in servers:
                mailnet.stop()
    finally:
        mailnet.stop()
        if [s for s in servers if s != "mailnet"]:
            peers("stop", "--clean")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "cpu_us_per_msg": cpu}, f, indent=1)
    head = "| workload | " + " | ".join(servers) + " | " + " | ".join(
        f"mailnet / {s}" for s in servers if s != "mailnet") + " | CPU µs/msg (" + ", ".join(servers) + ") |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for w in workloads:
        med = {}
        for s in servers:
            rates = [r for r in results[w][s] if r]
            med[s] = statistics.median(rates) if rates else None
        cells = [f"{med[s]:.0f}" if med[s] else "failed" for s in servers]
        ratios = []
        for s in servers:
            if s == "mailnet":
                continue
            ok = med.get("mailnet") and med[s]
            ratios.append(f"{med['mailnet'] / med[s]:.2f}" if ok else "-")
        cpuText = ", ".join(f"{statistics.median(cpu[w][s]):.0f}" if cpu[w][s] else "-" for s in servers)
        print(f"| {DESCRIPTIONS[w]} | " + " | ".join(cells) + " | " + " | ".join(ratios) + f" | {cpuText} |")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
