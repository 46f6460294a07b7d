"""
RFC 5267 contexts in process (CONTEXT=SEARCH, CONTEXT=SORT): PARTIAL,
UPDATE with ADDTO / REMOVEFROM, CANCELUPDATE, NOUPDATE; a second session
(or the store) makes the changes.  The same over a socket with imaplib:
tests/imap/test_context.py.
"""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailnet.imap.context import Context
from mailnet.imap.parser import ParseError, parseCommand
from tests.imap.helpers import World, message


@pytest.fixture
def world():
    return World()


def esearch(reply, tag):
    return [m.decode() for m in re.findall(rb'\* ESEARCH \(TAG "' + tag.encode() + rb'"\)(.*)\r\n', reply)]


def selected(world, n=5):
    for i in range(n):
        world.deliver(message("m%d" % i))
    a = world.client(login="alice@example.test")
    a.ok("SELECT INBOX")
    return a


def test_capabilities(world):
    a = world.client(login="alice@example.test")
    caps = a.ok("CAPABILITY")
    assert b" CONTEXT=SEARCH" in caps and b" CONTEXT=SORT" in caps and b" ESORT" in caps


def test_partial_search_and_sort(world):
    a = selected(world, 6)
    a.ok("STORE 2,4 +FLAGS (\\Flagged)")
    assert esearch(a.cmd("SEARCH RETURN (PARTIAL 2:4) ALL", "p1"), "p1") == [" PARTIAL (2:4 2:4)"]
    assert esearch(a.cmd("UID SEARCH RETURN (PARTIAL 1:2 COUNT) UNFLAGGED", "p2"), "p2") == [" UID PARTIAL (1:2 1,3) COUNT 4"]
    # A range past the end: NIL (RFC 5267 s4.4); reversed bounds are the same range.
    assert esearch(a.cmd("SEARCH RETURN (PARTIAL 10:20) ALL", "p3"), "p3") == [" PARTIAL (10:20 NIL)"]
    assert esearch(a.cmd("SEARCH RETURN (PARTIAL 4:2) ALL", "p4"), "p4") == [" PARTIAL (2:4 2:4)"]
    # RFC 9394 negative ranges: the last ones.
    assert esearch(a.cmd("SEARCH RETURN (PARTIAL -1:-2) ALL", "p5"), "p5") == [" PARTIAL (-1:-2 5:6)"]
    # SORT: the window of the sorted result, in sort order.
    assert esearch(a.cmd("SORT RETURN (PARTIAL 1:3) (REVERSE ARRIVAL) UTF-8 ALL", "p6"), "p6") == [" PARTIAL (1:3 6,5,4)"]


@pytest.mark.parametrize("command, error", [
    ("SEARCH RETURN (PARTIAL 1:5 ALL) ALL", "PARTIAL and ALL cannot be used together"),
    ("SEARCH RETURN (ALL PARTIAL 1:5) ALL", "PARTIAL and ALL cannot be used together"),
    ("SEARCH RETURN (PARTIAL 0:5) ALL", "Invalid PARTIAL range"),
    ("SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:7) ALL", "PARTIAL given twice"),
    ("SEARCH RETURN (PARTIAL -1:5) ALL", "Invalid PARTIAL range"),
    ("SEARCH RETURN (PARTIAL 1) ALL", "Invalid PARTIAL range"),
    ("SORT RETURN (PARTIAL x:y) (DATE) UTF-8 ALL", "Invalid PARTIAL range"),
    ("SEARCH RETURN (UPDATE UPDATE) ALL", "UPDATE given twice"),
    ("CANCELUPDATE", "CANCELUPDATE needs the tag"),
    ("CANCELUPDATE tag", "CANCELUPDATE takes quoted tags"),
])
def test_bad_syntax(command, error):
    with pytest.raises(ParseError, match=error):
        parseCommand(b"t1 " + command.encode())


def test_good_syntax():
    cmd = parseCommand(b't1 UID SORT RETURN (CONTEXT UPDATE PARTIAL -1:-20 COUNT) (DATE) UTF-8 ALL')
    assert cmd.returns == ["CONTEXT", "UPDATE", "PARTIAL", "COUNT"] and cmd.partial == (-1, -20)
    assert parseCommand(b'c CANCELUPDATE "a" "b"').tags == ["a", "b"]


