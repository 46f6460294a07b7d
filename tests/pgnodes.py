"""
Several real mailnet nodes on one PostgreSQL (issue 18, docs/scaling.md
"How it is tested"): the helpers the multi-node tests share.

* :func:`pgConfig`: a node's config on the test PostgreSQL
  (tests/store/postgres_fixture.py), reached by its Unix socket.
* :class:`NodeHosts`: one address per node.  As root (CAP_NET_ADMIN) each
  node gets a network namespace of its own (``ip netns add``) joined to the
  test process by a veth pair, ``10.200.X.1`` on the host side and
  ``10.200.X.2`` inside, and runs under ``ip netns exec``; every namespace
  routes 10.200.0.0/16 to the host, so the nodes also reach the test's
  own servers (an aiosmtpd sink) on the first pair's host address.  The
  Unix socket of PostgreSQL is a file, which every namespace sees.
  Without the right to make namespaces (or with ``MAILNET_TEST_NETNS=0``)
  the nodes listen on 127.0.0.2, 127.0.0.3, ... instead, and the test's
  servers on 127.0.0.1.  Everything made is removed at the end, also when
  a test fails; namespaces left by a test process that was killed are
  removed by the next run.
* ``pgNodes``: the fixture that starts ``pgNodes(3, config)`` nodes.
* Clients (imapclient, poplib, smtplib) that talk to a node's address.
"""

from __future__ import annotations

import fcntl
import os
import poplib
import re
import shutil
import smtplib
import ssl
import subprocess
import time

import pytest

from tests.harness import MailServer
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

ALICE = ("alice@example.test", "alice-pw")
NET = "10.200"
LOCK = "/run/lock/mailnet-test-netns.lock"
NS_PREFIX = "mnt"  # mnt<pid>-<k>: the test process that made it


def pgConfig(pgServer, dbname, **extra):
    """A node's config on the test PostgreSQL; ``extra``: sections merged in."""
    config = {"store": {"backend": "postgres"},
              "postgres": {"host": pgServer.dir, "port": pgServer.port, "dbname": dbname, "user": "mailnet",
                           "connect_timeout": 2, "statement_timeout": 5}}
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    return config


def queued(pgServer, dbname, what="id"):
    """A column of the shared queue's items (tests/queue/test_pgqueue_nodes_e2e.py and the three-node tests)."""
    with pgServer.connect(dbname) as conn:
        return [r[0] for r in conn.execute(f"SELECT {what} FROM queue_items ORDER BY id").fetchall()]


def eventually(check, seconds=20, what="the condition"):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


