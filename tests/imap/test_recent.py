"""
``\\Recent`` (RFC 3501 s2.3.2) against the real server (issue 12, defect 4):
a message is recent to the first read-write session that selects its
mailbox after it arrived, also when it arrived while no session had the
mailbox open (SMTP delivery, APPEND), across a restart of the server, and
afresh for a mailbox deleted and created again under the same name.  The
store keeps it with the folder (Maildir: ``mailnet-recent``), so these
tests run on the Maildir store; one in-process test checks the memory
store through the same session code.
"""

import imaplib
import re
import smtplib

import pytest

from tests.imap.helpers import World, message as plainMessage

pytestmark = pytest.mark.slow

USER, PASSWORD = "alice@example.test", "alice-pw"


def message(n):
    return ("From: bob@example.org\r\nTo: alice@example.test\r\nSubject: recent %d\r\n"
            "Message-ID: <recent-%d@example.test>\r\n\r\nBody %d\r\n" % (n, n, n)).encode()


def login(server):
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    m.login(USER, PASSWORD)
    return m


def smtpDeliver(server, n):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as s:
        s.sendmail("bob@example.org", [USER], message(n))


def recentOf(m, mailbox="INBOX", examine=False):
    typ, _ = m.select(mailbox, readonly=examine)
    assert typ == "OK"
    return int(m.untagged_responses.pop("RECENT", [b"-1"])[-1])


def search(m, key):
    typ, data = m.search(None, key)
    assert typ == "OK"
    return [int(x) for x in data[0].split()]


def status(m, mailbox):
    typ, data = m.status(mailbox, "(MESSAGES RECENT)")
    assert typ == "OK", data
    return tuple(int(x) for x in re.search(rb"MESSAGES (\d+) RECENT (\d+)", data[0]).groups())


def test_delivered_before_any_select_is_recent_once(make_imap_server):
    server = make_imap_server()
    for n in range(2):
        smtpDeliver(server, n)
    a = login(server)
    assert a.append("INBOX", None, None, message(2))[0] == "OK"
    # STATUS and EXAMINE look without claiming.
    assert status(a, "INBOX") == (3, 3)
    assert recentOf(a, examine=True) == 3
    assert search(a, "RECENT") == [1, 2, 3]
    a.close()
    # The first read-write SELECT gets them.
    assert recentOf(a) == 3
    assert search(a, "RECENT") == [1, 2, 3] and search(a, "NEW") == [1, 2, 3] and search(a, "OLD") == []
    typ, data = a.fetch("1", "(FLAGS)")
    assert b"\\Recent" in data[0]
    # ... and only it.
    b = login(server)
    assert recentOf(b) == 0
    assert search(b, "OLD") == [1, 2, 3] and search(b, "RECENT") == []
    assert status(b, "INBOX") == (3, 0)
    # A delivery while both have INBOX selected is recent to one of them.
    smtpDeliver(server, 3)
    a.noop()
    b.noop()
    assert len(search(a, "RECENT")) + len(search(b, "RECENT")) == 4
    for m in (a, b):
        m.logout()


def test_recent_survives_a_restart(make_imap_server):
    server = make_imap_server()
    for n in range(2):
        smtpDeliver(server, n)
    server.stop()
    server.start()
    a = login(server)
    assert recentOf(a) == 2
    a.logout()
    smtpDeliver(server, 2)
    server.stop()
    server.start()
    a = login(server)
    # The two were claimed before the restart; the third was not.
    assert recentOf(a) == 1
    assert search(a, "RECENT") == [3]
    a.logout()
    assert "Traceback" not in server.log()


def test_a_mailbox_deleted_and_created_again_starts_over(make_imap_server):
    server = make_imap_server()
    a = login(server)
    assert a.create("Again")[0] == "OK"
    assert recentOf(a, "Again") == 0
    for n in range(2):
        assert a.append("Again", None, None, message(n))[0] == "OK"
    a.noop()
    assert search(a, "RECENT") == [1, 2]
    assert a.select("INBOX")[0] == "OK"
    assert a.delete("Again")[0] == "OK"
    assert a.create("Again")[0] == "OK"
    assert a.append("Again", None, None, message(5))[0] == "OK"
    assert status(a, "Again") == (1, 1)
    assert recentOf(a, "Again") == 1
    assert search(a, "NEW") == [1]
    a.logout()


def test_memory_store_delivered_before_select():
    """The same through the session code on the memory store (in process)."""
    w = World()
    w.deliver(plainMessage("one"))
    w.deliver(plainMessage("two"))
    a = w.client(login=USER)
    assert b"(RECENT 2)" in a.ok("STATUS INBOX (RECENT)")
    assert b"* 2 RECENT" in a.ok("SELECT INBOX")
    b = w.client(login=USER)
    assert b"* 0 RECENT" in b.ok("SELECT INBOX")
    a.ok("CREATE Again")
    w.deliver(plainMessage("three"), folder="Again")
    assert b"* 1 RECENT" in a.ok("SELECT Again")
    a.ok("SELECT INBOX")
    a.ok("DELETE Again")
    a.ok("CREATE Again")
    w.deliver(plainMessage("four"), folder="Again")
    assert b"* 1 RECENT" in a.ok("SELECT Again")
