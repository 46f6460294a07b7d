"""
NOTIFY (RFC 5465) against the real server: imaplib sends the commands
(NOTIFY is not one of imaplib's, so it is sent as a raw atom), a second
session and an SMTP delivery through smtplib make the changes, and the
first session reads the unsolicited responses as they come, without
sending a command (or in IDLE).
"""

import imaplib
import re
import smtplib

import pytest

from tests.imap.conftest import USERS
from tests.imap.helpers import message

ALICE = "alice@example.test"

imaplib.Commands.setdefault("NOTIFY", ("AUTH", "SELECTED"))


@pytest.fixture
def server(make_imap_server):
    return make_imap_server()


def connect(server, user=ALICE):
    c = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    c.login(user, USERS[user])
    return c


def notify(c, text):
    """NOTIFY ``text``: (status, untagged data) as imaplib gives them."""
    typ, data = c._simple_command("NOTIFY", text)
    return typ, data


def raw(c, text):
    """Send ``tag text`` and read up to the tagged answer: (tagged line, untagged lines)."""
    tag = c._new_tag()
    c.send(tag + b" " + text.encode() + b"\r\n")
    untagged = []
    while True:
        line = c.readline()
        if line.startswith(tag + b" "):
            return line.rstrip(b"\r\n"), untagged
        untagged.append(line.rstrip(b"\r\n"))


def waitFor(c, pattern, seen=None):
    """Read lines the server sends unasked until one matches ``pattern`` (the socket timeout bounds the wait)."""
    c.sock.settimeout(10)
    rx = re.compile(pattern)
    while True:
        line = c.readline()
        assert line, "connection closed"
        line = line.rstrip(b"\r\n")
        if seen is not None:
            seen.append(line)
        if rx.search(line):
            return line


def deliver(server, subject):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("bob@example.org", [ALICE], message(subject, sender="bob@example.org"))


def test_capability_and_bad_commands(server):
    c = connect(server)
    try:
        typ, caps = c.capability()
        assert b"NOTIFY" in caps[0].split()
        cases = [
            # s5: MessageNew and MessageExpunge together; FlagChange needs them.
            ("NOTIFY SET (SELECTED (MessageNew))", b"BAD"),
            ("NOTIFY SET (PERSONAL (FlagChange))", b"BAD"),
            # fetch attributes only for the selected mailbox
            ("NOTIFY SET (INBOXES (MessageNew (UID) MessageExpunge))", b"BAD"),
            ("NOTIFY SET (SELECTED (MessageNew MessageExpunge MailboxName))", b"BAD"),
            ("NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED (MessageNew MessageExpunge))", b"BAD"),
            ("NOTIFY SET (NOWHERE (MessageNew MessageExpunge))", b"BAD"),
            ("NOTIFY SET (PERSONAL (MessageNew MessageExpunge)", b"BAD"),
            ("NOTIFY MAYBE", b"BAD"),
            ("NOTIFY SET", b"BAD"),
        ]
        for text, kind in cases:
            tagged, _ = raw(c, text)
            assert tagged.split()[1] == kind, (text, tagged)
        # s3: an event the server does not give: NO [BADEVENT (the ones it does)].
        tagged, _ = raw(c, "NOTIFY SET (PERSONAL (MessageNew MessageExpunge AnnotationChange))")
        assert tagged.split()[1] == b"NO"
        assert b"[BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]" in tagged
        tagged, _ = raw(c, "NOTIFY SET (PERSONAL (QuotaChange))")
        assert b"[BADEVENT" in tagged
        tagged, _ = raw(c, "NOTIFY SET (SELECTED (MessageNew (ENVELOPE) MessageExpunge))")
        assert tagged.split()[1] == b"NO" and b"[CANNOT]" in tagged
        # The session is sane after all that.
        assert raw(c, "NOOP")[0].split()[1] == b"OK"
        assert raw(c, "NOTIFY NONE")[0].split()[1] == b"OK"
    finally:
        c.logout()
    # Not before login.
    c = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    try:
        tagged, _ = raw(c, "NOTIFY NONE")
        assert tagged.split()[1] == b"BAD"
    finally:
        c.shutdown()


