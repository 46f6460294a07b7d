"""
THREAD=REFERENCES and THREAD=ORDEREDSUBJECT (RFC 5256) against the real
server, with imapclient and raw sockets.  The algorithms themselves are
tested in tests/mail/test_threading.py.
"""

import itertools
import re

import imapclient
import pytest

from tests.imap.raw import RawIMAP

USER, PASSWORD = "alice@example.test", "alice-pw"
_boxes = itertools.count()


def mail(mid, subject, refs=None, inReplyTo=None, date="Thu, 01 Jan 2026 10:00:00 +0000"):
    lines = ["From: bob@example.test", "To: alice@example.test", "Subject: " + subject, "Date: " + date]
    if mid:
        lines.append("Message-ID: <%s@example.test>" % mid)
    if refs:
        lines.append("References: " + " ".join("<%s@example.test>" % r for r in refs))
    if inReplyTo:
        lines.append("In-Reply-To: <%s@example.test>" % inReplyTo)
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


def date(hour):
    return "Thu, 01 Jan 2026 %02d:00:00 +0000" % hour


@pytest.fixture
def client(imap_server):
    c = imapclient.IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False, timeout=30)
    c.login(USER, PASSWORD)
    box = "Threads%d" % next(_boxes)
    c.create_folder(box)
    c.box = box
    yield c
    c.logout()


def fill(c, messages):
    for m in messages:
        c.append(c.box, m)
    c.select_folder(c.box)


def test_capabilities(client):
    caps = client.capabilities()
    assert b"THREAD=REFERENCES" in caps and b"THREAD=ORDEREDSUBJECT" in caps


def test_references(client):
    fill(client, [
        mail("a", "Party", date=date(1)),
        mail("b", "Re: Party", refs=["a"], date=date(2)),
        mail("x", "Other", date=date(3)),
        mail("c", "Re: Party", refs=["a", "b"], date=date(4)),
        mail("d", "Re: Party", inReplyTo="a", date=date(5)),
        mail(None, "Re: other", date=date(6)),  # joins "Other" by its subject (RFC 5256 s2.2 step 5)
    ])
    assert client.thread("REFERENCES") == ((1, (2, 4), (5,)), (3, 6))
    # UID THREAD: the same shape in UIDs; search criteria narrow the set
    uids = client.search()
    threads = client.thread("REFERENCES", ["NOT", "SUBJECT", "other"])
    client.use_uid = False
    assert client.thread("REFERENCES", ["NOT", "SUBJECT", "other"]) == ((1, (2, 4), (5,)),)
    assert threads == ((uids[0], (uids[1], uids[3]), (uids[4],)),)


def test_late_parent_and_missing_parent(client):
    fill(client, [
        mail("r1", "Re: plan", refs=["root"], date=date(3)),
        mail("r2", "Re: plan", refs=["root"], date=date(2)),
    ])
    client.use_uid = False
    # the parent is missing: a dummy holds the two replies, by sent date
    assert client.thread("REFERENCES") == (((2,), (1,)),)
    client.append(client.box, mail("root", "plan", date=date(1)))
    client.select_folder(client.box)
    assert client.thread("REFERENCES") == ((3, (2,), (1,)),)


def test_ordered_subject(client):
    fill(client, [
        mail("1", "B", date=date(5)),
        mail("2", "Re: a", date=date(1)),
        mail("3", "b", date=date(2)),
        mail("4", "A", date=date(3)),
        mail("5", "fwd: A", date=date(4)),
    ])
    client.use_uid = False
    assert client.thread("ORDEREDSUBJECT") == ((2, (4,), (5,)), (3, 1))


def test_raw_answers(imap_server):
    c = RawIMAP(imap_server.port("imap")).login(USER, PASSWORD)
    box = b"Raw%d" % next(_boxes)
    try:
        assert b" OK" in c.cmd(b"CREATE " + box)
        for m in (mail("p", "hi"), mail("q", "Re: hi", refs=["p"])):
            assert b" OK " in c.append(box, m, binary=False)
        reply = c.cmd(b"THREAD REFERENCES UTF-8 ALL")
        assert reply.splitlines()[-1].split()[1] == b"BAD"  # not selected
        c.cmd(b"SELECT " + box)
        assert c.cmd(b"THREAD REFERENCES UTF-8 ALL").splitlines()[0] == b"* THREAD (1 2)"
        assert c.cmd(b"thread orderedsubject us-ascii all").splitlines()[0] == b"* THREAD (1 2)"
        assert c.cmd(b"THREAD REFERENCES UTF-8 SUBJECT nothing").splitlines()[0] == b"* THREAD"
        assert b"BAD" in c.cmd(b"THREAD REFS UTF-8 ALL").splitlines()[-1]
        assert b"NO [BADCHARSET" in c.cmd(b"THREAD REFERENCES KOI8-R ALL").splitlines()[-1]
        assert b"BAD" in c.cmd(b"THREAD REFERENCES UTF-8").splitlines()[-1]
        assert b"BAD" in c.cmd(b"THREAD REFERENCES").splitlines()[-1]
        reply = c.cmd(b"UID THREAD REFERENCES UTF-8 ALL")
        assert reply.splitlines()[0].startswith(b"* THREAD (") and b" OK " in reply.splitlines()[-1]
        assert b" OK " in c.cmd(b"NOOP")  # the session is still sane
    finally:
        c.close()


