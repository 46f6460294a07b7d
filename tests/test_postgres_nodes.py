"""
Cluster-wide state of several mailnet nodes on one PostgreSQL (issue 18,
docs/scaling.md "What is shared now"): two real server processes on one
database, driven by poplib/imaplib/smtplib.

* The POP3 maildrop lock (RFC 1939 s8) holds across nodes.
* The login failure throttle counts in one table for every node.
* Users and aliases in tables: ``mailnet user``/``alias`` on node A, a
  login or a delivery on node B.
* App passwords in the tokens table: ``mailnet token add`` on node A, an
  IMAP and an SMTP AUTH login on node B; revoked on B, refused on A.
"""

from __future__ import annotations

import hashlib
import imaplib
import os
import poplib
import smtplib
import ssl
import time

import pytest

from tests import pgnodes
from tests.harness import MailServer
from tests.pgnodes import eventually, pgConfig

pgServer = pgnodes.pgServer
pgDatabase = pgnodes.pgDatabase

pytestmark = pytest.mark.slow

ALICE = ("alice@example.test", "alice-pw")


def failures(pgServer, dbname):
    with pgServer.connect(dbname) as conn:
        return {(kind, key): count for kind, key, count in conn.execute("SELECT kind, key, count FROM login_failures")}


nodes = pgnodes.loopbackNodes  # two nodes on 127.0.0.1 (tests/pgnodes.py)


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


# Users and aliases in the database ([auth] directory = "postgres").


@pytest.fixture
def tableNodes(pgServer, pgDatabase, tmp_path):
    """Two nodes, a and b, with users and aliases in the database (and no users files)."""
    config = pgConfig(pgServer, pgDatabase, auth={"directory": "postgres", "directory_refresh": 0.5})
    started = []
    try:
        for name in "ab":
            node = MailServer(tmp_path / f"node{name}", config=config)
            node.start()
            started.append(node)
        yield started
    finally:
        for node in started:
            node.stop()


def imapLogin(server, user):
    c = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                          ssl_context=ssl.create_default_context(cafile=server.certFile), timeout=20)
    try:
        c.login(*user)
    except imaplib.IMAP4.error:
        c.shutdown()
        return None
    return c


def test_a_user_added_by_node_a_cli_logs_in_on_node_b(tableNodes, pgServer, pgDatabase):
    a, b = tableNodes
    assert "added alice@example.test" in a.mailnet("user", "add", ALICE[0], ALICE[1]).stdout
    c = imapLogin(b, ALICE)  # at once: node b reads the table for a user it does not know
    assert c is not None
    c.logout()
    pop3(b).quit()
    with pgServer.connect(pgDatabase) as conn:
        [(stored,)] = conn.execute("SELECT hash FROM users WHERE username = %s", (ALICE[0],)).fetchall()
    assert stored.startswith("{ARGON2ID}$argon2id$") and ALICE[1] not in stored  # a hash, never the password
    assert not os.path.exists(os.path.join(a.dataDir, "users"))  # no users file written
    assert b.mailnet("user", "list").stdout.split() == [ALICE[0]]
    # A second add of the same user is refused, wherever.
    assert "exists already" in b.mailnet("user", "add", ALICE[0], "x", check=False).stderr
    # A new password set on node b: node a takes the new one, not the old one.
    b.mailnet("user", "passwd", ALICE[0], "new-pw")
    eventually(lambda: imapLogin(a, (ALICE[0], ALICE[1])) is None)
    c = imapLogin(a, (ALICE[0], "new-pw"))
    assert c is not None
    c.logout()
    # Removed on node a: no login on node b any more.
    a.mailnet("user", "del", ALICE[0])
    eventually(lambda: imapLogin(b, (ALICE[0], "new-pw")) is None)
    assert b.mailnet("user", "list").stdout.split() == []


def test_an_alias_added_by_node_a_cli_delivers_on_node_b(tableNodes):
    a, b = tableNodes
    a.mailnet("user", "add", ALICE[0], ALICE[1])
    assert "sales@example.test: alice@example.test" in a.mailnet("alias", "add", "sales@example.test",
                                                                 ALICE[0]).stdout

    def accepted():
        with smtplib.SMTP("127.0.0.1", b.port("smtp"), timeout=20) as s:
            try:
                s.sendmail("someone@remote.test", ["sales@example.test"],
                           b"From: someone@remote.test\r\nSubject: for sales\r\n\r\nHello\r\n")
            except smtplib.SMTPRecipientsRefused:
                return False
            return True

    eventually(accepted)  # node b's snapshot catches up within [auth] directory_refresh
    c = imapLogin(b, ALICE)
    c.select("INBOX")
    typ, data = c.search(None, "SUBJECT", '"for sales"')
    assert typ == "OK" and len(data[0].split()) == 1
    c.logout()
    assert b.mailnet("alias", "list").stdout.strip() == "sales@example.test: alice@example.test"
    b.mailnet("alias", "del", "sales@example.test")
    eventually(lambda: not accepted())


def smtpLogin(server, user):
    """SMTP AUTH on the submission port after STARTTLS: whether it was accepted."""
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=20) as s:
        s.starttls(context=ssl.create_default_context(cafile=server.certFile))
        try:
            s.login(*user)
        except smtplib.SMTPAuthenticationError:
            return False
        return True


def test_an_app_password_made_on_node_a_logs_in_on_node_b_and_a_revoke_on_b_holds_on_a(tableNodes, pgServer,
                                                                                         pgDatabase):
    a, b = tableNodes
    a.mailnet("user", "add", ALICE[0], ALICE[1])
    token = a.mailnet("token", "add", ALICE[0], "phone").stdout.strip()
    assert token.startswith("mn_")
    # Node b: IMAP and SMTP AUTH with the token at once (a token login reads the table first).
    c = imapLogin(b, (ALICE[0], token))
    assert c is not None
    c.logout()
    assert smtpLogin(b, (ALICE[0], token))
    assert "phone" in b.mailnet("token", "list", ALICE[0]).stdout
    with pgServer.connect(pgDatabase) as conn:
        stored = conn.execute("SELECT digest, username, name FROM tokens").fetchall()
    assert [(d == hashlib.sha256(token.encode()).hexdigest(), u, n) for d, u, n in stored] == [
        (True, ALICE[0], "phone")]  # its hash at rest, never the token
    assert not os.path.exists(os.path.join(a.dataDir, "users.tokens"))
    # Revoked on node b: refused on node a at once, IMAP and SMTP; the password still works.
    assert "revoked phone" in b.mailnet("token", "revoke", ALICE[0], "phone").stdout
    assert imapLogin(a, (ALICE[0], token)) is None
    assert not smtpLogin(a, (ALICE[0], token))
    assert smtpLogin(a, ALICE)
    assert a.mailnet("token", "list", ALICE[0]).stdout.strip() == ""
