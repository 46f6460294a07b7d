"""
The real-client tests (swaks, msmtp, fetchmail, getmail6, mbsync) against a
node with ``[store] backend = "postgres"`` on a real PostgreSQL
(tests/store/postgres_fixture.py: one PostgreSQL server per xdist worker,
reused; one database and one mailnet node for this module).

The same clients run against the Maildir node in tests/smtp/test_e2e.py,
tests/pop3/test_clients.py and tests/imap/test_mbsync.py; their helpers are
reused here.  What those tests read from Maildir files is read here over
IMAP, and mail gets into a maildrop by IMAP APPEND (byte for byte) instead
of a file renamed into new/.
"""

from __future__ import annotations

import shutil
import ssl

import imapclient
import pytest

from tests.conftest import USERS
from tests.harness import MailServer
from tests.pop3.clients import mimeMessage, newUser
from tests.smtp.e2e import canonical, run, strip_trace, write_private
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(pgServer, tmp_path_factory):
    """One mailnet node on PostgreSQL for the module (its own database)."""
    dbname = pgServer.newDatabase()
    config = {"store": {"backend": "postgres"},
              "postgres": {"host": pgServer.dir, "port": pgServer.port, "dbname": dbname, "user": "mailnet",
                           "connect_timeout": 3, "statement_timeout": 20},
              # relayed mail must never look up a real MX
              "relay": {"smarthost": "127.0.0.1:9"}}
    server = MailServer(tmp_path_factory.mktemp("pg-clients"), config=config)
    server.start()
    server.pgDatabase = dbname
    server.pgServer = pgServer
    try:
        for name, password in USERS.items():
            server.addUser(name, password)
        yield server
    finally:
        server.stop()
        pgServer.dropDatabase(dbname)


def imap(server, user):
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imaps"), ssl=True,
                              ssl_context=ssl.create_default_context(cafile=server.certFile), timeout=20)
    c.login(*user)
    return c


def messages(server, user, folder="INBOX"):
    """The messages of a folder, in UID order, read over IMAP."""
    c = imap(server, user)
    try:
        c.select_folder(folder, readonly=True)
        uids = c.search("ALL")
        fetched = c.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return [fetched[u][b"BODY[]"] for u in sorted(fetched)]
    finally:
        c.logout()


def append(server, user, crlfMessage):
    """Into the maildrop as it was sent (no trace headers added)."""
    c = imap(server, user)
    try:
        c.append("INBOX", crlfMessage)
    finally:
        c.logout()


BOB = ("bob@example.test", USERS["bob@example.test"])


def inDatabase(server, subject: bytes):
    """How many stored bodies of the node's database have this subject
    (the proof that the node runs on PostgreSQL, not on a Maildir)."""
    found = 0
    with server.pgServer.connect(server.pgDatabase) as conn:
        for (body,) in conn.execute("SELECT data FROM body_chunks WHERE n = 0"):
            found += b"Subject: " + subject + b"\r\n" in bytes(body)
    return found


# swaks and msmtp (tests/smtp/test_e2e.py)


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_starttls_auth_pipelining(node):
    before = len(messages(node, BOB))
    result = run(["swaks", "--server", "127.0.0.1", "--port", str(node.port("submission")), "--tls",
                  "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "alice-pw",
                  "--from", "alice@example.test", "--to", "bob@example.test", "--pipeline",
                  "--header", "Subject: swaks pipelined", "--body", "over STARTTLS"])
    out = result.stdout.decode()
    assert result.returncode == 0, out
    assert "<~  250 2.0.0 OK id" in out and "PIPELINING" in out
    got = messages(node, BOB)
    assert len(got) == before + 1
    assert b"Subject: swaks pipelined" in got[-1] and b"over STARTTLS" in got[-1]
    assert inDatabase(node, b"swaks pipelined") == 1
    assert node.messageFiles("bob@example.test") == []


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_implicit_tls_login_and_wrong_password(node):
    before = len(messages(node, BOB))
    result = run(["swaks", "--server", "127.0.0.1", "--port", str(node.port("submissions")), "--tls-on-connect",
                  "--auth", "LOGIN", "--auth-user", "alice@example.test", "--auth-password", "alice-pw",
                  "--from", "alice@example.test", "--to", "bob@example.test"])
    assert result.returncode == 0, result.stdout.decode()
    assert len(messages(node, BOB)) == before + 1
    result = run(["swaks", "--server", "127.0.0.1", "--port", str(node.port("submission")), "--tls",
                  "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "nope",
                  "--from", "alice@example.test", "--to", "bob@example.test"])
    assert result.returncode != 0
    assert "535 5.7.8" in result.stdout.decode()
    assert len(messages(node, BOB)) == before + 1


@pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp not installed")
def test_msmtp_submission(node, tmp_path):
    conf = tmp_path / "msmtprc"
    write_private(conf, f"""defaults
tls on
tls_starttls on
tls_trust_file {node.certFile}
logfile {tmp_path}/msmtp.log

account mailnet
host 127.0.0.1
port {node.port("submission")}
from alice@example.test
auth plain
user alice@example.test
password alice-pw

account default : mailnet
""")
    before = len(messages(node, BOB))
    message = "From: alice@example.test\nTo: bob@example.test\nSubject: msmtp\n\nsent with msmtp, ünïcode\n"
    result = run(["msmtp", "-C", str(conf), "bob@example.test"], input=message.encode())
    assert result.returncode == 0, result.stderr.decode()
    got = messages(node, BOB)
    assert len(got) == before + 1
    # msmtp adds Date (and Message-ID) headers in front; the rest is as sent
    assert canonical(strip_trace(got[-1])).endswith(message.encode().replace(b"\n", b"\r\n"))


# fetchmail and getmail6 (tests/pop3/test_clients.py)


@pytest.mark.parametrize("mode", ["ssl", "stls"])
def test_fetchmail_keep_then_delete(tmp_path, node, mode):
    if not shutil.which("fetchmail"):
        pytest.skip("fetchmail is not installed")
    from tests.pop3.test_clients import runFetchmail, withoutReceived

    name, pw = newUser(node)
    sent = [mimeMessage(f"fetch {mode} {i}") for i in range(3)]
    for m in sent:
        append(node, (name, pw), m)
    proc, got = runFetchmail(tmp_path, node, name, pw, mode, keep=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if mode == "stls":
        assert "upgrade to TLS succeeded" in proc.stderr + proc.stdout
    assert sorted(withoutReceived(m) for m in got) == sorted(m.replace(b"\r\n", b"\n") for m in sent)
    assert len(messages(node, (name, pw))) == 3
    # Keep mode with UIDL: a second run fetches nothing new.
    proc, got = runFetchmail(tmp_path, node, name, pw, mode, keep=True)
    assert proc.returncode == 1 and got == [], proc.stdout + proc.stderr  # 1: no mail
    # One more message; delete mode empties the maildrop.
    extra = mimeMessage("late")
    append(node, (name, pw), extra)
    proc, got = runFetchmail(tmp_path, node, name, pw, mode, keep=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [withoutReceived(m) for m in got] == [extra.replace(b"\r\n", b"\n")]
    assert messages(node, (name, pw)) == []


@pytest.mark.parametrize("delete", [False, True])
def test_getmail_pop3s_to_maildir(tmp_path, node, delete, request):
    if not shutil.which("getmail"):
        pytest.skip("getmail is not installed")
    from tests.pop3.test_clients import delivered, getmailSetup, runGetmail

    name, pw = newUser(node)
    sent = [mimeMessage(f"getmail {i}") for i in range(3)]
    for m in sent:
        append(node, (name, pw), m)
    gdir, dest = getmailSetup(tmp_path, node, name, pw, delete, request)
    proc = runGetmail(gdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert delivered(dest) == sorted(m.replace(b"\r\n", b"\n") for m in sent)
    assert len(messages(node, (name, pw))) == (0 if delete else 3)
    # Again: nothing new (getmail remembers UIDLs; with delete, nothing is left).
    proc = runGetmail(gdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((dest / "new").iterdir())) == 3


# mbsync (tests/imap/test_mbsync.py)


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) not installed")
def test_mbsync_two_way_sync(node, tmp_path):
    from tests.imap.test_mbsync import test_two_way_sync

    test_two_way_sync(node, tmp_path)
