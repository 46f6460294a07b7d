"""
Relay throughput of the outbound queue, in messages per second, to a local
sink (Postfix's smtp-sink), with connection reuse on and off; Postfix
relaying to the same sink, in the same run, as the peer.

    /tmp/venv/bin/python bench/queue_relay.py [--messages 2000] [--size 2048] [--no-postfix]

What is measured, for both MTAs alike: N messages (one recipient each) wait
in the queue; the clock starts when the queue is flushed and stops when the
queue is empty (every message accepted by the sink and its queue file
removed).  mailnet: items written with ``Spool.newMessage`` into a running
server's spool, then ``flush`` on the control socket.  Postfix: messages
injected with smtp-source while ``defer_transports = smtp`` holds them, then
``postqueue -f``.

Both send through one destination (mailnet's ``[relay] smarthost``,
Postfix's ``relayhost``) with at most 4 connections to it (mailnet
``max_connections_per_destination = 4``, Postfix
``default_destination_concurrency_limit = 4``).  "Reuse off" is
``messages_per_connection = 1`` for mailnet and
``smtp_connection_cache_on_demand = no`` for Postfix (one message per
connection).  The sink's own counters give the number of connections.

Not a test: nothing is asserted; it prints a table.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from twisted.internet import defer  # noqa: E402

from mailnet.queue import control  # noqa: E402
from mailnet.queue.spool import Spool  # noqa: E402
from tests.harness import freePort, MailServer  # noqa: E402


def messageBytes(size, n):
    head = (f"From: sender@example.test\r\nTo: rcpt{n}@remote.test\r\nSubject: bench {n}\r\n"
            f"Message-ID: <bench{n}@example.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghij.\r\n"
    body = (line * (max(0, size - len(head)) // len(line) + 1))[: max(0, size - len(head))]
    if not body.endswith(b"\r\n"):
        body = body[:-2] + b"\r\n" if len(body) >= 2 else b"\r\n"
    return head + body


class SmtpSink:
    def __init__(self, directory):
        self.port = freePort()
        self.out = open(os.path.join(directory, "sink.out"), "w+b")
        self.process = subprocess.Popen(["smtp-sink", "-u", "postfix", "-c", f"127.0.0.1:{self.port}", "1000"],
                                        stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        # (that probe counts as one session)

    def counters(self):
        self.out.flush()
        with open(self.out.name, "rb") as f:
            text = f.read().decode("ascii", "replace")
        last = [part for part in text.replace("\n", "\r").split("\r") if part.startswith("sess=")]
        if not last:
            return {"sess": 0, "quit": 0, "mesg": 0}
        return {k: int(v) for k, v in (field.split("=") for field in last[-1].split())}

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def sync(f, *a, **kw):
    return defer.maybeDeferred(f, *a, **kw)


def benchMailnetPostgres(directory, sink, count, size, reuse, pg, tree=None, label="pg", claim=(0.1, 500)):
    """
    The same with the queue shared in PostgreSQL (one node): the rows are
    written first, unclaimed and not due; the clock starts when they are
    made due and stops when the table is empty (claimed in batches, each
    message copied to the node, relayed, its row deleted).  ``tree``: run
    the node from that source tree (another version of mailnet, e.g. a
    ``git archive`` of main) instead of this one.  Also returns the CPU
    seconds of the node process and of the PostgreSQL processes.
    """
    from mailnet.queue.envelope import Envelope, RecipientState
    from mailnet.queue.pgspool import insertItem
    from mailnet.queue.spool import newQueueId
    from postgres_nodes import cpuOf, postgresCpu

    dbname = pg.newDatabase()
    server = MailServer(os.path.join(directory, f"mailnet-{label}-{'reuse' if reuse else 'noreuse'}-{dbname}"),
                        env={"PYTHONPATH": tree} if tree else None, config={
        "relay": {"smarthost": f"127.0.0.1:{sink.port}", "smarthost_tls": "opportunistic",
                  "max_connections_per_destination": 4, "messages_per_connection": 100 if reuse else 1},
        "store": {"backend": "memory"},
        "queue": {"delay_warning": 0, "backend": "postgres", "claim_interval": claim[0], "claim_batch": claim[1]},
        "postgres": {"host": pg.dir, "port": pg.port, "dbname": dbname, "user": "mailnet"},
        "log": {"level": "info"},
    })
    with pg.connect(dbname) as conn:
        for n in range(count):
            data = messageBytes(size, n)
            env = Envelope(id=newQueueId(), sender="sender@example.test", arrival=time.time(), size=len(data),
                           recipients=[RecipientState(address=f"rcpt{n}@remote.test", next_attempt=time.time())])
            with conn.transaction():
                insertItem(conn, env, env.serialize(), io.BytesIO(data), None, 0)
        conn.execute("UPDATE queue_items SET next_try = 1e12")  # not due yet
    server.start()
    try:
        before = sink.counters()
        with pg.connect(dbname) as conn:
            node0, db0 = cpuOf(server.process.pid), postgresCpu(pg)
            t0 = time.perf_counter()
            conn.execute("UPDATE queue_items SET next_try = 0")
            while conn.execute("SELECT EXISTS (SELECT 1 FROM queue_items)").fetchone()[0]:
                time.sleep(0.005)
            elapsed = time.perf_counter() - t0
            nodeCpu, dbCpu = cpuOf(server.process.pid) - node0, postgresCpu(pg) - db0
    finally:
        server.stop()
    time.sleep(0.3)
    after = sink.counters()
    pg.dropDatabase(dbname)
    return elapsed, after["mesg"] - before["mesg"], after["sess"] - before["sess"], nodeCpu, dbCpu


def benchMailnet(directory, sink, count, size, reuse):
    server = MailServer(os.path.join(directory, f"mailnet-{'reuse' if reuse else 'noreuse'}"), config={
        "relay": {"smarthost": f"127.0.0.1:{sink.port}", "smarthost_tls": "opportunistic",
                  "max_connections_per_destination": 4, "messages_per_connection": 100 if reuse else 1},
        "store": {"backend": "memory"},
        "queue": {"delay_warning": 0},
        "log": {"level": "info"},
    })
    server.start()
    try:
        spool = Spool(os.path.join(server.dataDir, "queue"), runInThread=sync)
        for n in range(count):
            w = spool.newMessage("sender@example.test", [{"address": f"rcpt{n}@remote.test"}])
            w.write(messageBytes(size, n))
            w._commit()  # durable, without telling anyone: the flush finds them
        before = sink.counters()
        sock = os.path.join(server.dataDir, "run", "queue.sock")
        t0 = time.perf_counter()
        control.ask(sock, "flush")
        while any(name.endswith(".json") for name in os.listdir(spool.path)):
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
    finally:
        server.stop()  # closes the cached connections, so the sink counts them
    time.sleep(0.3)
    after = sink.counters()
    return elapsed, after["mesg"] - before["mesg"], after["sess"] - before["sess"]


MAIN_CF = """\
compatibility_level = 3.6
config_directory = {base}/etc
queue_directory = {base}/spool
data_directory = {base}/data
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
maillog_file_prefixes = {base}
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.example.test
mydomain = example.test
myorigin = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{sinkPort}
defer_transports = smtp
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = {base}/maillog
smtp_tls_security_level = may
smtpd_tls_security_level =
default_destination_concurrency_limit = 4
smtp_destination_concurrency_limit = 4
initial_destination_concurrency = 4
smtp_connection_cache_on_demand = {cache}
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
anvil_rate_time_unit = 60s
"""


def postfixMasterCf(base, smtpdPort):
    out = []
    with open("/etc/postfix/master.cf") as f:
        for line in f:
            fields = line.split()
            if line.startswith(("#", " ", "\t")) or not fields:
                out.append(line)
                continue
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{smtpdPort}"
            if len(fields) >= 8:
                fields[4] = "n"  # no chroot: the queue is in a temporary directory
            out.append(" ".join(fields) + "\n")
    return "".join(out)


def benchPostfix(directory, sink, count, size, reuse):
    base = tempfile.mkdtemp(prefix=f"postfix-{'reuse' if reuse else 'noreuse'}-", dir=directory)  # one per round
    os.chmod(base, 0o755)  # Postfix daemons run as the postfix user
    etc = os.path.join(base, "etc")
    os.makedirs(etc)
    os.makedirs(os.path.join(base, "data"))
    os.makedirs(os.path.join(base, "spool"))
    smtpdPort = freePort()
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write(MAIN_CF.format(base=base, sinkPort=sink.port, cache="yes" if reuse else "no"))
    with open(os.path.join(etc, "master.cf"), "w") as f:
        f.write(postfixMasterCf(base, smtpdPort))
    shutil.chown(os.path.join(base, "data"), "postfix")
    env = dict(os.environ, MAIL_CONFIG=etc)
    run = lambda *cmd: subprocess.run(list(cmd), env=env, capture_output=True, text=True)  # noqa: E731
    r = run("postfix", "-c", etc, "start")
    if r.returncode:
        log = open(os.path.join(base, "maillog")).read() if os.path.exists(os.path.join(base, "maillog")) else ""
        raise RuntimeError(f"postfix did not start: {r.stdout}{r.stderr}{log[-2000:]}")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", smtpdPort), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        # Inject with smtp-source: 4 sessions in parallel, one recipient each.
        msgfile = os.path.join(base, "message.eml")
        with open(msgfile, "wb") as f:
            f.write(messageBytes(size, 0))
        r = subprocess.run(["smtp-source", "-s", "4", "-m", str(count), "-f", "sender@example.test",
                            "-t", "rcpt@remote.test", "-F", msgfile, f"127.0.0.1:{smtpdPort}"],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"smtp-source failed: {r.stderr}")
        spool = os.path.join(base, "spool")

        def queued():
            return sum(len(files) for sub in ("incoming", "active", "deferred", "maildrop")
                       for _, _, files in os.walk(os.path.join(spool, sub)))

        deadline = time.monotonic() + 60
        while queued() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        # Wait until the queue manager has deferred them all (nothing active).
        time.sleep(1.0)
        before = sink.counters()
        t0 = time.perf_counter()
        run("postqueue", "-c", etc, "-f")
        while queued() > 0:
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        time.sleep(0.3)
        after = sink.counters()
    finally:
        run("postfix", "-c", etc, "stop")
    return elapsed, after["mesg"] - before["mesg"], after["sess"] - before["sess"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=2048, help="bytes per message")
    p.add_argument("--no-postfix", action="store_true")
    p.add_argument("--postgres", action="store_true",
                   help="also mailnet with the queue shared in PostgreSQL (a server started here, fsync on)")
    p.add_argument("--old-tree", metavar="DIR",
                   help="with --postgres: also the shared queue of the mailnet in DIR (e.g. a git archive of main), "
                        "alternated with this one in each round")
    p.add_argument("--pg-claim-defaults", action="store_true",
                   help="the shared queue with the default claim_interval and claim_batch (5 s, 200) instead of "
                        "0.1 s and 500: how fast a backlog the node did not accept (a dead node's) drains")
    p.add_argument("--rounds", type=int, default=1, help="rounds of every run, alternated; medians reported")
    p.add_argument("--reuse-only", action="store_true", help="only the runs with connection reuse on")
    p.add_argument("--pg-fsync-off", action="store_true",
                   help="diagnosis only: the PostgreSQL server without fsync (are commit flushes the bound?)")
    args = p.parse_args()
    if not shutil.which("smtp-sink"):
        sys.exit("smtp-sink not found (apt-get install postfix)")
    directory = tempfile.mkdtemp(prefix="queue-bench-")
    os.chmod(directory, 0o755)  # Postfix daemons run as the postfix user
    sink = SmtpSink(directory)
    rows = []
    pg = None
    if args.postgres:
        from tests.store.postgres_fixture import PostgresServer, binDir

        pg = PostgresServer(binDir(), fsync=not args.pg_fsync_off)
        pg.init()
        pg.makeTemplate()
    try:
        for r in range(args.rounds):
            for reuse in (True,) if args.reuse_only else (True, False):
                runs = [("mailnet", lambda: benchMailnet(directory, sink, args.messages, args.size, reuse))]
                if pg is not None:
                    claim = (5.0, 200) if args.pg_claim_defaults else (0.1, 500)
                    runs.append(("mailnet-pg", lambda: benchMailnetPostgres(directory, sink, args.messages,
                                                                            args.size, reuse, pg, claim=claim)))
                    if args.old_tree:
                        runs.append(("old-pg", lambda: benchMailnetPostgres(
                            directory, sink, args.messages, args.size, reuse, pg, tree=args.old_tree, label="old",
                            claim=claim)))
                if not args.no_postfix and shutil.which("postfix"):
                    runs.append(("postfix", lambda: benchPostfix(directory, sink, args.messages, args.size, reuse)))
                if r % 2:
                    runs.reverse()  # alternate the order from round to round
                for mta, run in runs:
                    try:
                        result = run()
                    except Exception as e:
                        print(f"{mta} run failed: {e}", file=sys.stderr)
                        continue
                    rows.append((r, mta, reuse, *result))
                    print(f"round {r + 1}: {mta} reuse {'on' if reuse else 'off'}: "
                          f"{args.messages / result[0]:.0f} msg/s", file=sys.stderr, flush=True)
    finally:
        sink.stop()
        if pg is not None:
            pg.destroy()
    print(f"\n{args.messages} messages of {args.size} bytes, one recipient each, to smtp-sink on 127.0.0.1; "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(f"{'round':5} {'MTA':10} {'reuse':6} {'seconds':>8} {'msg/s':>8} {'delivered':>9} {'connections':>11} "
          f"{'node CPU ms/msg':>15} {'db CPU ms/msg':>13}")
    rates = {}
    for r, mta, reuse, elapsed, delivered, sessions, *cpu in rows:
        rate = args.messages / elapsed
        rates.setdefault((mta, reuse), []).append(rate)
        cpuText = f"{cpu[0] / args.messages * 1000:15.2f} {cpu[1] / args.messages * 1000:13.2f}" if cpu else ""
        print(f"{r + 1:5} {mta:10} {'on' if reuse else 'off':6} {elapsed:8.2f} {rate:8.0f} {delivered:9} "
              f"{sessions:11} {cpuText}")
    median = {key: statistics.median(values) for key, values in rates.items()}
    print("\nmedians (msg/s): " + ", ".join(f"{mta} reuse {'on' if reuse else 'off'} {rate:.0f}"
                                             for (mta, reuse), rate in median.items()))
    for reuse in (True, False):
        for a, b in (("mailnet", "postfix"), ("mailnet-pg", "mailnet"), ("mailnet-pg", "postfix"),
                     ("old-pg", "mailnet"), ("old-pg", "postfix"), ("mailnet-pg", "old-pg")):
            if (a, reuse) in median and (b, reuse) in median:
                print(f"{a}/{b}, reuse {'on' if reuse else 'off'}: {median[(a, reuse)] / median[(b, reuse)]:.2f}")
    if ("mailnet", True) in median and ("mailnet", False) in median:
        print(f"mailnet reuse on/off: {median[('mailnet', True)] / median[('mailnet', False)]:.2f}")
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
