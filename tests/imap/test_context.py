"""
RFC 5267 CONTEXT=SEARCH and CONTEXT=SORT against the real server, with
imaplib (raw commands: it has no verbs for them) and, for IDLE, a raw
socket: PARTIAL, UPDATE (ADDTO / REMOVEFROM as a second session appends,
flags and expunges), CANCELUPDATE, NOUPDATE, and the BAD answers.
"""

import imaplib
import re
import time

import pytest

from tests.imap.raw import RawIMAP

imaplib.Commands.setdefault("CANCELUPDATE", ("SELECTED",))


def _message(subject, body="hello\r\n"):
    return ("From: bob@example.test\r\nTo: ctx@example.test\r\nSubject: %s\r\n"
            "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n%s" % (subject, body)).encode()


@pytest.fixture
def user(imap_server):
    name = "ctx%d@example.test" % (time.monotonic_ns() % 10 ** 9)
    imap_server.addUser(name, "pw")
    return name


def connect(server, user):
    c = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    c.login(user, "pw")
    return c


def run(c, name, *args):
    """A raw command: (tag, result, its own ESEARCH lines, every ESEARCH line that came)."""
    c.untagged_responses.pop("ESEARCH", None)
    tag = c._command(name, *args)
    typ, _ = c._command_complete(name, tag)
    lines = [line.decode() for line in c.untagged_responses.pop("ESEARCH", []) if line is not None]
    return tag.decode(), typ, lines


def updates(lines, tag):
    prefix = '(TAG "%s")' % tag
    return [line[len(prefix):] for line in lines if line.startswith(prefix)]


def test_capability(imap_server, user):
    c = connect(imap_server, user)
    typ, data = c.capability()
    assert {"CONTEXT=SEARCH", "CONTEXT=SORT", "ESORT"} <= set(data[0].decode().split())
    c.logout()


def test_partial(imap_server, user):
    c = connect(imap_server, user)
    for i in range(8):
        c.append("INBOX", "", None, _message("m%d" % i))
    c.select("INBOX")
    tag, typ, lines = run(c, "SEARCH", "RETURN", "(PARTIAL 3:5 COUNT)", "ALL")
    assert typ == "OK" and updates(lines, tag) == [" PARTIAL (3:5 3:5) COUNT 8"]
    tag, typ, lines = run(c, "UID", "SEARCH", "RETURN", "(PARTIAL -1:-3)", "ALL")
    assert updates(lines, tag) == [" UID PARTIAL (-1:-3 6:8)"]
    tag, typ, lines = run(c, "SEARCH", "RETURN", "(PARTIAL 9:100)", "ALL")
    assert updates(lines, tag) == [" PARTIAL (9:100 NIL)"]
    tag, typ, lines = run(c, "SORT", "RETURN", "(PARTIAL 1:3)", "(REVERSE SUBJECT)", "UTF-8", "ALL")
    assert updates(lines, tag) == [" PARTIAL (1:3 8,7,6)"]
    with pytest.raises(imaplib.IMAP4.error, match="PARTIAL and ALL"):
        run(c, "SEARCH", "RETURN", "(PARTIAL 1:2 ALL)", "ALL")
    c.logout()


