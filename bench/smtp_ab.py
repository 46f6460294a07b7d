#!/usr/bin/env python3
"""
A/B benchmark of mailnet against itself: two (or more) source trees, each
run as its own server, loaded in turn (interleaved repetitions) with
smtp-source through /work/shared/bench/smtp-bench.  Besides msg/s it
reports the server's CPU per message, in total and for the reactor (main)
thread alone: CPU per message moves much less than msg/s when other work
shares the machine, so it is the better figure for small changes.

    /tmp/venv/bin/python bench/smtp_ab.py A=/tmp/base B=. [--repeat 5]
        [--only 20x4k,20x4k-d] [--messages 2000] [--mailboxes 1] [--port 12140]

``--mailboxes N`` sends to N different users (smtp-source -t for each
session is fixed, so N smtp-source processes share the sessions).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import smtp_bench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def threadTimes(pid):
    """{tid: (name, cpu seconds)} for every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        name = data[data.index("(") + 1:data.rindex(")")]
        fields = data.rsplit(")", 1)[1].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


class Server(smtp_bench.Mailnet):
    def __init__(self, name, root, port, env=None):
        super().__init__(port)
        self.name = name
        self.env = env or {}
        self.root = os.path.abspath(root)
        self.dir = os.path.join(smtp_bench.SCRATCH, "ab-" + name)

    def start(self, mailboxes=1):
        # smtp_bench.Mailnet.start with this tree on the path
        old = smtp_bench.ROOT, dict(os.environ)
        smtp_bench.ROOT = self.root
        os.environ.update(self.env)
        cwd = os.getcwd()
        os.chdir(self.root)  # python -m puts the working directory first on sys.path
        try:
            super().start()
        finally:
            os.chdir(cwd)
            smtp_bench.ROOT = old[0]
            os.environ.clear()
            os.environ.update(old[1])
        env = dict(os.environ, PYTHONPATH=self.root)
        config = os.path.join(self.dir, "mailnet.toml")
        for i in range(1, mailboxes):
            subprocess.run([sys.executable, "-m", "mailnet", "--config", config, "user", "add",
                            f"user{i}@bench.test", "pw"], env=env, check=True, capture_output=True)
            for sub in ("new", "cur", "tmp"):
                os.makedirs(os.path.join(self.maildirN(i), sub), exist_ok=True)

    def maildirN(self, i):
        return self.maildir if i == 0 else os.path.join(self.dir, "data", "mail", "bench.test", f"user{i}")


def run(server, sessions, messages, size, opts, mailboxes):
    """One load; returns (msg/s, cpu µs/msg total, reactor µs/msg)."""
    for i in range(mailboxes):
        smtp_bench.emptyMaildir(server.maildirN(i))
    before = threadTimes(server.process.pid)
    t0 = time.time()
    procs = []
    per = messages // mailboxes
    for i in range(mailboxes):
        rcpt = smtp_bench.RCPT if i == 0 else f"user{i}@bench.test"
        env = dict(os.environ, SMTP_BENCH_OPTS=opts)
        procs.append(subprocess.Popen(
            [os.path.join(smtp_bench.SHARED, "smtp-bench"), "127.0.0.1", str(server.port), rcpt,
             str(max(1, sessions // mailboxes)), str(per), str(size), server.maildirN(i)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    ok = True
    for p in procs:
        out, err = p.communicate()
        last = out.strip().splitlines()[-1] if out.strip() else err
        if p.returncode != 0 or "delivered" not in last:
            smtp_bench.log(f"  {server.name}: FAILED {last.strip()} {err.strip()[:300]}")
            ok = False
    elapsed = time.time() - t0
    after = threadTimes(server.process.pid)
    if not ok:
        return None
    pid = server.process.pid
    total = sum(t for _, t in after.values()) - sum(t for _, t in before.values())
    main = after[pid][1] - before[pid][1]
    n = per * mailboxes
    # elapsed includes waiting for the Maildir count (a few ms for mailnet)
    return n / elapsed, total / n * 1e6, main / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="+", help="NAME=PATH[,VAR=VALUE...] (environment of that server)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--only", default="20x4k,20x4k-d")
    ap.add_argument("--mailboxes", type=int, default=1)
    ap.add_argument("--port", type=int, default=12140, help="first port (one per tree): apart from other runs")
    a = ap.parse_args()
    servers = []
    for i, spec in enumerate(a.trees):
        name, _, rest = spec.partition("=")
        path, *envs = rest.split(",")
        servers.append(Server(name, path, a.port + i, dict(e.split("=", 1) for e in envs)))
    for w in a.only.split(","):
        sessions, size, opts, factor = smtp_bench.WORKLOADS[w]
        messages = max(50, int(a.messages * factor))
        smtp_bench.log(f"{w}: {messages} messages, {a.mailboxes} mailbox(es), load {os.getloadavg()[0]:.1f}")
        results = {s.name: [] for s in servers}
        try:
            for s in servers:
                s.start(a.mailboxes)
            for rep in range(a.repeat):
                order = servers if rep % 2 == 0 else servers[::-1]
                for s in order:
                    r = run(s, sessions, messages, size, opts, a.mailboxes)
                    if r:
                        results[s.name].append(r)
                        smtp_bench.log(f"  {s.name:8} {r[0]:7.0f} msg/s  cpu {r[1]:6.0f} µs/msg  reactor {r[2]:6.0f}")
        finally:
            for s in servers:
                s.stop()
        print(f"{w} ({a.mailboxes} mailbox(es)): medians of {a.repeat}, load now {os.getloadavg()[0]:.1f}")
        base = None
        for s in servers:
            rs = results[s.name]
            if not rs:
                print(f"  {s.name}: failed")
                continue
            rate, cpu, main_ = (statistics.median(x[i] for x in rs) for i in range(3))
            if base is None:
                base = (rate, cpu, main_)
            print(f"  {s.name:8} {rate:7.0f} msg/s ({rate / base[0]:.2f})  cpu {cpu:6.0f} µs/msg ({cpu / base[1]:.2f})"
                  f"  reactor {main_:6.0f} µs/msg ({main_ / base[2]:.2f})")


if __name__ == "__main__":
    main()
