"""
The real server with ``[store] backend = "postgres"`` and ``[postgres]
bodies = "s3"``: PostgreSQL from tests/store/postgres_fixture.py, moto's S3
server from tests/store/s3_fixture.py, driven by smtplib, imapclient and
poplib.  A delivery's body is one object named by its SHA-256 (a COPY
stores none), read back over IMAP and POP3; an object store that stops
answering gives SMTP 451, IMAP NO, POP3 -ERR, no crash, and the same
sessions work again when it is back; a missing bucket is refused at start.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import poplib
import smtplib

import imapclient
import pytest

from tests.harness import MailServer
from tests.store import postgres_fixture, s3_fixture
from tests.test_postgres_server import ALICE, BOB, imap, message, pgConfig, pop3, rows, send

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase
s3Server = s3_fixture.s3Server

pytestmark = pytest.mark.slow
_prefixes = itertools.count(1)


def s3Config(pgServer, dbname, s3Server, prefix, **extra):
    config = pgConfig(pgServer, dbname)
    config["postgres"].update(s3Server.config(prefix), **extra)
    return config


@pytest.fixture
def prefix():
    return f"srv{os.getpid()}-{next(_prefixes)}/"


@pytest.fixture
def mail(pgServer, pgDatabase, s3Server, prefix, tmp_path):
    server = MailServer(tmp_path / "node", config=s3Config(pgServer, pgDatabase, s3Server, prefix))
    server.start()
    for user in (ALICE, BOB):
        server.addUser(*user)
    yield server
    server.stop()


def test_smtp_delivery_fetched_over_imap_and_pop3_from_s3(mail, pgServer, pgDatabase, s3Server, prefix):
    big = "".join("line %06d of a longer message, to go past one chunk\r\n" % i for i in range(40000))
    send(mail, "first")
    with smtplib.SMTP("127.0.0.1", mail.port("smtp"), timeout=30) as s:
        s.sendmail("someone@remote.test", [ALICE[0], BOB[0]], message("big", big))
    c = imap(mail)
    c.select_folder("INBOX")
    uids = c.search("ALL")
    assert len(uids) == 2
    fetched = c.fetch(uids, ["RFC822"])
    stored = [fetched[u][b"RFC822"] for u in uids]
    assert b"Subject: first" in stored[0] and stored[1].endswith(big.encode())
    # One object per distinct body (the big one once for two mailboxes), named by its SHA-256.
    assert sorted(s3Server.keys(prefix)) == sorted(prefix + hashlib.sha256(b).hexdigest() for b in stored)
    assert rows(pgServer, pgDatabase, "SELECT count(*) FROM body_chunks") == [(0,)]
    c.copy(uids, "Trash")
    assert len(s3Server.keys(prefix)) == 2  # COPY stored nothing new
    partial = c.fetch(uids[1], ["BODY.PEEK[]<100000.50>"])[uids[1]][b"BODY[]<100000>"]
    assert partial == stored[1][100000:100050]
    c.logout()
    p = pop3(mail, BOB)
    _, lines, _ = p.retr(1)
    assert b"\r\n".join(lines).endswith(big.rstrip("\r\n").encode())
    p.quit()


def test_object_store_outage_gives_temporary_errors_then_recovers(mail, s3Server, prefix):
    send(mail, "before one")
    send(mail, "before two")
    c = imap(mail)
    c.select_folder("INBOX")
    uids = c.search("ALL")
    assert len(uids) == 2
    s3Server.pause()
    try:
        # SMTP: 451, the client may retry later.
        with smtplib.SMTP("127.0.0.1", mail.port("smtp"), timeout=60) as s:
            s.ehlo()
            s.mail("someone@remote.test")
            s.rcpt(ALICE[0])
            code, text = s.data(message("during"))
        assert code == 451, (code, text)
        # IMAP: NO to APPEND and to a FETCH of a body; the session stays.
        with pytest.raises(imapclient.exceptions.IMAPClientError) as e:
            c.append("INBOX", message("appended during"))
        assert "try again" in str(e.value).lower() or "unavailable" in str(e.value).lower(), e.value
        with pytest.raises(imapclient.exceptions.IMAPClientError):
            c.fetch(uids[1], ["BODY.PEEK[]"])
        # POP3: -ERR to RETR.
        p = pop3(mail)
        with pytest.raises(poplib.error_proto) as e:
            p.retr(1)
        assert str(e.value).startswith("b'-ERR")
        assert mail.process.poll() is None  # no crash
    finally:
        s3Server.resume()
    p.quit()
    # The same IMAP session works again; new mail is accepted.
    assert b"before two" in c.fetch(uids[1], ["BODY.PEEK[]"])[uids[1]][b"BODY[]"]
    c.append("INBOX", message("after"))
    send(mail, "after smtp")
    assert len(c.search("ALL")) == 4
    c.logout()
    assert mail.process.poll() is None
    log = mail.log()
    assert s3Server.endpoint not in log and s3_fixture.SECRET not in log


def test_a_missing_bucket_is_refused_at_start(pgServer, pgDatabase, s3Server, tmp_path):
    server = MailServer(tmp_path / "node", config=s3Config(pgServer, pgDatabase, s3Server, "", s3_bucket="no-such-bucket"))
    try:
        with pytest.raises(Exception):
            server.start()
        assert "object store cannot be reached or has no bucket 'no-such-bucket'" in server.log()
    finally:
        server.stop()


def test_migrate_from_maildir_puts_the_bodies_in_s3(pgServer, pgDatabase, s3Server, prefix, tmp_path):
    from tests.test_postgres_migrate import handMade

    mail = tmp_path / "mail"
    bodies = [message("migrated one"), message("migrated two")]
    for n, body in enumerate(bodies):
        handMade(str(mail / "example.test" / "alice"), f"cur/160000000{n}.M{n}P{n}.host:2,S", body)
    config = s3Config(pgServer, pgDatabase, s3Server, prefix)
    config["store"]["mail_dir"] = str(mail)
    node = MailServer(tmp_path / "node", config=config)
    r = node.mailnet("migrate", "maildir-to-postgres", ALICE[0], check=False)
    assert r.returncode == 0 and "2 copied" in r.stdout and "verified" in r.stdout, (r.stdout, r.stderr)
    assert sorted(s3Server.keys(prefix)) == sorted(prefix + hashlib.sha256(b).hexdigest() for b in bodies)
    assert rows(pgServer, pgDatabase, "SELECT count(*) FROM body_chunks") == [(0,)]
