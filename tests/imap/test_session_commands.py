"""
The session in process (test_session.py): FETCH (sections, partial, binary,
a slow client), STORE, COPY/MOVE with UIDPLUS, EXPUNGE/CLOSE/UNSELECT,
APPEND, SEARCH and ESEARCH, CONDSTORE and QRESYNC.
"""

import base64
import re

from tests.imap.helpers import World, lines, message
from tests.imap.session_helpers import selected
from tests.imap.session_helpers import world  # noqa: F401 (a fixture)


# FETCH, STORE, COPY/MOVE, EXPUNGE, APPEND


def test_fetch_sets_seen_unless_peek_or_examine(world):
    world.deliver(message("one"))
    a = selected(world)
    reply = a.cmd("FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject)]")
    assert b"Subject: one\r\n\r\n" in reply and b"\\Seen" not in reply
    reply = a.cmd("FETCH 1 BODY[TEXT]")
    assert b"Hello world" in reply and b"FLAGS (\\Seen \\Recent)" in reply
    e = selected(world, examine=True)
    world.deliver(message("two"))
    e.cmd("NOOP")
    reply = e.cmd("FETCH 2 (BODY[])")
    assert b"\\Seen" not in reply


def test_store_variants_and_silent(world):
    world.deliver(message("one"))
    a = selected(world)
    assert b"* 1 FETCH (FLAGS (\\Seen \\Recent))" in a.cmd("STORE 1 FLAGS (\\Seen)")
    assert b"FETCH" not in a.cmd("STORE 1 +FLAGS.SILENT (\\Answered)")
    assert b"* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent))" in a.cmd("UID STORE 1 -FLAGS (\\Seen)")
    world.deliver(message("two"))
    a.cmd("NOOP")
    assert b"* 2 FETCH (FLAGS (\\Flagged \\Recent))" in a.cmd("STORE 2 +FLAGS (\\Flagged)")
    assert b"BAD" in a.cmd("STORE 1 +FLAGS (\\Recent)")
    assert b"BAD" in a.cmd("STORE 5 +FLAGS (\\Seen)")  # beyond the last message