def test_status_of_another_mailbox_after_an_smtp_delivery(server):
    c = connect(server)
    try:
        c.create("Work")
        c.select("Work")
        typ, _ = notify(c, "SET (SELECTED (MessageNew (UID) MessageExpunge)) (INBOXES (MessageNew MessageExpunge))")
        assert typ == "OK"
        # No command in progress: the STATUS comes on its own (RFC 5465 s5).
        deliver(server, "one")
        line = waitFor(c, rb"^\* STATUS ")
        assert line == b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UNSEEN 1)", line
        deliver(server, "two")
        line = waitFor(c, rb"^\* STATUS ")
        assert line == b"* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UNSEEN 2)", line
    finally:
        c.logout()


def test_status_indicator_and_none(server):
    c = connect(server)
    other = connect(server)
    try:
        c.create("Lists")
        deliver(server, "first")
        tagged, untagged = raw(c, "NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge))")
        assert tagged.split()[1] == b"OK"
        statuses = [line for line in untagged if line.startswith(b"* STATUS")]
        assert b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UNSEEN 1)" in statuses
        assert any(line.startswith(b"* STATUS Lists (MESSAGES 0 ") for line in statuses)
        assert raw(c, "NOTIFY NONE")[0].split()[1] == b"OK"
        # After NONE nothing more: the delivery is done (and told to the
        # store's listeners) before the NOOP, so a STATUS would come with it.
        deliver(server, "second")
        other.append("Lists", None, None, message("appended"))
        tagged, untagged = raw(c, "NOOP")
        assert tagged.split()[1] == b"OK"
        assert not [line for line in untagged if line.startswith(b"* STATUS")], untagged
    finally:
        other.logout()
        c.logout()


def test_selected_message_new_with_fetch_attributes(server):
    c = connect(server)
    other = connect(server)
    try:
        c.select("INBOX")
        typ, _ = notify(c, "SET (SELECTED (MessageNew (UID FLAGS RFC822.SIZE) MessageExpunge FlagChange))")
        assert typ == "OK"
        msg = message("for the selected")
        other.append("INBOX", "(\\Flagged)", None, msg)
        seen = []
        fetch = waitFor(c, rb"^\* 1 FETCH ", seen)
        assert b"* 1 EXISTS" in seen
        assert fetch == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent) RFC822.SIZE %d)" % len(msg), fetch
        # FlagChange: another session's STORE.
        other.select("INBOX")
        other.store("1", "+FLAGS", "(\\Seen)")
        line = waitFor(c, rb"^\* 1 FETCH ")
        assert b"\\Seen" in line
    finally:
        other.logout()
        c.logout()


def test_expunge_between_commands_selected_and_delayed(server):
    c = connect(server)
    other = connect(server)
    try:
        c.create("Side")
        for n in range(3):
            other.append("INBOX", None, None, message("m%d" % n))
        c.select("INBOX")
        other.select("INBOX")
        # SELECTED: an EXPUNGE may come between commands (RFC 5465 s5.3).
        typ, _ = notify(c, "SET (SELECTED (MessageNew MessageExpunge)) (MAILBOXES Side (MessageNew MessageExpunge))")
        assert typ == "OK"
        other.store("3", "+FLAGS", "(\\Deleted)")
        other.expunge()
        assert waitFor(c, rb"EXPUNGE$") == b"* 3 EXPUNGE"
        # SELECTED-DELAYED: not until a command that may carry it.
        typ, _ = notify(c, "SET (SELECTED-DELAYED (MessageNew MessageExpunge)) (MAILBOXES Side (MessageNew MessageExpunge))")
        assert typ == "OK"
        other.store("2", "+FLAGS", "(\\Deleted)")
        other.expunge()
        other.append("Side", None, None, message("after the expunge"))
        seen = []
        waitFor(c, rb"^\* STATUS Side ", seen)
        # The expunge came first; it is held, the STATUS was not.
        assert not [line for line in seen if line.endswith(b"EXPUNGE")], seen
        tagged, untagged = raw(c, "NOOP")
        assert b"* 2 EXPUNGE" in untagged, untagged
    finally:
        other.logout()
        c.logout()


