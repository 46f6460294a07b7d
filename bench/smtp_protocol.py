#!/usr/bin/env python3
"""
The SMTP protocol layer alone, in process: CPU per message of the server's
side of an SMTP dialogue (the thin Twisted protocol, the session, the effect
runner, the deadlines, the delivery bookkeeping) on a store that does
nothing, with no sockets and no threads.  Trees are run in turn, each in its
own process, interleaved; the figure is the process's CPU time per message,
which other work on the machine moves much less than a network benchmark.

    python bench/smtp_protocol.py A=/tmp/base B=. [--repeat 7] [--messages 20000]

Each message is one connection (like smtp-source without -d): greeting,
EHLO, MAIL, RCPT, DATA, a 4 KB body, the store's commit answered in the
next reactor turn, QUIT, connection lost; ``--persistent`` sends them all
over one connection instead.  Works on trees before and after the
one-protocol-shape restructuring (``makeFactory`` or ``makeService``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import gc, json, os, sys, time
from twisted.internet import defer, reactor
from twisted.logger import globalLogBeginner
from twisted.internet.address import IPv4Address
from zope.interface import implementer
from mailnet import config, net, service
from mailnet.smtp import server
from mailnet.store.interfaces import IDelivery, IMailStore
from mailnet.store.memory import MemoryStore

from mailnet import logs
messages, persistent, size, tmp = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4]
# the server's log observer (one line per message), writing to /dev/null
globalLogBeginner.beginLoggingTo([logs.textFileObserver(open(os.devnull, "w"))], redirectStandardIO=False)
pending = []


@implementer(IDelivery)
class NullDelivery:
    def addRecipient(self, username, folder="INBOX"):
        pass

    def write(self, data):
        pass

    def commit(self, internalDate=None):
        d = defer.Deferred()
        pending.append(d)
        return d

    def abort(self):
        pass


class NullStore(MemoryStore):
    def newDelivery(self):
        return NullDelivery()


class Transport:
    disconnecting = False
    TLS = False

    def __init__(self):
        self.peer = IPv4Address("TCP", "127.0.0.1", 40000)

    def write(self, data):
        pass

    def writeSequence(self, seq):
        pass

    def loseConnection(self):
        self.disconnecting = True

    def getPeer(self):
        return self.peer

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", 25)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def registerProducer(self, producer, streaming):
        pass

    def unregisterProducer(self):
        pass


raw = {"server": {"hostname": "bench-mailnet.localdomain", "data_dir": tmp + "/data"},
       "domains": {"local": ["bench.test"]}}
conf = config.fromDict(raw, source="<bench>")
context = service.MailContext(conf, reactor=reactor, store=NullStore())
with open(conf.usersFile, "w") as f:
    f.write("user@bench.test:{PLAIN}pw\n")
if hasattr(server, "makeService"):
    inner = server.makeService(context).factory("smtp")
else:
    inner = server.makeFactory(context, "smtp")
factory = net.LimitedFactory(inner, 1000, 1000, b"")
addr = IPv4Address("TCP", "127.0.0.1", 40000)
body = (b"Subject: bench\r\n\r\n" + (b"x" * 70 + b"\r\n") * (size // 72)) + b".\r\n"
lines = [b"MAIL FROM:<bench@load.test>\r\n", b"RCPT TO:<user@bench.test>\r\n", b"DATA\r\n", body]


def one(proto):
    for data in lines:
        proto.dataReceived(data)
    reactor.runUntilCurrent()  # the commit is answered in a later turn
    while pending:
        pending.pop().callback(None)


def connect():
    proto = factory.buildProtocol(addr)
    proto.makeConnection(Transport())
    proto.dataReceived(b"EHLO client.load.test\r\n")
    return proto


def close(proto):
    proto.dataReceived(b"QUIT\r\n")
    proto.connectionLost(None)


def run(n):
    if persistent:
        proto = connect()
        for _ in range(n):
            one(proto)
        close(proto)
    else:
        for _ in range(n):
            proto = connect()
            one(proto)
            close(proto)


run(max(200, messages // 10))  # warm up
gc.collect()
if os.environ.get("SMTP_PROTOCOL_PROFILE"):
    import cProfile
    cProfile.run("run(messages)", os.environ["SMTP_PROTOCOL_PROFILE"])
t0 = time.process_time()
run(messages)
cpu = time.process_time() - t0
print(json.dumps({"us": cpu / messages * 1e6}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="+", help="NAME=PATH")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--persistent", action="store_true", help="all messages over one connection")
    a = ap.parse_args()
    trees = [spec.partition("=")[::2] for spec in a.trees]
    results = {name: [] for name, _ in trees}
    for rep in range(a.repeat):
        for name, path in (trees if rep % 2 == 0 else trees[::-1]):
            with tempfile.TemporaryDirectory() as tmp:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
                out = subprocess.run([sys.executable, "-c", CHILD, str(a.messages), "1" if a.persistent else "0",
                                      str(a.size), tmp], env=env, cwd=os.path.abspath(path), capture_output=True,
                                     text=True)
            if out.returncode != 0:
                sys.exit(f"{name}: {out.stderr.strip()[-2000:]}")
            us = json.loads(out.stdout.strip().splitlines()[-1])["us"]
            results[name].append(us)
            print(f"  {name:8} {us:7.1f} µs/msg", file=sys.stderr, flush=True)
    base = None
    kind = "persistent" if a.persistent else "a connection per message"
    print(f"{kind}, {a.size} B: medians of {a.repeat}, load {os.getloadavg()[0]:.1f}")
    for name, _ in trees:
        median = statistics.median(results[name])
        base = base or median
        print(f"  {name:8} {median:7.1f} µs/msg ({median / base:.2f})  min {min(results[name]):.1f}")


if __name__ == "__main__":
    main()