def test_copy_move_uidplus(world):
    for i in range(3):
        world.deliver(message("m%d" % i))
    a = selected(world)
    reply = a.cmd("COPY 1:2 Archive")
    assert re.search(rb"t\d+ OK \[COPYUID \d+ 1:2 1:2\] COPY completed", reply)
    reply = a.cmd("UID MOVE 2:3 Trash")
    assert re.search(rb"\* OK \[COPYUID \d+ 2:3 1:2\]", reply)
    assert lines(reply)[1:3] == [b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
    assert b"NO [TRYCREATE]" in a.cmd("COPY 1 Nowhere")
    assert b"* SEARCH 1" in a.cmd("SEARCH ALL")


def test_expunge_close_unselect(world):
    for i in range(4):
        world.deliver(message("m%d" % i))
    a = selected(world)
    a.ok("STORE 1:4 +FLAGS.SILENT (\\Deleted)")
    reply = a.cmd("UID EXPUNGE 2")
    assert lines(reply)[0] == b"* 2 EXPUNGE"
    a.ok("UNSELECT")
    a.ok("SELECT INBOX")
    reply = a.cmd("CLOSE")
    assert b"EXPUNGE" not in reply  # RFC 3501 s6.4.2: silently
    reply = a.cmd("SELECT INBOX")
    assert b"* 0 EXISTS" in reply


def test_append(world):
    a = world.client(login="alice@example.test")
    reply = a.feed(b"a APPEND Drafts (\\Draft $Work) \"05-Mar-2024 10:00:00 +0000\" {16+}\r\nSubject: x\nbody\n\r\n")
    m = re.search(rb"a OK \[APPENDUID (\d+) 1\]", reply)
    assert m, reply
    a.ok("SELECT Drafts")
    reply = a.cmd("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert b"FLAGS (\\Draft \\Recent $Work)" in reply and b'"05-Mar-2024 10:00:00 +0000"' in reply
    assert b"{18}\r\nSubject: x\r\nbody\r\n)" in reply  # bare LF made CRLF
    assert b"NO [TRYCREATE]" in a.feed(b"b APPEND Nope {1+}\r\nx\r\n")
    small = World(messageSize=10)
    s = small.client(login="alice@example.test")
    assert b"NO [TOOBIG]" in s.feed(b"c APPEND INBOX {11+}\r\nxxxxxxxxxxx\r\n")


def test_recent_and_unknown_system_flags_cannot_be_stored(world):
    """RFC 3501 s2.3.2: \\Recent is the server's; APPEND and STORE answer BAD, and nothing changes."""
    world.deliver(message("one"))
    a = selected(world)
    assert b"a BAD Flag \\Recent cannot be stored" in a.feed(b"a APPEND INBOX (\\Recent) {3+}\r\nx\r\n\r\n")
    assert b"b BAD Flag \\Bogus cannot be stored" in a.feed(b"b STORE 1 +FLAGS (\\Seen \\Bogus)\r\n")
    reply = a.cmd("FETCH 1:* (FLAGS)")
    assert reply.count(b" FETCH (") == 1 and b"\\Seen" not in reply
    assert b"c OK" in a.feed(b"c STORE 1 +FLAGS ($Work \\Flagged)\r\n")


def test_append_to_selected_mailbox_says_exists(world):
    a = selected(world)
    reply = a.feed(b"a APPEND INBOX {3+}\r\nx\r\n\r\n")
    assert reply.index(b"* 1 EXISTS") < reply.index(b"a OK [APPENDUID")


# SEARCH


def test_search_keys(world):
    world.deliver(message("Invoice March", body="Please pay.\r\n", sender="boss@corp.test"), flags=["\\Seen"])
    world.deliver(message("=?utf-8?q?R=C3=A9union?=", body="Salut\r\n"))
    qp = message("plain", extra="MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                "Content-Transfer-Encoding: quoted-printable\r\n", body="caf=C3=A9 cr=C3=A8me\r\n")
    world.deliver(qp, flags=["$Work"])
    b64 = message("encoded", extra="MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n",
                  body="--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                  + base64.b64encode("Geheimnis \u00fcberall".encode()).decode() + "\r\n--b--\r\n")
    world.deliver(b64)
    a = selected(world)

    def search(criteria):
        reply = a.cmd("SEARCH " + criteria if isinstance(criteria, str) else b"SEARCH " + criteria)
        m = re.search(rb"\* SEARCH([ \d]*)", reply)
        assert m, reply
        return [int(x) for x in m.group(1).split()]

    assert search("ALL") == [1, 2, 3, 4]
    assert search("SEEN") == [1] and search("UNSEEN") == [2, 3, 4]
    assert search("KEYWORD $Work") == [3] and search("UNKEYWORD $Work") == [1, 2, 4]
    assert search("FROM boss") == [1] and search("FROM BOSS@corp") == [1]
    assert search('CHARSET UTF-8 SUBJECT "r\u00e9union"'.encode()) == [2]
    assert search("SUBJECT union") == [2]
    assert search("BODY pay") == [1] and search("BODY invoice") == []
    assert search("TEXT invoice") == [1]
    assert search('CHARSET UTF-8 BODY "cr\u00e8me"'.encode()) == [3]
    assert search('CHARSET UTF-8 BODY {8+}\r\n\u00fcberall'.encode()) == [4]
    assert search("BODY Geheimnis") == [4]
    assert search("OR SEEN KEYWORD $Work") == [1, 3]
    assert search("NOT SEEN NOT KEYWORD $Work") == [2, 4]
    assert search("HEADER Message-ID example.test") == [1, 2, 3, 4]
    assert search('HEADER X-Missing ""') == []
    assert search("2:3 UNSEEN") == [2, 3] and search("UID 4:*") == [4]
    assert search("SENTON 1-Jan-2024") == [1, 2, 3, 4] and search("SENTBEFORE 1-Jan-2024") == []
    assert search("SINCE 1-Jan-2000 LARGER 1") == [1, 2, 3, 4] and search("SMALLER 1") == []
    # Delivered before this first SELECT: recent (RFC 3501 s2.3.2).
    assert search("RECENT") == [1, 2, 3, 4] and search("NEW") == [2, 3, 4] and search("OLD") == []
    assert b"NO [BADCHARSET" in a.cmd("SEARCH CHARSET KOI8-R ALL")
    assert b"* SEARCH 2 3 4" in a.cmd("UID SEARCH UNSEEN")


def test_esearch_and_searchres(world):
    for i in range(5):
        world.deliver(message("m%d" % i), flags=["\\Seen"] if i % 2 else [])
    a = selected(world)
    assert b'* ESEARCH (TAG "t3") MIN 1 MAX 5 COUNT 3' in a.cmd("SEARCH RETURN (MIN MAX COUNT) UNSEEN")
    assert b'* ESEARCH (TAG "t4") UID ALL 1,3,5' in a.cmd("UID SEARCH RETURN () UNSEEN")
    assert b'* ESEARCH (TAG "t5") COUNT 0' in a.cmd("SEARCH RETURN (COUNT) KEYWORD nope")
    reply = a.cmd("SEARCH RETURN (SAVE) SEEN")
    assert b"ESEARCH" not in reply
    reply = a.cmd("FETCH $ (UID)")
    assert b"* 2 FETCH (UID 2)" in reply and b"* 4 FETCH (UID 4)" in reply and b"* 1 FETCH" not in reply


# CONDSTORE / QRESYNC (RFC 7162)


def test_condstore(world):
    for i in range(3):
        world.deliver(message("m%d" % i))
    a = world.client(login="alice@example.test")
    reply = a.cmd("SELECT INBOX (CONDSTORE)")
    highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", reply).group(1))
    reply = a.cmd("FETCH 1:* (UID MODSEQ)")
    assert re.search(rb"\* 1 FETCH \(UID 1 MODSEQ \(\d+\)\)", reply)
    reply = a.cmd("STORE 2 +FLAGS (\\Flagged)")
    modseq = int(re.search(rb"\* 2 FETCH \(FLAGS \(\\Flagged \\Recent\) MODSEQ \((\d+)\)\)", reply).group(1))
    assert modseq > highest
    reply = a.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest)
    assert b"* 2 FETCH" in reply and b"* 1 FETCH" not in reply and b"MODSEQ" in reply
    reply = a.cmd("STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % highest)
    assert b"OK [MODIFIED 2]" in reply and b"* 1 FETCH" in reply
    reply = a.cmd("UID SEARCH MODSEQ %d" % modseq)
    assert re.search(rb"\* SEARCH 1 2 \(MODSEQ \d+\)", reply)
    b = selected(world)
    b.ok("STORE 3 +FLAGS (\\Answered)")
    assert re.search(rb"\* 3 FETCH \(UID 3 FLAGS \(\\Answered \\Recent\) MODSEQ \(\d+\)\)", a.cmd("NOOP"))


def test_qresync(world):
    for i in range(5):
        world.deliver(message("m%d" % i))
    a = world.client(login="alice@example.test")
    a.ok("ENABLE QRESYNC")
    reply = a.cmd("SELECT INBOX")
    validity = int(re.search(rb"UIDVALIDITY (\d+)", reply).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", reply).group(1))
    a.ok("UNSELECT")
    b = selected(world)
    b.ok("STORE 2 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    b.ok("STORE 4 +FLAGS (\\Seen)")  # message 4 is UID 5 now
    reply = a.cmd("SELECT INBOX (QRESYNC (%d %d 1:5))" % (validity, modseq))
    assert b"* VANISHED (EARLIER) 2" in reply
    assert re.search(rb"\* 4 FETCH \(UID 5 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", reply)
    # Expunges are VANISHED once QRESYNC is on.
    b.ok("STORE 1 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    assert b"* VANISHED 1" in a.cmd("NOOP")
    reply = a.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    assert b"* VANISHED (EARLIER) 1:2" in reply
    assert b"* OK [CLOSED]" in a.cmd("SELECT Trash")


# FETCH details


MULTIPART = (b"From: a@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n"
             b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
             b"caf=C3=A9\r\n"
             b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n"
             b"--XX--\r\n")


def test_fetch_sections_partial_binary(world):
    world.deliver(MULTIPART)
    a = selected(world)
    reply = a.cmd("FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[]<0.4> BINARY.PEEK[1] BINARY.SIZE[2] BINARY.PEEK[2])")
    assert b"BODY[1] {9}\r\ncaf=C3=A9" in reply
    assert b"BODY[2.MIME] {77}\r\nContent-Type: application/octet-stream\r\n" in reply
    assert b"BODY[]<0> {4}\r\nFrom" in reply
    assert b"BINARY[1] {5}\r\ncaf\xc3\xa9" in reply
    assert b"BINARY.SIZE[2] 4" in reply and b"BINARY[2] ~{4}\r\n\x00\x01\x02\x03" in reply
    reply = a.cmd("FETCH 1 (BODYSTRUCTURE BODY[9])")
    assert b'"mixed" ("boundary" "XX")' in reply and b"BODY[9] NIL" in reply
    assert b"RFC822.HEADER {" in a.cmd("FETCH 1 RFC822.HEADER")


def test_fetch_streams_and_waits_for_a_slow_client(world):
    big = message("big", body="x" * 1000 + "\r\n") * 1
    world.deliver(b"Subject: big\r\n\r\n" + b"y" * (3 * 1024 * 1024))
    for i in range(50):
        world.deliver(big)
    a = selected(world)
    a.out.paused = True
    first = a.cmd("FETCH 1:* BODY.PEEK[]")
    assert len(first) < 200 * 1024  # stopped after the first chunk of the big message
    total = len(first)
    while a.out._waiters:
        a.out.resume()
        a.out.paused = True
        total += len(a.take())
    a.out.paused = False
    a.out.resume()
    total += len(a.take())
    assert total > 3 * 1024 * 1024 + 50 * 1000