def test_notifications_in_idle(server):
    c = connect(server)
    other = connect(server)
    try:
        c.create("Archive")
        c.select("INBOX")
        typ, _ = notify(c, "SET (SELECTED (MessageNew MessageExpunge)) (PERSONAL (MessageNew MessageExpunge MailboxName))")
        assert typ == "OK"
        tag = c._new_tag()
        c.send(tag + b" IDLE\r\n")
        assert c.readline().startswith(b"+")
        other.append("Archive", None, None, message("archived"))
        assert waitFor(c, rb"^\* STATUS ").startswith(b"* STATUS Archive (MESSAGES 1 UIDNEXT 2 ")
        deliver(server, "to the inbox")
        assert waitFor(c, rb"EXISTS$") == b"* 1 EXISTS"
        other.create("Fresh")
        assert waitFor(c, rb"^\* LIST ") == b'* LIST () "/" Fresh'
        c.send(b"DONE\r\n")
        assert waitFor(c, rb"^" + tag + rb" ").split()[1] == b"OK"
    finally:
        other.logout()
        c.logout()


def test_mailbox_name_and_subscription_change(server):
    c = connect(server)
    other = connect(server)
    try:
        typ, _ = notify(c, "SET (PERSONAL (MailboxName SubscriptionChange))")
        assert typ == "OK"
        other.create("Projects")
        assert waitFor(c, rb"^\* LIST ") == b'* LIST () "/" Projects'
        other.subscribe("Projects")
        assert waitFor(c, rb"^\* LIST ") == b'* LIST (\\Subscribed) "/" Projects'
        other.rename("Projects", "Done")
        assert waitFor(c, rb"^\* LIST ") == b'* LIST () "/" Done ("OLDNAME" (Projects))'
        other.delete("Done")
        assert waitFor(c, rb"^\* LIST ") == b'* LIST (\\NonExistent) "/" Done'
    finally:
        other.logout()
        c.logout()


def test_a_mailbox_created_later_is_watched(server):
    c = connect(server)
    other = connect(server)
    try:
        typ, _ = notify(c, "SET (SUBTREE Team (MessageNew MessageExpunge MailboxName))")
        assert typ == "OK"
        other.create("Team/Alpha")
        assert waitFor(c, rb"^\* LIST ") == b'* LIST () "/" Team/Alpha'
        # The session opens the new mailbox on its own turn, which may come
        # after this APPEND: then the STATUS is sent once the watch is there.
        other.append("Team/Alpha", None, None, message("team"))
        assert waitFor(c, rb"^\* STATUS ").startswith(b"* STATUS Team/Alpha (MESSAGES 1 UIDNEXT 2 ")
    finally:
        other.logout()
        c.logout()


def jmap(server, method, path, body=None):
    import base64
    import http.client
    import json

    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    auth = base64.b64encode(("%s:%s" % (ALICE, USERS[ALICE])).encode()).decode()
    connection.request(method, path, json.dumps(body).encode() if body is not None else None,
                       {"Authorization": "Basic " + auth, "Content-Type": "application/json"})
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    assert response.status == 200, data
    return data


def test_mailbox_made_through_jmap_is_told(server):
    # Not an IMAP session's change: the store's account listener tells the
    # NOTIFY session, which lists the mailboxes again.
    mail = "urn:ietf:params:jmap:mail"
    accountId = jmap(server, "GET", "/.well-known/jmap")["primaryAccounts"][mail]
    c = connect(server)
    try:
        typ, _ = notify(c, "SET (PERSONAL (MessageNew MessageExpunge MailboxName))")
        assert typ == "OK"
        answer = jmap(server, "POST", "/jmap/api/", {"using": ["urn:ietf:params:jmap:core", mail], "methodCalls": [
            ["Mailbox/set", {"accountId": accountId, "create": {"n": {"name": "FromJmap"}}}, "0"]]})
        created = answer["methodResponses"][0][1]["created"]["n"]["id"]
        assert waitFor(c, rb"^\* LIST ") == b'* LIST () "/" FromJmap'
        jmap(server, "POST", "/jmap/api/", {"using": ["urn:ietf:params:jmap:core", mail], "methodCalls": [
            ["Mailbox/set", {"accountId": accountId, "destroy": [created]}, "0"]]})
        assert waitFor(c, rb"^\* LIST ") == b'* LIST (\\NonExistent) "/" FromJmap'
    finally:
        c.logout()