def _ip(*argv, check=True):
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check, timeout=30)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NodeHosts:
    """
    ``count`` node addresses (see the module docstring).  ``addresses[i]``:
    where node i listens; ``prefix(i)``: the argv that runs a command as
    node i (in its namespace); ``gateway``: the test process's own address
    that every node reaches.  ``isolated``: namespaces were made.
    """

    def __init__(self, count):
        self.count = count
        self.namespaces = []  # (namespace, host-side veth)
        self.addresses = []
        self.gateway = "127.0.0.1"
        self.isolated = False

    def setup(self):
        if os.environ.get("MAILNET_TEST_NETNS", "1") != "0" and shutil.which("ip") and os.geteuid() == 0:
            try:
                self._makeNamespaces()
                self.isolated = True
                return self
            except (OSError, subprocess.CalledProcessError):
                self.teardown()  # e.g. no CAP_NET_ADMIN in a container: loopback addresses
        self.namespaces, self.addresses = [], [f"127.0.0.{2 + i}" for i in range(self.count)]
        self.gateway = "127.0.0.1"
        return self

    def prefix(self, i):
        return ["ip", "netns", "exec", self.namespaces[i][0]] if self.isolated else []

    def _makeNamespaces(self):
        os.makedirs(os.path.dirname(LOCK), exist_ok=True)
        with open(LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another xdist worker picks its subnets after us
            self._removeStale()
            used = set(re.findall(r"inet 10\.200\.(\d+)\.", _ip("-o", "-4", "addr", "show").stdout))
            free = [x for x in range(1, 255) if str(x) not in used]
            if len(free) < self.count:
                raise OSError("no free 10.200.X.0/24 subnets")
            for k, x in enumerate(free[:self.count]):
                name, host, inside = f"{NS_PREFIX}{os.getpid()}-{k}", f"mnv{x}h", f"mnv{x}n"
                _ip("netns", "add", name)
                self.namespaces.append((name, host))
                _ip("link", "add", host, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", name)
                _ip("addr", "add", f"{NET}.{x}.1/24", "dev", host)
                _ip("link", "set", host, "up")
                _ip("-n", name, "addr", "add", f"{NET}.{x}.2/24", "dev", inside)
                _ip("-n", name, "link", "set", inside, "up")
                _ip("-n", name, "link", "set", "lo", "up")
                _ip("-n", name, "route", "add", f"{NET}.0.0/16", "via", f"{NET}.{x}.1")
                self.addresses.append(f"{NET}.{x}.2")
            self.gateway = self.addresses[0].rsplit(".", 1)[0] + ".1"

    @staticmethod
    def _removeStale():
        """Namespaces of test processes that no longer run (killed before their teardown)."""
        for line in _ip("netns", "list", check=False).stdout.splitlines():
            m = re.match(rf"({NS_PREFIX}(\d+)-\d+)\b", line)
            if m and not _alive(int(m.group(2))):
                _ip("netns", "del", m.group(1), check=False)

    def teardown(self):
        for name, host in self.namespaces:
            _ip("netns", "del", name, check=False)  # takes the veth pair with it
            _ip("link", "del", host, check=False)
        self.namespaces = []


@pytest.fixture
def loopbackNodes(pgServer, pgDatabase, tmp_path):
    """Two nodes, a and b, on one database, both on 127.0.0.1; alice in each node's users file."""
    started = []
    try:
        for name in "ab":
            node = MailServer(tmp_path / f"node{name}", config=pgConfig(pgServer, pgDatabase))
            node.start()
            started.append(node)
            node.addUser(*ALICE)
        yield started
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def pgNodes(pgServer, pgDatabase, tmp_path):
    """
    ``pgNodes(count, config=None, users=(ALICE,))``: ``count`` started
    nodes on one fresh database, each on its own address (:class:`NodeHosts`,
    as ``pgNodes.hosts``, made before the nodes start); all stopped and the
    namespaces removed at the end.  ``config``: a dict for every node, or
    ``config(i, hosts)`` -> node i's (default: :func:`pgConfig`).
    """
    made, hostsMade = [], []

    def make(count, config=None, users=(ALICE,)):
        hosts = NodeHosts(count).setup()
        hostsMade.append(hosts)
        make.hosts = hosts
        nodes = []
        for i, address in enumerate(hosts.addresses):
            settings = config(i, hosts) if callable(config) else config or pgConfig(pgServer, pgDatabase)
            node = MailServer(tmp_path / f"node{chr(ord('a') + i)}", config=settings, host=address,
                              prefix=hosts.prefix(i))
            made.append(node)
            node.start()
            for user in users:
                node.addUser(*user)
            nodes.append(node)
        return nodes

    try:
        yield make
    finally:
        for node in made:
            node.stop()
        for hosts in hostsMade:
            hosts.teardown()


# Clients that talk to a node's own address.


def tls(server):
    """Trusts the node's certificate (made for mx.example.test, reached here by address)."""
    context = ssl.create_default_context(cafile=server.certFile)
    context.check_hostname = False
    return context


def imap(server, user=ALICE):
    import imapclient

    c = imapclient.IMAPClient(server.host, port=server.port("imaps"), ssl=True, ssl_context=tls(server), timeout=30)
    c.login(*user)
    return c


def pop3(server, user=ALICE):
    c = poplib.POP3_SSL(server.host, server.port("pop3s"), context=tls(server), timeout=30)
    c.user(user[0])
    c.pass_(user[1])
    return c


def smtp(server, port="smtp"):
    return smtplib.SMTP(server.host, server.port(port), timeout=30)
