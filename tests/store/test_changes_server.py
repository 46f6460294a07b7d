"""
Every writer of the real server feeds the account's changes: IMAP
(APPEND, STORE, COPY, MOVE, EXPUNGE, CREATE, RENAME, DELETE), POP3 DELE
and SMTP delivery, each followed by ``changesSince`` read by this process
from the server's Maildir (the journal takes in the folders' logs).
"""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib

import pytest

from mailnet.store.interfaces import COUNT_PROPERTIES, INBOX
from mailnet.store.maildir import MaildirStore
from mailnet.store.testing import result, syncRunner

pytestmark = pytest.mark.slow

USER = ("alice@example.test", "alice-pw")


def _now(f, delay=0):
    f()


def message(subject):
    return f"From: b@example.org\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nHello\r\n".encode()


@pytest.fixture
def setup(make_server):
    server = make_server(config={"auth": {"allow_plaintext": True}})
    server.addUser(*USER)
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=20)
    m.login(*USER)
    store = MaildirStore(os.path.join(server.dataDir, "mail"), runner=syncRunner, schedule=_now, changesPoll=0)
    account = result(store.getAccount(USER[0]))
    yield server, m, store, account
    m.logout()
    result(store.close())


def _box(account, name=INBOX):
    folder = result(account.openFolder(name))
    try:
        return folder.mailboxId, folder.emailIds([i.uid for i in folder.messages()])
    finally:
        folder.close()


class Since:
    """changesSince from the last look, then a new look."""

    def __init__(self, account):
        self.account = account
        self.state = result(account.currentState())

    def __call__(self):
        c = result(self.account.changesSince(self.state))
        self.state = c.emails.newState
        return c


def test_every_imap_writer(setup):
    server, m, store, account = setup
    since = Since(account)
    m.append("INBOX", None, None, message("one"))
    c = since()
    inboxId, ids = _box(account)
    [first] = ids.values()
    assert c.emails.created == [first] and c.mailboxes.updated == [inboxId]
    m.select("INBOX")
    m.uid("STORE", "1", "+FLAGS", "(\\Seen)")
    c = since()
    assert c.emails.updated == [first] and c.mailboxes.updatedProperties == COUNT_PROPERTIES
    m.uid("COPY", "1", "Archive")
    c = since()
    archiveId, archived = _box(account, "Archive")
    assert c.emails.created == list(archived.values()) and c.mailboxes.updated == [archiveId]
    m.uid("MOVE", "1", "Trash")
    c = since()
    trashId, _ = _box(account, "Trash")
    assert c.emails.updated == [first] and set(c.mailboxes.updated) == {inboxId, trashId}
    m.select("Archive")
    m.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    m.expunge()
    c = since()
    assert c.emails.destroyed == list(archived.values())
    m.create("Work")
    c = since()
    workId, _ = _box(account, "Work")
    assert c.mailboxes.created == [workId]
    m.rename("Work", "Jobs")
    c = since()
    assert c.mailboxes.updated == [workId] and c.mailboxes.updatedProperties is None
    m.delete("Jobs")
    c = since()
    assert c.mailboxes.destroyed == [workId]


def test_smtp_delivery_and_pop3_dele(setup):
    server, m, store, account = setup
    since = Since(account)
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as s:
        s.sendmail("b@remote.test", [USER[0]], message("two"))
    c = since()
    inboxId, ids = _box(account)
    assert c.emails.created == list(ids.values()) and c.mailboxes.updated == [inboxId]
    p = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=20)
    p.user(USER[0])
    p.pass_(USER[1])
    p.dele(1)
    p.quit()
    c = since()
    assert c.emails.destroyed == list(ids.values())
