"""
``mailnet migrate maildir-to-postgres``: a Maildir store made by our own
server (SMTP deliveries, IMAP folders, flags, keywords, internal dates,
subscriptions) plus a folder and a whole account dropped in by hand,
copied into PostgreSQL, read back through a PostgreSQL node with imaplib;
a second run copies nothing; a run killed between a copy and its record
does not copy twice.
"""

from __future__ import annotations

import hashlib
import imaplib
import os
import smtplib
import ssl

import pytest

from tests.harness import MailServer
from tests.store import postgres_fixture
from tests.test_postgres_nodes import pgConfig

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

pytestmark = pytest.mark.slow

ALICE = ("alice@example.test", "alice-pw")
BOB = ("bob@example.test", "bob-pw")
DATE = "01-Feb-2021 10:20:30 +0000"


def message(subject, body="Hello\r\n"):
    return (f"From: someone@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\n{body}").encode()


def imap(server, user):
    c = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                          ssl_context=ssl.create_default_context(cafile=server.certFile), timeout=30)
    c.login(*user)
    return c


def handMade(root, name, body):
    """A message file dropped into a Maildir folder by hand (no uidlist entry)."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    path = os.path.join(root, name)
    with open(path, "wb") as f:
        f.write(body)
    return path


def view(server, user):
    """{folder: sorted [(sha256 of the body, flags, internal date)]}, subscriptions, through IMAP."""
    c = imap(server, user)
    try:
        folders = {}
        typ, lines = c.list()
        names = [line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in lines]
        for name in names:
            c.select(f'"{name}"', readonly=True)
            typ, data = c.fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
            got = []
            for item in data:
                if isinstance(item, tuple):
                    meta = item[0].decode()
                    flags = sorted(imaplib.ParseFlags(item[0]))
                    date = meta.split('INTERNALDATE "', 1)[1].split('"', 1)[0]
                    kept = tuple(f.decode() for f in flags if f != b"\\Recent")  # \Recent is not migrated
                    got.append((hashlib.sha256(item[1]).hexdigest(), kept, date))
            folders[name] = sorted(got)
        typ, lines = c.lsub()
        subscribed = sorted(line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in lines if line)
        return folders, subscribed
    finally:
        c.logout()


def test_maildir_to_postgres(pgServer, pgDatabase, tmp_path):
    old = MailServer(tmp_path / "old")  # the Maildir store, made by our own server
    old.start()
    try:
        old.addUser(*ALICE)
        with smtplib.SMTP("127.0.0.1", old.port("smtp"), timeout=30) as s:
            for n in range(3):
                s.sendmail("someone@remote.test", [ALICE[0]], message(f"delivered {n}"))
        c = imap(old, ALICE)
        c.create("Archive/2024")
        c.subscribe("Archive/2024")
        c.subscribe("Gone")  # a subscription to a folder that does not exist
        c.append("Archive/2024", r"(\Seen \Flagged $Important)", '"' + DATE + '"', message("archived"))
        c.append("Archive/2024", None, '"' + DATE + '"', message("big", "x" * 200_000 + "\r\n"))
        c.select("INBOX")
        c.store("1", "+FLAGS", r"(\Answered todo)")
        c.store("2", "+FLAGS", r"(\Seen)")
        c.logout()
    finally:
        old.stop()
    mail = os.path.join(old.dataDir, "mail")
    # Dropped in by hand: a folder of alice's, and bob's whole account.
    handMade(os.path.join(mail, "example.test", "alice", ".Handmade"), "cur/1600000000.M1P1.host:2,S",
             message("by hand"))
    bobRoot = os.path.join(mail, "example.test", "bob")
    handMade(bobRoot, "new/1600000001.M2P2.host", message("for bob"))
    handMade(bobRoot, "cur/1600000002.M3P3.host:2,FS", message("bob's flagged"))

    node = MailServer(tmp_path / "node", config=pgConfig(pgServer, pgDatabase, store={"mail_dir": mail}))
    r = node.mailnet("migrate", "maildir-to-postgres", "--all", check=False)
    out = r.stdout.splitlines()
    assert r.returncode == 0 and out == [
        "alice@example.test: 6 messages in 8 folders: 6 copied, 0 there already; "
        "verified (message counts and SHA-256 of bodies match)",
        "bob@example.test: 2 messages in 1 folders: 2 copied, 0 there already; "
        "verified (message counts and SHA-256 of bodies match)",
    ], (out, r.stderr)
    # Again: nothing copied twice.
    again = node.mailnet("migrate", "maildir-to-postgres", ALICE[0]).stdout
    assert "6 messages in 8 folders: 0 copied, 6 there already; verified" in again, again
    # A run killed after a copy but before its record: found again by its hash, not copied twice.
    with pgServer.connect(pgDatabase) as conn:
        conn.execute("DELETE FROM migrated WHERE source LIKE '%:Archive/2024'")
    again = node.mailnet("migrate", "maildir-to-postgres", ALICE[0]).stdout
    assert "0 copied, 6 there already; verified" in again, again

    # Read back: the Maildir through our server on it, PostgreSQL through a node on it.
    old.start()
    try:
        old.addUser(*BOB)
        before = {user: view(old, user) for user in (ALICE, BOB)}
    finally:
        old.stop()
    node.start()
    try:
        for user in (ALICE, BOB):
            node.addUser(*user)
        after = {user: view(node, user) for user in (ALICE, BOB)}
    finally:
        node.stop()
    for user in (ALICE, BOB):
        # Subscriptions (bob's new account on PostgreSQL also has the special-use folders', subscribed).
        assert set(before[user][1]) <= set(after[user][1])
        for name in before[user][0]:
            assert after[user][0].get(name) == before[user][0][name], (user, name)
        assert not any(after[user][0][name] for name in set(after[user][0]) - set(before[user][0]))
    folders, subscribed = after[ALICE]
    assert subscribed == before[ALICE][1]
    assert "Archive/2024" in subscribed and "Gone" in subscribed
    assert len(folders["INBOX"]) == 3 and len(folders["Handmade"]) == 1 and len(folders["Archive/2024"]) == 2
    assert any("$Important" in flags and DATE == date for _, flags, date in folders["Archive/2024"])
    assert any("todo" in flags and "\\Answered" in flags for _, flags, _ in folders["INBOX"])
    assert [flags for _, flags, _ in folders["Handmade"]] == [("\\Seen",)]
    assert sorted(flags for _, flags, _ in after[BOB][0]["INBOX"]) == [(), ("\\Flagged", "\\Seen")]


def test_an_unknown_user_is_said_and_fails(pgServer, pgDatabase, tmp_path):
    mail = tmp_path / "mail"
    mail.mkdir()
    node = MailServer(tmp_path / "node", config=pgConfig(pgServer, pgDatabase, store={"mail_dir": str(mail)}))
    r = node.mailnet("migrate", "maildir-to-postgres", "nobody@example.test", check=False)
    assert r.returncode == 1 and r.stdout.strip() == "nobody@example.test: no Maildir account", (r.stdout, r.stderr)
