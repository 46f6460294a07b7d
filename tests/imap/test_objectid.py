"""
IMAP OBJECTID (RFC 8474): FETCH EMAILID/THREADID, the MAILBOXID response
code of SELECT/EXAMINE/CREATE, STATUS (MAILBOXID), SEARCH EMAILID/THREADID,
against the real server (imapclient and raw sockets) and in process.  The
ids themselves (stability, what makes a new one) are the store's, tested by
the store conformance suite; here: that IMAP shows them right.
"""

import itertools
import re

import imapclient
import pytest

from tests.imap.raw import RawIMAP

USER, PASSWORD = "alice@example.test", "alice-pw"
_boxes = itertools.count()
# RFC 8474 s7
OBJECTID = rb"[A-Za-z0-9_-]{1,255}"


def mail(subject, mid=None, refs=None):
    lines = ["From: bob@example.test", "To: alice@example.test", "Subject: " + subject,
             "Date: Thu, 01 Jan 2026 10:00:00 +0000"]
    if mid:
        lines.append("Message-ID: <%s@example.test>" % mid)
    if refs:
        lines.append("References: " + " ".join("<%s@example.test>" % r for r in refs))
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


def connect(server):
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=30)
    c.login(USER, PASSWORD)
    return c


def one(value):
    return value[0] if isinstance(value, tuple) else value


def emailIds(c, uids):
    return {uid: one(data[b"EMAILID"]) for uid, data in c.fetch(uids, ["EMAILID"]).items()}


def mailboxIdCode(reply):
    m = re.search(rb"\[MAILBOXID \((" + OBJECTID + rb")\)\]", reply)
    return m and m.group(1)


def test_capability(imap_server):
    c = connect(imap_server)
    try:
        assert b"OBJECTID" in c.capabilities()
    finally:
        c.logout()


