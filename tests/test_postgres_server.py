"""
The real server with ``[store] backend = "postgres"`` on a real PostgreSQL
(tests/store/postgres_fixture.py), driven by clients we did not write:
smtplib, imapclient, poplib, swaks, fetchmail (msmtp, getmail6 and mbsync:
tests/test_clients_on_both_stores.py).  Also: kill -9 right after a
250 loses nothing; PostgreSQL stopped under open sessions gives temporary
errors (SMTP 451, IMAP NO, POP3 -ERR), no crash, and the same sessions
work again once it is back; a database without the schema is refused at
start with one line, and ``mailnet db`` makes it.
"""

from __future__ import annotations

import poplib
import shutil
import smtplib
import ssl
import subprocess
import time

import imapclient
import pytest

from mailnet.store.postgres.schema import MIGRATIONS, VERSION
from tests import pgnodes
from tests.harness import MailServer
from tests.pgnodes import pgConfig

pgServer = pgnodes.pgServer
pgDatabase = pgnodes.pgDatabase

pytestmark = pytest.mark.slow

ALICE = ("alice@example.test", "alice-pw")
BOB = ("bob@example.test", "bob-pw")


def message(subject, body="Hello\r\n"):
    return ("From: Someone <someone@remote.test>\r\nTo: alice@example.test\r\nSubject: %s\r\n"
            "Message-ID: <%s@example.test>\r\n\r\n%s" % (subject, subject.replace(" ", "."), body)).encode()


@pytest.fixture
def mail(pgServer, pgDatabase, tmp_path):
    server = MailServer(tmp_path / "node", config=pgConfig(pgServer, pgDatabase))
    server.start()
    for user in (ALICE, BOB):
        server.addUser(*user)
    yield server
    server.stop()


def tls(server):
    return ssl.create_default_context(cafile=server.certFile)


def imap(server, user=ALICE):
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imaps"), ssl=True, ssl_context=tls(server), timeout=20)
    c.login(*user)
    return c


def pop3(server, user=ALICE):
    c = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=tls(server), timeout=20)
    c.user(user[0])
    c.pass_(user[1])
    return c


def send(server, subject, to=ALICE[0]):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as s:
        s.sendmail("someone@remote.test", [to], message(subject))


def rows(pgServer, dbname, query):
    with pgServer.connect(dbname) as conn:
        return conn.execute(query).fetchall()


def test_smtp_delivery_read_by_imap_and_pop3(mail, pgServer, pgDatabase):
    send(mail, "first")
    send(mail, "second")
    c = imap(mail)
    c.select_folder("INBOX")
    uids = c.search("ALL")
    assert len(uids) == 2
    fetched = c.fetch(uids, ["RFC822", "FLAGS", "EMAILID"])
    assert [b"Subject: first" in fetched[u][b"RFC822"] for u in uids] == [True, False]
    assert fetched[uids[0]][b"RFC822"].startswith(b"Return-Path:") or b"Received:" in fetched[uids[0]][b"RFC822"]
    c.logout()
    # The messages are rows of the database, one body each.
    assert rows(pgServer, pgDatabase, "SELECT count(*) FROM messages")[0][0] == 2
    p = pop3(mail)
    count, _ = p.stat()
    assert count == 2
    _, lines, _ = p.retr(1)
    assert b"Subject: first" in b"\r\n".join(lines)
    p.dele(1)
    p.quit()
    c = imap(mail)
    c.select_folder("INBOX")
    assert len(c.search("ALL")) == 1
    c.logout()


