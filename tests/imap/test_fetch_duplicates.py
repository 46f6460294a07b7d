"""
A FETCH item named twice is answered once (issue 12, defect 12), through
the real server and a raw socket.  Dovecot 2.3 on this machine answers
``UID FETCH 1 (UID UID FLAGS FLAGS ...)`` with one UID and one FLAGS.
"""

from __future__ import annotations

import re

import pytest

from .raw import RawIMAP, literals

USER, PASSWORD = "alice@example.test", "alice-pw"
MESSAGE = b"Subject: twice\r\nFrom: a@example.test\r\n\r\nbody text\r\n"


@pytest.fixture
def raw(imap_server):
    c = RawIMAP(imap_server.port("imap")).login(USER, PASSWORD)
    c.cmd(b"CREATE dupes")
    c.append(b"dupes", MESSAGE, binary=False)
    assert c.cmd(b"SELECT dupes").splitlines()[-1].split()[1] == b"OK"
    yield c
    c.cmd(b"DELETE dupes")
    c.close()


def _fetchLine(reply):
    lines = [line for line in reply.split(b"\r\n") if line.startswith(b"* 1 FETCH")]
    assert len(lines) == 1, reply
    return lines[0]


def test_repeated_index_items_are_answered_once(raw):
    line = _fetchLine(raw.cmd(b"UID FETCH 1:* (UID UID FLAGS FLAGS RFC822.SIZE INTERNALDATE RFC822.SIZE)"))
    assert line.count(b"UID ") == 1
    assert line.count(b"FLAGS ") == 1
    assert line.count(b"RFC822.SIZE ") == 1
    assert line.count(b"INTERNALDATE ") == 1
    line = _fetchLine(raw.cmd(b"FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE FLAGS UID UID)"))
    assert line.count(b"FLAGS ") == 1 and line.count(b"UID ") == 1
    assert re.match(rb"\* 1 FETCH \(FLAGS \([^)]*\) INTERNALDATE \"[^\"]+\" RFC822.SIZE \d+ UID \d+\)$", line), line


def test_repeated_content_items_are_answered_once(raw):
    reply = raw.cmd(b"FETCH 1 (BODY.PEEK[] BODY.PEEK[] ENVELOPE ENVELOPE BODYSTRUCTURE BODYSTRUCTURE "
                    b"BODY.PEEK[1] BINARY.PEEK[1] BINARY.PEEK[1] BINARY.SIZE[1] BINARY.SIZE[1] "
                    b"BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[HEADER.FIELDS (Subject)] UID UID)")
    labels = [label for label, _, _ in literals(reply)]
    assert labels == [b"BODY[]", b"BODY[1]", b"BINARY[1]", b"BODY[HEADER.FIELDS (Subject)]"], labels
    assert reply.count(b"ENVELOPE (") == 1
    assert reply.count(b"BODYSTRUCTURE (") == 1
    assert reply.count(b"BINARY.SIZE[1] ") == 1
    assert reply.count(b" UID ") + reply.count(b"(UID ") == 1


def test_different_partials_are_both_answered(raw):
    reply = raw.cmd(b"FETCH 1 (BODY.PEEK[TEXT]<0.4> BODY.PEEK[TEXT]<0.4> BODY.PEEK[TEXT]<5.4>)")
    assert literals(reply) == [(b"BODY[TEXT]<0>", b"", b"body"), (b"BODY[TEXT]<5>", b"", b"text")]


def test_peek_and_non_peek_of_one_section_set_seen_once(raw):
    reply = raw.cmd(b"FETCH 1 (BODY.PEEK[TEXT] BODY[TEXT])")
    assert [label for label, _, _ in literals(reply)] == [b"BODY[TEXT]"]
    assert b"\\Seen" in reply
    assert reply.count(b"FLAGS (") == 1


# In process (memory store): the same, without a server.


def test_in_process_repeats_answered_once():
    from .helpers import World, message

    w = World()
    w.deliver(message("one"))
    c = w.client(login="alice@example.test")
    c.ok("SELECT INBOX")
    reply = c.ok("UID FETCH 1 (UID UID FLAGS FLAGS)")
    assert reply.startswith(b"* 1 FETCH (UID 1 FLAGS ("), reply
    assert reply.count(b"UID ") == 1 and reply.count(b"FLAGS") == 1
    reply = c.ok("FETCH 1 (BODY.PEEK[TEXT] BODY.PEEK[TEXT] RFC822.SIZE RFC822.SIZE)")
    assert reply.count(b"BODY[TEXT] {") == 1 and reply.count(b"RFC822.SIZE") == 1