def test_update_search_flags_and_new_messages(world):
    a = selected(world, 3)
    b = world.client(login="alice@example.test")
    b.ok("SELECT INBOX")
    reply = a.cmd("UID SEARCH RETURN (UPDATE) FLAGGED", "s1")
    assert esearch(reply, "s1") == [" UID"] and b"s1 OK" in reply
    b.ok("STORE 2 +FLAGS (\\Flagged)")
    reply = a.ok("NOOP")
    assert esearch(reply, "s1") == [" UID ADDTO (0 2)"]
    # After the FETCH that shows the flag.
    assert reply.index(b"FETCH") < reply.index(b"ESEARCH")
    b.ok("STORE 2 -FLAGS (\\Flagged)")
    b.ok("STORE 1,3 +FLAGS (\\Flagged)")
    assert esearch(a.ok("NOOP"), "s1") == [" UID REMOVEFROM (0 2) ADDTO (0 1,3)"]
    # A new message that matches: after its EXISTS.
    world.deliver(message("new"), flags=("\\Flagged",))
    reply = a.ok("NOOP")
    assert esearch(reply, "s1") == [" UID ADDTO (0 4)"]
    assert reply.index(b"4 EXISTS") < reply.index(b"ESEARCH")
    # Nothing changed: nothing said.
    assert esearch(a.ok("NOOP"), "s1") == []


def test_update_not_during_fetch_store_search(world):
    a = selected(world, 3)
    b = world.client(login="alice@example.test")
    b.ok("SELECT INBOX")
    a.cmd("SEARCH RETURN (UPDATE) FLAGGED", "s1")
    b.ok("STORE 1 +FLAGS (\\Flagged)")
    # RFC 5267 s4.3 / RFC 3501 s7.4.1: not during FETCH, STORE, SEARCH.
    assert esearch(a.ok("FETCH 1 (FLAGS)"), "s1") == []
    assert esearch(a.ok("SEARCH ALL"), "s1") == []
    assert esearch(a.ok("NOOP"), "s1") == [" ADDTO (0 1)"]