def test_imap_append_store_expunge_copy_move(mail, pgServer, pgDatabase):
    c = imap(mail)
    c.create_folder("Archive/2026")
    c.append("INBOX", message("appended"), flags=[b"\\Seen"])
    c.append("INBOX", message("second"))
    c.select_folder("INBOX")
    uids = c.search("ALL")
    c.add_flags(uids[1], [b"\\Flagged", b"$Work"])
    assert set(c.get_flags(uids[1])[uids[1]]) - {b"\\Recent"} == {b"\\Flagged", b"$Work"}
    c.copy(uids[0], "Archive/2026")
    c.move(uids[1], "Archive/2026")
    c.add_flags(uids[0], [b"\\Deleted"])
    c.expunge()
    assert c.search("ALL") == []
    c.select_folder("Archive/2026")
    got = c.fetch(c.search("ALL"), ["RFC822", "FLAGS"])
    assert sorted(b"Subject: appended" in v[b"RFC822"] for v in got.values()) == [False, True]
    c.logout()
    # The COPY shares the body: two distinct message bodies for three copies made.
    assert rows(pgServer, pgDatabase, "SELECT count(*) FROM bodies")[0][0] == 2
    # A second session sees the same.
    c2 = imap(mail)
    assert c2.folder_status("Archive/2026", ["MESSAGES"])[b"MESSAGES"] == 2
    c2.logout()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_delivery(mail):
    result = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(mail.port("smtp")),
                             "--from", "someone@remote.test", "--to", "alice@example.test",
                             "--header", "Subject: by swaks", "--body", "hello from swaks"],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode()
    c = imap(mail)
    c.select_folder("INBOX")
    [uid] = c.search("ALL")
    assert b"Subject: by swaks" in c.fetch([uid], ["RFC822"])[uid][b"RFC822"]
    c.logout()


def test_kill_9_after_250_loses_nothing(mail, pgServer, pgDatabase):
    with smtplib.SMTP("127.0.0.1", mail.port("smtp"), timeout=20) as s:
        s.ehlo()
        s.mail("someone@remote.test")
        s.rcpt("alice@example.test")
        code, _ = s.data(message("durable"))
        assert code == 250
        mail.kill()
    assert rows(pgServer, pgDatabase, "SELECT count(*) FROM messages")[0][0] == 1
    mail.start()
    c = imap(mail)
    c.select_folder("INBOX")
    [uid] = c.search("ALL")
    assert b"Subject: durable" in c.fetch([uid], ["RFC822"])[uid][b"RFC822"]
    c.logout()


def test_database_outage_gives_temporary_errors_then_recovers(mail, pgServer):
    send(mail, "before")
    c = imap(mail)
    c.select_folder("INBOX")
    assert len(c.search("ALL")) == 1
    pgServer.stop()
    try:
        # SMTP: 451, the client may retry later.
        with smtplib.SMTP("127.0.0.1", mail.port("smtp"), timeout=30) as s:
            s.ehlo()
            s.mail("someone@remote.test")
            s.rcpt("alice@example.test")
            code, text = s.data(message("during"))
        assert code == 451, (code, text)
        # IMAP: NO on a write, the session stays.
        with pytest.raises(imapclient.exceptions.IMAPClientError) as e:
            c.append("INBOX", message("appended during"))
        assert "NO" in str(e.value) or "unavailable" in str(e.value).lower() or "try again" in str(e.value).lower()
        # POP3: -ERR at login (the maildrop cannot be opened).
        with pytest.raises(poplib.error_proto) as e:
            pop3(mail)
        assert str(e.value).startswith("b'-ERR")
        assert mail.process.poll() is None  # no crash
    finally:
        pgServer.start()
    # The same IMAP session works again; new mail is accepted.
    c.noop()
    c.append("INBOX", message("after"))
    send(mail, "after smtp")
    c.select_folder("INBOX")
    assert len(c.search("ALL")) == 3
    c.logout()
    # (POP3 logs its -ERR at login with the exception's traceback, as on Maildir.)
    assert "Unhandled" not in mail.log() and mail.process.poll() is None


