"""
Real clients we did not write (swaks, msmtp, fetchmail, getmail6, mbsync)
against a real mailnet node, once on each store: ``[store] backend =
"maildir"`` (the default) and ``"postgres"`` on a real PostgreSQL
(tests/store/postgres_fixture.py: one PostgreSQL server per xdist worker,
reused; one database for this module's node).  One node per store for the
module; every scenario runs on both.

What a scenario needs of the store goes through the node's ``view``: on the
Maildir, message files (put in as an external delivery agent does: written
in tmp/, renamed into new/); on PostgreSQL, IMAP (put in by APPEND, byte for
byte) and the database's rows, with the proof that no Maildir was written.
The clients' helpers are those of tests/smtp/e2e.py, tests/pop3/clients.py
and tests/imap/mbsync.py.
"""

from __future__ import annotations

import pathlib
import shutil
import ssl

import imapclient
import pytest

from tests.conftest import USERS
from tests.harness import MailServer
from tests.imap.mbsync import twoWaySync
from tests.pop3.clients import (delivered, getmailSetup, mimeMessage, newUser, putMessage, runFetchmail, runGetmail,
                                withoutReceived)
from tests.smtp.e2e import canonical, run, strip_trace, write_private
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer

pytestmark = pytest.mark.slow

BOB = ("bob@example.test", USERS["bob@example.test"])


class MaildirView:
    """The node's Maildir store, read from its files."""

    def __init__(self, server):
        self.server = server

    def snapshot(self, user):
        return list(self.server.messageFiles(user[0]))

    def newSince(self, user, snapshot):
        """The messages that arrived since ``snapshot``."""
        found = []
        for path in self.server.messageFiles(user[0]):
            if path not in snapshot:
                with open(path, "rb") as f:
                    found.append(f.read())
        return found

    def count(self, user):
        return len(self.server.messageFiles(user[0]))

    def put(self, user, crlfMessage):
        """As an external delivery agent: a file in tmp/ renamed into new/ (LF line ends)."""
        putMessage(self.server, user[0], crlfMessage)

    def assertStored(self, user, subject: bytes):
        """The message is a file of the user's Maildir (exactly one has this subject)."""
        files = self.server.messageFiles(user[0])
        hits = [p for p in files if b"Subject: " + subject + b"\r\n" in canonical(pathlib.Path(p).read_bytes())]
        assert len(hits) == 1, files


class PostgresView:
    """The node's PostgreSQL store, read over IMAP and from its database."""

    def __init__(self, server, pg, dbname):
        self.server = server
        self.pg = pg
        self.dbname = dbname

    def _imap(self, user):
        c = imapclient.IMAPClient("127.0.0.1", port=self.server.port("imaps"), ssl=True,
                                  ssl_context=ssl.create_default_context(cafile=self.server.certFile), timeout=20)
        c.login(*user)
        return c

    def messages(self, user, folder="INBOX"):
        """The messages of a folder, in UID order."""
        c = self._imap(user)
        try:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            fetched = c.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [fetched[u][b"BODY[]"] for u in sorted(fetched)]
        finally:
            c.logout()

    def snapshot(self, user):
        return len(self.messages(user))

    def newSince(self, user, snapshot):
        return self.messages(user)[snapshot:]

    def count(self, user):
        return len(self.messages(user))

    def put(self, user, crlfMessage):
        """IMAP APPEND: in the maildrop as it was sent (no trace headers added)."""
        c = self._imap(user)
        try:
            c.append("INBOX", crlfMessage)
        finally:
            c.logout()

    def assertStored(self, user, subject: bytes):
        """The message is in the database (exactly one stored body has this
        subject) and no Maildir file was written: the node runs on PostgreSQL."""
        found = 0
        with self.pg.connect(self.dbname) as conn:
            for (body,) in conn.execute("SELECT data FROM body_chunks WHERE n = 0"):
                found += b"Subject: " + subject + b"\r\n" in bytes(body)
        assert found == 1
        assert self.server.messageFiles(user[0]) == []


@pytest.fixture(scope="module", params=["maildir", "postgres"])
def node(request, tmp_path_factory):
    """One mailnet node for the module on each store, with ``view`` for its store."""
    # relayed mail must never look up a real MX
    config = {"relay": {"smarthost": "127.0.0.1:9"}}
    pg = dbname = None
    if request.param == "postgres":
        pg = request.getfixturevalue("pgServer")
        dbname = pg.newDatabase()
        config.update({"store": {"backend": "postgres"},
                       "postgres": {"host": pg.dir, "port": pg.port, "dbname": dbname, "user": "mailnet",
                                    "connect_timeout": 3, "statement_timeout": 20}})
    server = MailServer(tmp_path_factory.mktemp(f"clients-{request.param}"), config=config)
    server.start()
    server.view = PostgresView(server, pg, dbname) if pg else MaildirView(server)
    try:
        for name, password in USERS.items():
            server.addUser(name, password)
        yield server
    finally:
        server.stop()
        if dbname:
            pg.dropDatabase(dbname)