def test_expunge_removefrom_before_expunge(world):
    a = selected(world, 4)
    b = world.client(login="alice@example.test")
    b.ok("SELECT INBOX")
    assert esearch(a.cmd("SEARCH RETURN (UPDATE COUNT) ALL", "s1"), "s1") == [" COUNT 4"]
    b.ok("STORE 2:3 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    reply = a.ok("NOOP")
    # The numbers the client still knows, before the EXPUNGEs that end them (no new
    # COUNT: the client works it out, as from Dovecot).
    assert esearch(reply, "s1") == [" REMOVEFROM (0 2:3)"]
    assert reply.index(b"ESEARCH") < reply.index(b"* 3 EXPUNGE") < reply.index(b"* 2 EXPUNGE")


def test_sort_context_positions(world):
    for subject in ("b", "d", "f"):
        world.deliver(message(subject))
    a = world.client(login="alice@example.test")
    a.ok("SELECT INBOX")
    b = world.client(login="alice@example.test")
    b.ok("SELECT INBOX")
    assert esearch(a.cmd("UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNDELETED", "o1"), "o1") == [" UID ALL 1:3"]
    world.deliver(message("a"))
    world.deliver(message("e"))
    world.deliver(message("c"))
    # b d f + a e c: a at 1, c at 3, e at 5 (positions in the new result).
    assert esearch(a.ok("NOOP"), "o1") == [" UID ADDTO (1 4 3 6 5 5)"]
    b.ok("UID STORE 2,5 +FLAGS (\\Deleted)")  # d and e
    # Removals counted on the shrinking list: a b c [d] e f -> d at 4, then a b c [e] f -> e at 4:
    # one run, written as one set in order.
    assert esearch(a.ok("NOOP"), "o1") == [" UID REMOVEFROM (4 2,5)"]
    b.ok("UID STORE 1 +FLAGS (\\Deleted)")
    assert esearch(a.ok("NOOP"), "o1") == [" UID REMOVEFROM (2 1)"]
    b.ok("UID STORE 1 -FLAGS (\\Deleted)")
    assert esearch(a.ok("NOOP"), "o1") == [" UID ADDTO (2 1)"]
    b.ok("UID STORE 2 -FLAGS (\\Deleted)")
    assert esearch(a.ok("NOOP"), "o1") == [" UID ADDTO (4 2)"]


def test_sort_context_expunge(world):
    for subject in ("c", "a", "b"):
        world.deliver(message(subject))
    a = world.client(login="alice@example.test")
    a.ok("SELECT INBOX")
    b = world.client(login="alice@example.test")
    b.ok("SELECT INBOX")
    assert esearch(a.cmd("SORT RETURN (UPDATE MIN) (SUBJECT) UTF-8 ALL", "o1"), "o1") == [" MIN 2"]
    b.ok("STORE 2 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    reply = a.ok("NOOP")
    # a (msn 2) was first: removed at position 1, before its EXPUNGE.
    assert esearch(reply, "o1") == [" REMOVEFROM (1 2)"]
    assert reply.index(b"ESEARCH") < reply.index(b"* 2 EXPUNGE")


def test_cancelupdate_and_errors(world):
    a = selected(world, 2)
    b = world.client(login="alice@example.test")
    b.ok("SELECT INBOX")
    a.cmd("SEARCH RETURN (UPDATE) FLAGGED", "s1")
    a.cmd("SEARCH RETURN (UPDATE) SEEN", "s2")
    # The tag of a live context cannot be used for another.
    assert b"s1 BAD" in a.cmd("SEARCH RETURN (UPDATE) ALL", "s1")
    # Unknown tag: BAD, and nothing cancelled.
    assert b"c1 BAD" in a.cmd('CANCELUPDATE "s1" "nosuch"', "c1")
    assert b"c2 OK" in a.cmd('CANCELUPDATE "s1"', "c2")
    assert b"c3 BAD" in a.cmd('CANCELUPDATE "s1"', "c3")
    b.ok("STORE 1 +FLAGS (\\Flagged \\Seen)")
    reply = a.ok("NOOP")
    assert esearch(reply, "s1") == [] and esearch(reply, "s2") == [" ADDTO (0 1)"]
    # Updates end with the mailbox: CLOSE, then CANCELUPDATE and SEARCH need a selected mailbox.
    a.ok("CLOSE")
    assert b"c4 BAD" in a.cmd('CANCELUPDATE "s2"', "c4")
    assert b"s9 BAD" in a.cmd("SEARCH RETURN (UPDATE) ALL", "s9")


def test_noupdate_past_the_limit():
    world = World(searchContexts=2)
    a = selected(world, 2)
    a.cmd("SEARCH RETURN (UPDATE) ALL", "s1")
    a.cmd("SEARCH RETURN (UPDATE) ALL", "s2")
    reply = a.cmd("SEARCH RETURN (UPDATE COUNT) ALL", "s3")
    # RFC 5267 s4.3.1: the result once, and NOUPDATE with the tag.
    assert b'* NO [NOUPDATE "s3"]' in reply and esearch(reply, "s3") == [" COUNT 2"] and b"s3 OK" in reply
    a.ok('CANCELUPDATE "s1"')
    reply = a.cmd("SEARCH RETURN (UPDATE) ALL", "s4")
    assert b"NOUPDATE" not in reply


def test_idle_gets_updates(world):
    a = selected(world, 2)
    a.cmd("UID SORT RETURN (UPDATE) (REVERSE ARRIVAL) UTF-8 ALL", "o1")
    a.push(b"i1 IDLE\r\n")
    assert a.take().startswith(b"+ ")
    world.deliver(message("new"))
    world.clock.advance(0)
    reply = a.take()
    assert b"* 3 EXISTS" in reply and esearch(reply, "o1") == [" UID ADDTO (1 3)"]
    reply = a.feed(b"DONE\r\n")
    assert b"i1 OK" in reply


def test_a_message_not_yet_announced_when_the_context_starts(world):
    a = selected(world, 2)
    world.deliver(message("came before the search"))
    # SEARCH does not announce it first (no EXISTS before a non-UID SEARCH):
    # the result is of the two known messages; the third is added later.
    reply = a.cmd("SEARCH RETURN (UPDATE) ALL", "s1")
    assert esearch(reply, "s1") == [" ALL 1:2"] and b"* 3 EXISTS" in reply
    assert esearch(a.ok("NOOP"), "s1") == [" ADDTO (0 3)"]


def test_store_by_this_session_and_uid_store(world):
    a = selected(world, 3)
    a.cmd("SEARCH RETURN (UPDATE) SEEN", "s1")
    # STORE may not carry it (RFC 3501 s7.4.1 as for EXPUNGE); UID STORE may.
    assert esearch(a.ok("STORE 1 +FLAGS (\\Seen)"), "s1") == []
    assert esearch(a.ok("UID STORE 2 +FLAGS (\\Seen)"), "s1") == [" ADDTO (0 1:2)"]
    # EXPUNGE of this session's own messages: REMOVEFROM first.
    a.ok("STORE 1 +FLAGS (\\Deleted)")
    reply = a.ok("EXPUNGE")
    assert esearch(reply, "s1") == [" REMOVEFROM (0 1)"] and reply.index(b"ESEARCH") < reply.index(b"* 1 EXPUNGE")
    # The context is gone with the mailbox.
    a.ok("SELECT INBOX")
    assert b"BAD" in a.cmd('CANCELUPDATE "s1"')


def test_noupdate_when_the_store_fails(world):
    a = selected(world, 2)
    a.cmd("SEARCH RETURN (UPDATE) BODY needle", "s1")
    a.cmd("SEARCH RETURN (UPDATE) FLAGGED", "s2")
    world.deliver(message("new", body="a needle\r\n"), flags=("\\Flagged",))
    folder = a.session.view.folder

    def broken(uid):
        raise OSError(5, "Input/output error")

    folder.openMessage = broken
    reply = a.ok("NOOP")
    # The content context cannot read the new message: dropped, with NOUPDATE (RFC 5267 s4.3.1);
    # the other goes on, and the session too.
    assert b'* NO [NOUPDATE "s1"]' in reply and esearch(reply, "s2") == [" ADDTO (0 3)"]
    del folder.openMessage
    assert b"BAD" in a.cmd('CANCELUPDATE "s1"') and b"OK" in a.cmd('CANCELUPDATE "s2"')


def _items(text):
    """[(position, [numbers])] of an ADDTO/REMOVEFROM list."""
    words = text.split()
    out = []
    for position, spec in zip(words[0::2], words[1::2]):
        numbers = []
        for part in spec.split(","):
            lo, _, hi = part.partition(":")
            numbers.extend(range(int(lo), int(hi or lo) + 1))
        out.append((int(position), numbers))
    return out


@settings(max_examples=300, deadline=None)
@given(st.permutations(list(range(1, 16))), st.sets(st.integers(1, 15)), st.sets(st.integers(1, 15)))
def test_sort_updates_replayed_by_a_client_give_the_new_order(order, old, new):
    # The messages in some sort order; the old and new results are subsets of it.
    oldOrder = [u for u in order if u in old]
    newOrder = [u for u in order if u in new]
    ctx = Context("t", True, None, (("ARRIVAL", False),), {"ALL"}, oldOrder)
    line = ctx.sortUpdate(newOrder, int)
    if old == new:
        assert line is None
        return
    m = re.match(rb'\* ESEARCH \(TAG "t"\) UID(?: REMOVEFROM \(([^)]*)\))?(?: ADDTO \(([^)]*)\))?\r\n$', line)
    assert m, line
    replay = list(oldOrder)
    # RFC 5267 s4.3.2: the client applies the items in order; REMOVEFROM's
    # position is where the message is when it is removed, ADDTO's where it goes.
    for position, numbers in _items((m.group(1) or b"").decode()):
        for uid in numbers:
            assert replay[position - 1] == uid
            del replay[position - 1]
    for position, numbers in _items((m.group(2) or b"").decode()):
        for i, uid in enumerate(numbers):
            replay.insert(position - 1 + i, uid)
    assert replay == newOrder
    assert ctx.uids == newOrder