def test_emailid_across_move_and_copy(imap_server):
    c = connect(imap_server)
    box = "Ids%d" % next(_boxes)
    try:
        c.create_folder(box)
        c.create_folder(box + "-moved")
        for i in range(3):
            c.append(box, mail("m%d" % i))
        c.select_folder(box)
        uids = c.search()
        ids = emailIds(c, uids)
        assert len(set(ids.values())) == 3
        assert all(re.fullmatch(OBJECTID, v) for v in ids.values()), ids
        # with a content item too (the other FETCH path)
        data = c.fetch([uids[0]], ["EMAILID", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[uids[0]]
        assert one(data[b"EMAILID"]) == ids[uids[0]]
        # SEARCH EMAILID finds it here; ids are case-sensitive
        assert c.search(["EMAILID", ids[uids[1]].decode()]) == [uids[1]]
        assert c.search(["NOT", "EMAILID", ids[uids[1]].decode()]) == [uids[0], uids[2]]
        swapped = ids[uids[1]].swapcase().decode()
        if swapped != ids[uids[1]].decode():
            assert c.search(["EMAILID", swapped]) == []
        # COPY: a new message, a new id; MOVE: the same id
        c.copy([uids[0]], box + "-moved")
        c.move([uids[1]], box + "-moved")
        assert c.search(["EMAILID", ids[uids[1]].decode()]) == []
        c.select_folder(box + "-moved")
        moved = emailIds(c, c.search())
        assert ids[uids[1]] in moved.values()
        assert ids[uids[0]] not in moved.values() and len(set(moved.values())) == 2
        [found] = c.search(["EMAILID", ids[uids[1]].decode()])
        assert moved[found] == ids[uids[1]]
    finally:
        c.logout()


def test_raw_mailboxid_create_select_examine_status_rename(imap_server):
    c = RawIMAP(imap_server.port("imap")).login(USER, PASSWORD)
    box = b"RawBox%d" % next(_boxes)
    try:
        created = c.cmd(b"CREATE " + box)
        # RFC 8474 s4.1: in the tagged OK of CREATE
        last = created.splitlines()[-1]
        assert re.fullmatch(rb"\S+ OK \[MAILBOXID \(" + OBJECTID + rb"\)\] .*", last), created
        mailboxId = mailboxIdCode(last)
        other = mailboxIdCode(c.cmd(b"CREATE " + box + b"x"))
        assert other and other != mailboxId
        for verb in (b"SELECT ", b"EXAMINE "):
            reply = c.cmd(verb + box)
            assert re.search(rb"^\* OK \[MAILBOXID \(" + re.escape(mailboxId) + rb"\)\] ", reply, re.M), reply
        c.cmd(b"UNSELECT")
        reply = c.cmd(b"STATUS " + box + b" (MESSAGES MAILBOXID)")
        assert re.search(rb"^\* STATUS " + box + rb" \(MESSAGES 0 MAILBOXID \(" + re.escape(mailboxId) + rb"\)\)\r$",
                         reply, re.M), reply
        # RENAME keeps the mailbox id
        assert b" OK " in c.cmd(b"RENAME " + box + b" " + box + b"-renamed")
        reply = c.cmd(b"STATUS " + box + b"-renamed (MAILBOXID)")
        assert b"MAILBOXID (" + mailboxId + b")" in reply, reply
        # LIST-STATUS (RFC 5819) shows it too
        reply = c.cmd(b'LIST "" ' + box + b"-renamed RETURN (STATUS (MAILBOXID))")
        assert b"MAILBOXID (" + mailboxId + b")" in reply, reply
        # deleted and created again: a new id
        c.cmd(b"DELETE " + box + b"-renamed")
        again = mailboxIdCode(c.cmd(b"CREATE " + box + b"-renamed"))
        assert again and again != mailboxId
    finally:
        c.close()


def test_raw_fetch_and_search_syntax(imap_server):
    c = RawIMAP(imap_server.port("imap")).login(USER, PASSWORD)
    box = b"RawIds%d" % next(_boxes)
    try:
        c.cmd(b"CREATE " + box)
        c.append(box, mail("hi", mid="r1"), binary=False)
        c.append(box, mail("Re: hi", mid="r2", refs=["r1"]), binary=False)
        c.append(box, mail("other", mid="r3"), binary=False)
        c.cmd(b"SELECT " + box)
        lines = c.cmd(b"UID FETCH 1:* (UID FLAGS EMAILID THREADID)").splitlines()
        pattern = rb"\* (\d) FETCH \(UID (\d+) FLAGS \([^)]*\) EMAILID \((" + OBJECTID + rb")\) THREADID \((" + \
            OBJECTID + rb")\)\)"
        found = [re.fullmatch(pattern, line) for line in lines[:3]]
        assert all(found), lines
        uids = [m.group(2) for m in found]
        emails = [m.group(3) for m in found]
        threads = [m.group(4) for m in found]
        assert threads[0] == threads[1] != threads[2]
        reply = c.cmd(b"UID SEARCH EMAILID " + emails[2])
        assert reply.splitlines()[0] == b"* SEARCH " + uids[2], reply
        reply = c.cmd(b"UID SEARCH THREADID " + threads[0])
        assert reply.splitlines()[0] == b"* SEARCH " + uids[0] + b" " + uids[1], reply
        reply = c.cmd(b"SEARCH OR EMAILID " + emails[2] + b" THREADID " + threads[0])
        assert reply.splitlines()[0] == b"* SEARCH 1 2 3", reply
        reply = c.cmd(b"SEARCH EMAILID Mnope")
        assert reply.splitlines()[0] == b"* SEARCH" and b" OK " in reply, reply
        # an objectid has no other characters (RFC 8474 s7): BAD, the session goes on
        for bad in (b"SEARCH EMAILID a.b", b"SEARCH THREADID " + b"x" * 256, b"SEARCH EMAILID"):
            reply = c.cmd(bad)
            assert b" BAD " in reply.splitlines()[-1], (bad, reply)
        assert b" OK " in c.cmd(b"NOOP")
    finally:
        c.close()


def test_ids_survive_a_restart(make_imap_server):
    server = make_imap_server()
    c = connect(server)
    c.create_folder("Keep")
    for i in range(2):
        c.append("Keep", mail("k%d" % i))
    mailboxId = c.folder_status("Keep", ["MAILBOXID"])[b"MAILBOXID"]
    c.select_folder("Keep")
    before = emailIds(c, c.search())
    c.logout()
    server.kill()
    server.start()
    c = connect(server)
    try:
        assert c.folder_status("Keep", ["MAILBOXID"])[b"MAILBOXID"] == mailboxId
        c.select_folder("Keep")
        assert emailIds(c, c.search()) == before
    finally:
        c.logout()


def test_in_process_memory_store():
    from tests.imap.helpers import World, message

    w = World()
    for i in range(3):
        w.deliver(message("s%d" % i))
    c = w.client(login=USER)
    assert b" OBJECTID" in c.ok("CAPABILITY")
    selected = c.ok("SELECT INBOX")
    mailboxId = mailboxIdCode(selected)
    assert mailboxId, selected
    reply = c.ok("FETCH 1:3 (FLAGS EMAILID)")
    ids = re.findall(rb"EMAILID \((" + OBJECTID + rb")\)", reply)
    assert len(set(ids)) == 3, reply
    assert c.ok("SEARCH EMAILID %s" % ids[1].decode()).splitlines()[0] == b"* SEARCH 2"
    assert b"MAILBOXID (%s)" % mailboxId in c.ok("STATUS INBOX (MAILBOXID)")
    created = c.ok("CREATE Other")
    other = mailboxIdCode(created.splitlines()[-1])
    assert other and other != mailboxId, created


def test_in_process_store_without_ids(monkeypatch):
    """A backend without ids (written before they existed): NIL, no MAILBOXID code or item, SEARCH finds nothing."""
    from mailnet.store import memory
    from tests.imap.helpers import World, message

    monkeypatch.delattr(memory._MemoryFolder, "emailIds")
    monkeypatch.delattr(memory._MemoryFolder, "threadIds")
    init = memory._MemoryFolder.__init__

    def noId(self, *args, **kwargs):
        init(self, *args, **kwargs)
        del self.mailboxId

    monkeypatch.setattr(memory._MemoryFolder, "__init__", noId)
    w = World()
    w.deliver(message("s"))
    c = w.client(login=USER)
    selected = c.ok("SELECT INBOX")
    assert b"MAILBOXID" not in selected
    assert c.ok("FETCH 1 (UID EMAILID THREADID)").splitlines()[0] == b"* 1 FETCH (UID 1 EMAILID NIL THREADID NIL)"
    reply = c.ok("FETCH 1 (EMAILID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert reply.startswith(b"* 1 FETCH (EMAILID NIL BODY["), reply
    assert c.ok("SEARCH EMAILID M1").splitlines()[0] == b"* SEARCH"
    assert c.ok("SEARCH NOT THREADID T1").splitlines()[0] == b"* SEARCH 1"
    assert c.ok("STATUS INBOX (MESSAGES MAILBOXID)").splitlines()[0] == b"* STATUS INBOX (MESSAGES 1)"
    assert b"MAILBOXID" not in c.ok("CREATE Other")


def test_in_process_invalid_store_ids_are_nil(monkeypatch):
    """A store's id that is not an RFC 8474 objectid is never sent as one."""
    from mailnet.store import memory
    from tests.imap.helpers import World, message

    monkeypatch.setattr(memory._MemoryFolder, "emailIds", lambda self, uids: {uid: "bad id" for uid in uids})
    w = World()
    w.deliver(message("s"))
    c = w.client(login=USER)
    c.ok("SELECT INBOX")
    assert c.ok("FETCH 1 (EMAILID)").splitlines()[0] == b"* 1 FETCH (EMAILID NIL)"


@pytest.mark.parametrize("names", [("UID", "FLAGS", "EMAILID"), ("EMAILID",), ("EMAILID", "THREADID", "UID")])
def test_line_maker_ids(names):
    from mailnet.imap.commands.fetchlines import lineMaker
    from mailnet.store.interfaces import MessageInfo

    info = MessageInfo(uid=7, flags=frozenset({"\\Seen"}), internalDate=0.0, size=1, modseq=1)
    make = lineMaker(names, None, {7: "T-x_1"}, {7: "Mabc"})
    values = {"UID": b"UID 7", "FLAGS": b"FLAGS (\\Seen)", "EMAILID": b"EMAILID (Mabc)",
              "THREADID": b"THREADID (T-x_1)"}
    assert make(3, info) == b"* 3 FETCH (" + b" ".join(values[n] for n in names) + b")\r\n"
    assert lineMaker(names, {7}, {}, {})(3, info).count(b"NIL") == sum(n in ("EMAILID", "THREADID") for n in names)


def test_in_process_thread_ids_unavailable(monkeypatch):
    """A store that cannot give thread ids now: FETCH THREADID NIL, SEARCH THREADID NO, the session goes on."""
    from twisted.internet import defer

    from mailnet.store import memory
    from mailnet.store.interfaces import TemporaryStoreError
    from tests.imap.helpers import World, message

    monkeypatch.setattr(memory._MemoryFolder, "threadIds",
                        lambda self, uids: defer.fail(TemporaryStoreError("index busy")))
    w = World()
    w.deliver(message("s"))
    c = w.client(login=USER)
    c.ok("SELECT INBOX")
    assert c.ok("FETCH 1 (THREADID)").splitlines()[0] == b"* 1 FETCH (THREADID NIL)"
    reply = c.cmd("SEARCH THREADID T1")
    assert reply.splitlines()[-1].split(b" ")[1:3] == [b"NO", b"[UNAVAILABLE]"], reply
    assert re.search(rb"EMAILID \(" + OBJECTID + rb"\)", c.ok("FETCH 1 (EMAILID)"))
