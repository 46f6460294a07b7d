"""
Cluster-wide state of several mailnet nodes on one PostgreSQL (issue 18,
docs/scaling.md "What is shared now"): two real server processes on one
database, driven by poplib/imaplib/smtplib.

* The POP3 maildrop lock (RFC 1939 s8) holds across nodes.
* The login failure throttle counts in one table for every node.
"""

from __future__ import annotations

import poplib
import ssl
import time

import pytest

from tests.harness import MailServer
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

pytestmark = pytest.mark.slow

ALICE = ("alice@example.test", "alice-pw")


def pgConfig(pgServer, dbname, **extra):
    config = {"store": {"backend": "postgres"},
              "postgres": {"host": pgServer.dir, "port": pgServer.port, "dbname": dbname, "user": "mailnet",
                           "connect_timeout": 2, "statement_timeout": 5}}
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    return config


def failures(pgServer, dbname):
    with pgServer.connect(dbname) as conn:
        return {(kind, key): count for kind, key, count in conn.execute("SELECT kind, key, count FROM login_failures")}


@pytest.fixture
def nodes(pgServer, pgDatabase, tmp_path):
    """Two nodes, a and b, on one database; alice in each node's users file."""
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


def pop3(server, user=ALICE):
    c = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=ssl.create_default_context(cafile=server.certFile),
                        timeout=20)
    c.user(user[0])
    c.pass_(user[1])
    return c


def test_pop3_maildrop_lock_holds_across_nodes(nodes):
    a, b = nodes
    first = pop3(a)
    with pytest.raises(poplib.error_proto) as e:
        pop3(b)
    assert e.value.args[0].startswith(b"-ERR [IN-USE]"), e.value.args
    with pytest.raises(poplib.error_proto) as e:
        pop3(a)  # a second session on the same node too
    assert e.value.args[0].startswith(b"-ERR [IN-USE]"), e.value.args
    assert first.stat() == (0, 0)  # the first session is unharmed
    first.quit()
    second = pop3(b)  # QUIT gave the lock back: node b logs in
    assert second.stat() == (0, 0)
    # A session that vanishes without QUIT gives it back as well.
    second.close()  # no QUIT: the connection just closes
    deadline = time.monotonic() + 20
    while True:
        try:
            third = pop3(a)
            break
        except poplib.error_proto as e:
            assert e.args[0].startswith(b"-ERR [IN-USE]") and time.monotonic() < deadline, e.args
            time.sleep(0.1)
    third.quit()


def test_login_failures_count_across_nodes(nodes, pgServer, pgDatabase):
    a, b = nodes
    for node in (a, a, b):
        with pytest.raises(poplib.error_proto):
            pop3(node, (ALICE[0], "wrong"))
    table = failures(pgServer, pgDatabase)
    assert table[("account", ALICE[0])] == 3, table  # two on node a, one on node b
    assert table[("ip", "127.0.0.1")] == 3, table
    # A good login on node a clears the account for every node, and trusts the address.
    pop3(a).quit()
    deadline = time.monotonic() + 20  # the clearing is not waited for by the login
    while ("account", ALICE[0]) in failures(pgServer, pgDatabase) and time.monotonic() < deadline:
        time.sleep(0.05)
    table = failures(pgServer, pgDatabase)
    assert ("account", ALICE[0]) not in table and ("ip", "127.0.0.1") not in table, table
    assert table[("trusted", "127.0.0.1 " + ALICE[0])] == 0, table