def test_updates_from_a_second_session(imap_server, user):
    a = connect(imap_server, user)
    b = connect(imap_server, user)
    for i in range(3):
        b.append("INBOX", "", None, _message("old %d" % i))
    a.select("INBOX")
    b.select("INBOX")
    flagged, typ, lines = run(a, "UID", "SEARCH", "RETURN", "(UPDATE)", "FLAGGED")
    assert typ == "OK" and updates(lines, flagged) == [" UID"]
    # A content key: new messages are read (worker threads) when they arrive.
    hot, typ, lines = run(a, "SEARCH", "RETURN", "(UPDATE COUNT)", "SUBJECT", "hot")
    assert updates(lines, hot) == [" COUNT 0"]
    bySubject, typ, lines = run(a, "UID", "SORT", "RETURN", "(UPDATE)", "(SUBJECT)", "UTF-8", "ALL")
    assert updates(lines, bySubject) == [" UID ALL 1:3"]

    # A flag change.
    b.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
    _, _, lines = run(a, "NOOP")
    assert updates(lines, flagged) == [" UID ADDTO (0 2)"]
    assert updates(lines, hot) == [] and updates(lines, bySubject) == []

    # A new message (APPENDed by the other session) that matches the content key.
    b.append("INBOX", "(\\Flagged)", None, _message("a hot one"))
    _, _, lines = run(a, "NOOP")
    assert updates(lines, flagged) == [" UID ADDTO (0 4)"]
    assert updates(lines, hot) == [" ADDTO (0 4)"]
    # "a hot one" sorts first.
    assert updates(lines, bySubject) == [" UID ADDTO (1 4)"]

    # An expunge: REMOVEFROM before the EXPUNGE.
    b.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    b.expunge()
    tag = a._command("NOOP")
    typ, _ = a._command_complete("NOOP", tag)
    # imaplib keeps the untagged responses by kind; the wire order is checked with raw sockets below.
    lines = [line.decode() for line in a.untagged_responses.pop("ESEARCH", [])]
    assert updates(lines, flagged) == [" UID REMOVEFROM (0 2)"]
    assert updates(lines, bySubject) == [" UID REMOVEFROM (3 2)"]
    assert a.untagged_responses.pop("EXPUNGE") == [b"2"]

    # CANCELUPDATE: no more updates for that tag.
    tag, typ, _ = run(a, "CANCELUPDATE", '"%s"' % flagged)
    assert typ == "OK"
    b.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
    _, _, lines = run(a, "NOOP")
    assert updates(lines, flagged) == []
    for c in (a, b):
        c.logout()


def test_bad_cases(imap_server, user):
    c = connect(imap_server, user)
    c.append("INBOX", "", None, _message("one"))
    saved = {name: imaplib.Commands[name] for name in ("SEARCH", "CANCELUPDATE")}
    try:
        # Let imaplib send what it would refuse itself before SELECT.
        imaplib.Commands.update({name: ("AUTH", "SELECTED") for name in saved})
        # UPDATE without a selected mailbox: SEARCH is BAD, and so is CANCELUPDATE.
        with pytest.raises(imaplib.IMAP4.error, match="needs a selected mailbox"):
            run(c, "SEARCH", "RETURN", "(UPDATE)", "ALL")
        with pytest.raises(imaplib.IMAP4.error, match="needs a selected mailbox"):
            run(c, "CANCELUPDATE", '"x"')
    finally:
        imaplib.Commands.update(saved)
    c.select("INBOX")
    # An unknown tag.
    with pytest.raises(imaplib.IMAP4.error, match="No search or sort is kept up to date under tag nosuch"):
        run(c, "CANCELUPDATE", '"nosuch"')
    # An unquoted tag, no tag.
    with pytest.raises(imaplib.IMAP4.error, match="quoted"):
        run(c, "CANCELUPDATE", "nosuch")
    with pytest.raises(imaplib.IMAP4.error, match="CANCELUPDATE needs"):
        run(c, "CANCELUPDATE")
    # A tag in use by a live context cannot start another (updates are told apart by tag).
    tag, typ, _ = run(c, "SEARCH", "RETURN", "(UPDATE)", "ALL")
    c.send(tag.encode() + b" SEARCH RETURN (UPDATE) SEEN\r\n")
    reply = c.readline()
    while not reply.startswith(tag.encode()):
        reply = c.readline()
    assert reply.startswith(tag.encode() + b" BAD Tag %s already names a search" % tag.encode()), reply
    # The session is still fine.
    assert c.noop()[0] == "OK"
    c.logout()