def threadIdsOf(c, uids):
    out = {}
    for uid, data in c.fetch(uids, ["THREADID"]).items():
        value = data[b"THREADID"]
        out[uid] = value[0] if isinstance(value, tuple) else value
    return out


def test_fetch_threadid(client):
    fill(client, [
        mail("ta", "Trip", date=date(1)),
        mail("tb", "Re: Trip", inReplyTo="ta", date=date(2)),
        mail("tx", "Unrelated", date=date(3)),
    ])
    uids = client.search()
    ids = threadIdsOf(client, uids)
    assert ids[uids[0]] == ids[uids[1]] != ids[uids[2]]
    assert all(isinstance(v, bytes) and v for v in ids.values())
    # a reply delivered later joins the thread; with content items too
    client.append(client.box, mail("tc", "Re: Trip", refs=["ta", "tb"], date=date(4)))
    client.select_folder(client.box)
    uid = client.search()[-1]
    data = client.fetch([uid], ["THREADID", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[uid]
    assert data[b"THREADID"] in (ids[uids[0]], (ids[uids[0]],))
    # MOVE keeps the thread
    client.create_folder(client.box + "-moved")
    client.move([uids[1]], client.box + "-moved")
    client.select_folder(client.box + "-moved")
    [moved] = client.search()
    assert threadIdsOf(client, [moved])[moved] == ids[uids[0]]


def test_raw_threadid_syntax(imap_server):
    c = RawIMAP(imap_server.port("imap")).login(USER, PASSWORD)
    box = b"RawId%d" % next(_boxes)
    try:
        c.cmd(b"CREATE " + box)
        c.append(box, mail("r1", "hi"), binary=False)
        c.append(box, mail("r2", "Re: hi", refs=["r1"]), binary=False)
        c.cmd(b"SELECT " + box)
        lines = c.cmd(b"FETCH 1:2 (UID THREADID)").splitlines()
        ids = [re.fullmatch(rb"\* (\d) FETCH \(UID \d+ THREADID \(([A-Za-z0-9_-]+)\)\)", l) for l in lines[:2]]
        assert all(ids), lines
        assert ids[0].group(2) == ids[1].group(2)
        assert b" OK " in lines[-1]
    finally:
        c.close()


def test_threadid_survives_kill_9(make_imap_server):
    server = make_imap_server()
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=30)
    c.login(USER, PASSWORD)
    c.box = "INBOX"
    fill(c, [mail("ka", "Crash"), mail("kb", "Re: Crash", refs=["ka"]), mail("kx", "Other")])
    uids = c.search()
    before = threadIdsOf(c, uids)
    assert before[uids[0]] == before[uids[1]] != before[uids[2]] and all(before.values())
    c.logout()
    server.kill()
    server.start()
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=30)
    c.login(USER, PASSWORD)
    c.select_folder("INBOX")
    assert threadIdsOf(c, c.search()) == before
    c.logout()


def test_in_process_on_the_memory_store():
    """THREAD and FETCH THREADID through the session on the memory store (no server)."""
    from tests.imap.helpers import World

    w = World()
    for m in (mail("ma", "Talk", date=date(2)), mail("mb", "Re: Talk", refs=["ma"], date=date(3)),
              mail("mc", "Other", date=date(1))):
        w.deliver(m)
    c = w.client(login=USER)
    c.ok("SELECT INBOX")
    assert c.ok("THREAD REFERENCES UTF-8 ALL").splitlines()[0] == b"* THREAD (3)(1 2)"
    assert c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL").splitlines()[0] == b"* THREAD (3)(1 2)"
    reply = c.ok("FETCH 1:3 (THREADID)")
    ids = re.findall(rb"THREADID \(([A-Za-z0-9_-]+)\)", reply)
    assert len(ids) == 3 and ids[0] == ids[1] != ids[2], reply
    reply = c.ok("FETCH 2 (THREADID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"THREADID (" + ids[0] + b")" in reply