def test_a_database_without_the_schema_is_refused_then_made(pgServer, tmp_path):
    name = pgServer.newDatabase(schema=False)
    try:
        server = MailServer(tmp_path / "node", config=pgConfig(pgServer, name))
        with pytest.raises(RuntimeError) as e:
            server.start(timeout=30)
        assert "run `mailnet db init`" in str(e.value)
        status = server.mailnet("db", "status", check=False)
        assert status.returncode == 1 and "no mailnet schema" in status.stdout
        made = server.mailnet("db", "init")
        assert f"schema version 0 -> {VERSION}" in made.stdout
        again = server.mailnet("db", "init", check=False)
        assert again.returncode == 1 and "already" in again.stderr
        assert server.mailnet("db", "upgrade").stdout.strip() == f"schema version {VERSION}: up to date"
        assert "up to date" in server.mailnet("db", "status").stdout
        server.start()
        server.addUser(*ALICE)
        send(server, "now it works")
        c = imap(server)
        assert c.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 1
        c.logout()
        server.stop()
    finally:
        pgServer.dropDatabase(name)


def test_an_older_schema_is_refused_until_upgraded(pgServer, tmp_path):
    name = pgServer.newDatabase(schema=False)
    try:
        with pgServer.connect(name) as conn:  # a database made by the previous mailnet
            conn.execute(MIGRATIONS[0])
            conn.execute("UPDATE mailnet_schema SET version = 1")
        server = MailServer(tmp_path / "node", config=pgConfig(pgServer, name))
        with pytest.raises(RuntimeError) as e:
            server.start(timeout=30)
        assert f"the database schema is version 1, this mailnet needs {VERSION}: run `mailnet db upgrade`" in str(e.value)
        assert f"schema version 1 -> {VERSION}" in server.mailnet("db", "upgrade").stdout
        server.start()
        server.stop()
    finally:
        pgServer.dropDatabase(name)


def test_idle_on_one_node_hears_a_change_made_on_another(pgServer, pgDatabase, tmp_path):
    # No IDLE polling: only the database's notification can tell node b.
    config = dict(pgConfig(pgServer, pgDatabase), limits={"imap_idle_poll": 0})
    nodes = [MailServer(tmp_path / f"node{n}", config=config) for n in "ab"]
    for node in nodes:
        node.start()
        node.addUser(*ALICE)
    a, b = nodes
    try:
        watcher = imap(b)
        watcher.select_folder("INBOX")
        watcher.idle()
        writer = imap(a)
        start = time.monotonic()
        writer.append("INBOX", message("from node a"))
        seen = []
        while time.monotonic() - start < 5 and not any(r[1] == b"EXISTS" for r in seen if len(r) > 1):
            seen += watcher.idle_check(timeout=0.2)
        elapsed = time.monotonic() - start
        assert (1, b"EXISTS") in seen, seen
        assert elapsed < 1.0 + 1.0, elapsed  # within 1 s of the APPEND's OK (a second of slack for load)
        # A flag change and an expunge on node a: FETCH and EXPUNGE on node b.
        writer.select_folder("INBOX")
        [uid] = writer.search("ALL")
        writer.add_flags([uid], [b"\\Flagged"])
        writer.add_flags([uid], [b"\\Deleted"])
        writer.expunge()
        seen = []
        start = time.monotonic()
        while time.monotonic() - start < 5 and not any(r[1] == b"EXPUNGE" for r in seen if len(r) > 1):
            seen += watcher.idle_check(timeout=0.2)
        assert any(r[1] == b"FETCH" for r in seen if len(r) > 1) and (1, b"EXPUNGE") in seen, seen
        watcher.idle_done()
        watcher.logout()
        writer.logout()
    finally:
        for node in nodes:
            node.stop()


# fetchmail's flush with nothing new, against a node on PostgreSQL (the
# real-client scenarios run on both stores in test_clients_on_both_stores.py).


def _appendAll(server, user, messages):
    c = imap(server, user)
    for m in messages:
        c.append("INBOX", m)
    c.logout()