# swaks and msmtp: submission


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_starttls_auth_pipelining(node):
    before = node.view.snapshot(BOB)
    result = run(["swaks", "--server", "127.0.0.1", "--port", str(node.port("submission")), "--tls",
                  "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "alice-pw",
                  "--from", "alice@example.test", "--to", "bob@example.test", "--pipeline",
                  "--header", "Subject: swaks pipelined", "--body", "over STARTTLS"])
    out = result.stdout.decode()
    assert result.returncode == 0, out
    assert "<~  250 2.0.0 OK id" in out and "PIPELINING" in out
    (got,) = node.view.newSince(BOB, before)
    assert b"Subject: swaks pipelined" in got and b"over STARTTLS" in got
    node.view.assertStored(BOB, b"swaks pipelined")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_implicit_tls_login(node):
    before = node.view.count(BOB)
    result = run(["swaks", "--server", "127.0.0.1", "--port", str(node.port("submissions")), "--tls-on-connect",
                  "--auth", "LOGIN", "--auth-user", "alice@example.test", "--auth-password", "alice-pw",
                  "--from", "alice@example.test", "--to", "bob@example.test"])
    assert result.returncode == 0, result.stdout.decode()
    assert node.view.count(BOB) == before + 1


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_wrong_password(node):
    before = node.view.count(BOB)
    result = run(["swaks", "--server", "127.0.0.1", "--port", str(node.port("submission")), "--tls",
                  "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "nope",
                  "--from", "alice@example.test", "--to", "bob@example.test"])
    assert result.returncode != 0
    assert "535 5.7.8" in result.stdout.decode()
    assert node.view.count(BOB) == before


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
    before = node.view.snapshot(BOB)
    message = "From: alice@example.test\nTo: bob@example.test\nSubject: msmtp\n\nsent with msmtp, ünïcode\n"
    result = run(["msmtp", "-C", str(conf), "bob@example.test"], input=message.encode())
    assert result.returncode == 0, result.stderr.decode()
    (got,) = node.view.newSince(BOB, before)
    # msmtp adds Date (and Message-ID) headers in front; the rest is as sent
    assert canonical(strip_trace(got)).endswith(message.encode().replace(b"\n", b"\r\n"))


# fetchmail and getmail6: POP3


@pytest.mark.parametrize("mode", ["ssl", "stls"])
def test_fetchmail_keep_then_delete(tmp_path, node, mode):
    if not shutil.which("fetchmail"):
        pytest.skip("fetchmail is not installed")
    user = name, pw = newUser(node)
    sent = [mimeMessage(f"fetch {mode} {i}") for i in range(3)]
    for m in sent:
        node.view.put(user, m)
    proc, got = runFetchmail(tmp_path, node, name, pw, mode, keep=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if mode == "stls":
        assert "upgrade to TLS succeeded" in proc.stderr + proc.stdout
    assert sorted(withoutReceived(m) for m in got) == sorted(m.replace(b"\r\n", b"\n") for m in sent)
    assert node.view.count(user) == 3
    # Keep mode with UIDL: a second run fetches nothing new.
    proc, got = runFetchmail(tmp_path, node, name, pw, mode, keep=True)
    assert proc.returncode == 1 and got == [], proc.stdout + proc.stderr  # 1: no mail
    # One more message; delete mode ("nokeep flush": fetch what is new,
    # delete what was fetched before too) empties the maildrop.
    extra = mimeMessage("late")
    node.view.put(user, extra)
    proc, got = runFetchmail(tmp_path, node, name, pw, mode, keep=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [withoutReceived(m) for m in got] == [extra.replace(b"\r\n", b"\n")]
    assert node.view.count(user) == 0


@pytest.mark.parametrize("delete", [False, True])
def test_getmail_pop3s_to_maildir(tmp_path, node, delete, request):
    if not shutil.which("getmail"):
        pytest.skip("getmail is not installed")
    user = name, pw = newUser(node)
    sent = [mimeMessage(f"getmail {i}") for i in range(3)]
    for m in sent:
        node.view.put(user, m)
    gdir, dest = getmailSetup(tmp_path, node, name, pw, delete, request)
    proc = runGetmail(gdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert delivered(dest) == sorted(m.replace(b"\r\n", b"\n") for m in sent)
    assert node.view.count(user) == (0 if delete else 3)
    # Again: nothing new (getmail remembers UIDLs; with delete, nothing is left).
    proc = runGetmail(gdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((dest / "new").iterdir())) == 3


# mbsync: IMAP


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) not installed")
def test_mbsync_two_way_sync(node, tmp_path):
    twoWaySync(node, tmp_path)
