"""
The sweep of unreferenced bodies with the real server and the real
command (``[postgres] bodies = "s3"`` on moto's S3 server): mail delivered
over SMTP, deleted and copied over IMAP (imapclient), then ``mailnet db gc``
from the command line: nothing removed within the grace period, nothing
by a dry run, the deleted message's object once past it, never an object
a message still uses; and a node's periodic sweep (``gc_interval``) that
logs its counts.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time

import pytest

from tests.harness import MailServer
from tests.store import postgres_fixture, s3_fixture
from tests.test_postgres_s3_server import s3Config
from tests.test_postgres_server import ALICE, imap, send

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase
s3Server = s3_fixture.s3Server

pytestmark = pytest.mark.slow
_prefixes = itertools.count(1)


@pytest.fixture
def prefix():
    return f"gcsrv{os.getpid()}-{next(_prefixes)}/"


def node(tmp_path, pgServer, pgDatabase, s3Server, prefix, **postgres):
    server = MailServer(tmp_path / "node", config=s3Config(pgServer, pgDatabase, s3Server, prefix, **postgres))
    server.start()
    server.addUser(*ALICE)
    return server


def fetchAll(c):
    c.select_folder("INBOX")
    uids = c.search("ALL")
    return uids, [m[b"RFC822"] for m in c.fetch(uids, ["RFC822"]).values()]


def test_mailnet_db_gc_removes_a_deleted_messages_object_after_the_grace_period(pgServer, pgDatabase, s3Server,
                                                                                prefix, tmp_path):
    mail = node(tmp_path, pgServer, pgDatabase, s3Server, prefix)
    try:
        for subject in ("gone", "kept", "copied"):
            send(mail, subject)
        c = imap(mail)
        uids, bodies = fetchAll(c)
        key = {b.split(b"Subject: ")[1].split(b"\r\n")[0].decode(): prefix + hashlib.sha256(b).hexdigest()
               for b in bodies}
        assert sorted(s3Server.keys(prefix)) == sorted(key.values())
        c.copy(uids[2], "Archive")  # "copied": in Archive too ...
        c.delete_messages([uids[0], uids[2]])  # ... and deleted from INBOX with "gone"
        c.expunge()

        # Within the grace period (default: a day): nothing removed.
        r = mail.mailnet("db", "gc")
        assert "objects: 3 listed, 1 without a row: 0 removed (0 bytes), 1 younger than the grace period" in r.stdout, r
        assert sorted(s3Server.keys(prefix)) == sorted(key.values())
        # A dry run past it: counted, nothing removed.
        r = mail.mailnet("db", "gc", "--dry-run", "--grace", "0")
        assert "1 without a row: 1 would remove" in r.stdout, r
        assert sorted(s3Server.keys(prefix)) == sorted(key.values())
        # Past it: the deleted message's object goes, the others stay.
        r = mail.mailnet("db", "gc", "--grace", "0")
        assert "1 without a row: 1 removed" in r.stdout, r
        assert sorted(s3Server.keys(prefix)) == sorted([key["kept"], key["copied"]])
        # Both remaining messages still read, over the same session.
        uids, left = fetchAll(c)
        assert left == [b for b in bodies if b"Subject: kept" in b]
        c.select_folder("Archive")
        [(_, fetched)] = c.fetch(c.search("ALL"), ["RFC822"]).items()
        assert b"Subject: copied" in fetched[b"RFC822"]
        # The same bytes stored again after the sweep (an APPEND keeps them as given): a new object.
        gone = next(b for b in bodies if b"Subject: gone" in b)
        c.append("INBOX", gone)
        assert key["gone"] in s3Server.keys(prefix)
        uids, again = fetchAll(c)
        assert gone in again
        c.logout()
        assert s3Server.endpoint not in r.stdout + r.stderr and s3_fixture.SECRET not in r.stdout + r.stderr
    finally:
        mail.stop()


def test_a_node_sweeps_every_gc_interval_and_logs_the_counts(pgServer, pgDatabase, s3Server, prefix, tmp_path):
    mail = node(tmp_path, pgServer, pgDatabase, s3Server, prefix, gc_interval=1, gc_grace=0)
    try:
        send(mail, "short lived")
        c = imap(mail)
        uids, _ = fetchAll(c)
        assert len(s3Server.keys(prefix)) == 1
        c.delete_messages(uids)
        c.expunge()
        c.logout()
        deadline = time.monotonic() + 60
        while s3Server.keys(prefix):
            assert time.monotonic() < deadline, mail.log()
            time.sleep(0.2)
        mail.waitForLog("1 without a row: 1 removed", timeout=30)
        assert mail.process.poll() is None
    finally:
        mail.stop()