def _count(server, user):
    c = imap(server, user)
    n = c.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"]
    c.logout()
    return n


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_keep_then_delete(mail, tmp_path):
    from tests.pop3.clients import mimeMessage
    from tests.pop3.clients import runFetchmail, withoutReceived

    sent = [mimeMessage(f"fetch {i}") for i in range(3)]
    _appendAll(mail, ALICE, sent)
    proc, got = runFetchmail(tmp_path, mail, *ALICE, "ssl", keep=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(withoutReceived(m) for m in got) == sorted(m.replace(b"\r\n", b"\n") for m in sent)
    proc, got = runFetchmail(tmp_path, mail, *ALICE, "ssl", keep=True)
    assert proc.returncode == 1 and got == [], proc.stdout + proc.stderr  # UIDL: nothing new
    # "nokeep flush": nothing new to fetch (status 1), the fetched ones deleted.
    proc, got = runFetchmail(tmp_path, mail, *ALICE, "ssl", keep=False)
    assert proc.returncode == 1 and "3 messages deleted, 0 left" in proc.stdout + proc.stderr
    assert _count(mail, ALICE) == 0


def test_quota_over_smtp_and_imap(pgServer, pgDatabase, tmp_path):
    # The quota on a postgres node: the usage is the database's counter row.
    from tests.ops.quota_helpers import QUOTA_PW, QUOTA_USER, message as sized, setRule

    config = dict(pgConfig(pgServer, pgDatabase), quota={"grace": 0, "warning": 90})
    server = MailServer(tmp_path / "node", config=config)
    server.start()
    try:
        server.addUser(QUOTA_USER, QUOTA_PW)
        server.addUser(*ALICE)
        setRule(server, QUOTA_USER, "userdb_quota_rule=*:storage=4K userdb_quota_rule2=*:messages=3")
        port = server.port("smtp")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail("someone@remote.test", [QUOTA_USER], sized(1500, "one"))
            # Larger than the whole quota: 552 5.2.2 at RCPT (SIZE=).
            with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
                s.sendmail("someone@remote.test", [QUOTA_USER], sized(5000))
            code, text = e.value.recipients[QUOTA_USER]
            assert code == 552 and text.startswith(b"5.2.2"), text
            s.sendmail("someone@remote.test", [QUOTA_USER], sized(2000, "two"))
            # About 3900 of 4096 bytes: the next 1000 would go past; at RCPT for this one recipient.
            refused = s.sendmail("someone@remote.test", [QUOTA_USER, ALICE[0]], sized(1000, "three"))
            assert refused[QUOTA_USER][0] == 452 and refused[QUOTA_USER][1].startswith(b"4.2.2"), refused
        server.waitForLog("quota warning delivered to carol@example.test")
        # Two messages and the warning; the counter row is the messages' sum.
        counter = rows(pgServer, pgDatabase, "SELECT q.storage, q.messages FROM quota_usage q "
                       "JOIN accounts a ON a.id = q.account WHERE a.username = 'carol@example.test'")
        assert counter == rows(pgServer, pgDatabase, "SELECT SUM(size), COUNT(*) FROM messages m JOIN accounts a "
                               "ON a.id = m.account WHERE a.username = 'carol@example.test'")
        assert counter[0][1] == 3
        c = imapclient.IMAPClient("127.0.0.1", port=server.port("imaps"), ssl=True, ssl_context=tls(server),
                                  timeout=20)
        try:
            c.login(QUOTA_USER, QUOTA_PW)
            _, quotas = c.get_quota_root("INBOX")
            got = {(q.resource, q.usage, q.limit) for q in quotas}
            assert ("MESSAGE", 3, 3) in got  # two messages and the warning
            with pytest.raises(imapclient.exceptions.IMAPClientError) as e:
                c.append("INBOX", sized(100, "four"))
            assert "OVERQUOTA" in str(e.value)
            c.select_folder("INBOX")
            c.delete_messages([1])
            c.expunge()
            c.append("INBOX", sized(100, "four"))
        finally:
            c.logout()
    finally:
        server.stop()