def test_noupdate_past_the_limit(make_imap_server):
    server = make_imap_server(limits={"imap_search_contexts": 1})
    server.addUser("lim@example.test", "pw")
    c = connect(server, "lim@example.test")
    c.append("INBOX", "", None, _message("one"))
    c.select("INBOX")
    first, typ, _ = run(c, "SEARCH", "RETURN", "(UPDATE)", "ALL")
    second, typ, lines = run(c, "SEARCH", "RETURN", "(UPDATE COUNT)", "ALL")
    # The result once, OK, and an untagged NO [NOUPDATE "tag"] (RFC 5267 s4.3.1).
    assert typ == "OK" and updates(lines, second) == [" COUNT 1"]
    assert any(b'[NOUPDATE "%s"]' % second.encode() in line for line in c.untagged_responses.get("NO", []))
    c.logout()


def test_idle_updates_and_wire_order(imap_server, user):
    a = RawIMAP(imap_server.port("imap")).login(user, "pw")
    b = connect(imap_server, user)
    for i in range(3):
        b.append("INBOX", "", None, _message("m%d" % i))
    b.select("INBOX")
    assert b"t2 OK" in a.cmd(b"SELECT INBOX")
    reply = a.cmd(b"SEARCH RETURN (UPDATE) UNDELETED")
    assert b'* ESEARCH (TAG "t3") ALL 1:3' in reply
    # Expunge: the REMOVEFROM goes before the EXPUNGE, in the numbers the client still knows.
    b.store("2", "+FLAGS", "(\\Deleted)")
    b.expunge()
    reply = a.cmd(b"NOOP")
    assert re.search(rb'\* ESEARCH \(TAG "t3"\) REMOVEFROM \(0 2\)\r\n\* 2 EXPUNGE\r\n', reply), reply
    # In IDLE: a new message brings EXISTS, then the ADDTO, at once.
    a.send(b"i1 IDLE\r\n")
    assert a.f.readline().startswith(b"+ ")
    b.append("INBOX", "", None, _message("new"))
    seen = b""
    while b"ADDTO" not in seen:
        seen += a.f.readline()
    assert re.search(rb'\* 3 EXISTS\r\n(\* \d+ RECENT\r\n)?\* ESEARCH \(TAG "t3"\) ADDTO \(0 3\)\r\n', seen), seen
    a.send(b"DONE\r\n")
    assert a.read(b"i1").endswith(b"i1 OK IDLE terminated\r\n")
    a.close()
    b.logout()


def test_smtp_delivery_reaches_a_sort_context_in_idle(imap_server, user):
    import smtplib

    a = RawIMAP(imap_server.port("imap")).login(user, "pw")
    c = connect(imap_server, user)
    for subject in ("b", "d"):
        c.append("INBOX", "", None, _message(subject))
    c.logout()
    assert b"t2 OK" in a.cmd(b"SELECT INBOX")
    reply = a.cmd(b'UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 SUBJECT "c"')
    assert b'* ESEARCH (TAG "t3") UID\r\n' in reply
    reply = a.cmd(b"UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL")
    assert b'* ESEARCH (TAG "t4") UID ALL 1:2\r\n' in reply
    a.send(b"i1 IDLE\r\n")
    assert a.f.readline().startswith(b"+ ")
    with smtplib.SMTP("127.0.0.1", imap_server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("bob@example.org", [user], _message("c").replace(b"bob@example.test", b"bob@example.org"))
    seen = b""
    while seen.count(b"ADDTO") < 2:
        seen += a.f.readline()
    # A content key (SUBJECT) read in a worker thread; c sorts between b and d.
    assert b'* ESEARCH (TAG "t3") UID ADDTO (1 3)\r\n' in seen, seen
    assert b'* ESEARCH (TAG "t4") UID ADDTO (2 3)\r\n' in seen, seen
    a.send(b"DONE\r\n")
    assert a.read(b"i1").endswith(b"i1 OK IDLE terminated\r\n")
    a.close()
