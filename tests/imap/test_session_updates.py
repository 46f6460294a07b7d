"""
The session in process (test_session.py): the selected state and the
untagged updates between several sessions (EXISTS, FETCH, EXPUNGE and when
they may be sent), IDLE, a reselect from the remembered snapshot.
"""

import re

import pytest

from tests.imap.helpers import World, lines, message
from tests.imap.session_helpers import selected, tagged
from tests.imap.session_helpers import world  # noqa: F401 (a fixture)


# Selected state and updates between sessions


def test_select_responses(world):
    world.deliver(message("one"), flags=["\\Seen"])
    world.deliver(message("two"))
    c = world.client(login="alice@example.test")
    reply = c.cmd("SELECT INBOX")
    assert b"* 2 EXISTS" in reply and b"* OK [UNSEEN 2]" in reply
    assert re.search(rb"\* OK \[UIDVALIDITY \d+\]", reply) and b"* OK [UIDNEXT 3]" in reply
    assert b"\\*)] " in reply and b"* OK [HIGHESTMODSEQ" in reply
    assert tagged(reply).startswith(b"t2 OK [READ-WRITE]")
    reply = c.cmd("EXAMINE INBOX")
    assert tagged(reply).startswith(b"t3 OK [READ-ONLY]") and b"[PERMANENTFLAGS ()]" in reply
    assert b"NO [READ-ONLY]" in c.cmd("STORE 1 +FLAGS (\\Deleted)")
    assert b"NO [NONEXISTENT]" in c.cmd("SELECT Nope")
    assert c.session.state == "authenticated"


def test_new_mail_shows_as_exists_at_next_command(world):
    a = selected(world)
    world.deliver(message("hi"))
    reply = a.cmd("NOOP")
    assert lines(reply)[:2] == [b"* 1 EXISTS", b"* 1 RECENT"]
    # A second session selecting later does not see it as recent: a claimed it.
    b = world.client(login="alice@example.test")
    assert b"* 0 RECENT" in b.cmd("SELECT INBOX")


def test_flag_changes_reach_other_sessions(world):
    world.deliver(message("one"))
    a, b = selected(world), selected(world)
    b.ok("STORE 1 +FLAGS (\\Flagged)")
    reply = a.cmd("NOOP")
    # (Delivered before anyone selected INBOX: recent to a, which selected first.)
    assert re.search(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged \\Recent\)\)", reply)
    # A new keyword is announced in FLAGS first (RFC 3501 s7.2.6).
    b.ok("STORE 1 +FLAGS ($Important)")
    reply = a.cmd("NOOP")
    assert reply.index(b"* FLAGS (") < reply.index(b"* 1 FETCH")
    assert b"$Important" in reply


def test_no_expunge_during_fetch_store_search_but_during_uid_and_noop(world):
    for i in range(3):
        world.deliver(message("m%d" % i))
    a, b = selected(world), selected(world)
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    a.take()
    for command in ("FETCH 1:3 (FLAGS)", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL"):
        reply = a.cmd(command)
        assert b" EXPUNGE\r\n" not in reply, command
    # Sequence numbers still count the expunged message until it is announced.
    assert b"* SEARCH 1 3" in a.cmd("SEARCH ALL")
    # RFC 2180 s4.1, as Dovecot: the gone message is skipped, the FETCH is OK.
    reply = a.cmd("FETCH 2 (FLAGS)")
    assert b"OK [EXPUNGEISSUED]" in reply and b"* 2 FETCH" not in reply
    # A STORE on it does nothing and is simply OK.
    reply = a.ok("STORE 1:3 +FLAGS (\\Flagged)")
    assert b"* 2 FETCH" not in reply and b"* 3 FETCH" in reply and b"EXPUNGE" not in reply
    reply = a.cmd("UID FETCH 1:* (FLAGS)")
    assert b"* 2 EXPUNGE" in reply
    assert b"* 2 FETCH (UID 3 FLAGS (\\Flagged \\Recent))" in reply.split(b"* 2 EXPUNGE")[1]


@pytest.mark.parametrize("command, method", [
    ("UID MOVE 2 Other", "moveTo"),
    ("UID COPY 2 Other", "copyTo"),
    ("UID STORE 2 +FLAGS (\\Seen)", "setFlags"),
    ("UID FETCH 2 (BODY.PEEK[])", "openMessage"),
])
def test_uid_command_on_a_message_expunged_while_it_runs(world, command, method):
    """RFC 3501 s6.4.8 (RFC 9051 s6.4.9): a UID that no longer exists is
    ignored without an error, "UID COPY, UID MOVE, or UID STORE ... OK
    without performing any operations", and a UID command may carry the
    EXPUNGE.  Here another session expunges the message after the command
    has started (the store call is the first thing it awaits); found by
    tests/integration/test_concurrency.py, where it got NO [EXPUNGEISSUED]."""
    for i in range(3):
        world.deliver(message("m%d" % i))
    a, b = selected(world), selected(world)
    a.ok("CREATE Other")
    folder = a.session.view.folder
    original = getattr(folder, method)

    def expungeFirst(*args):
        setattr(folder, method, original)
        b.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
        b.ok("UID EXPUNGE 2")
        return original(*args)

    setattr(folder, method, expungeFirst)
    reply = a.cmd(command)
    assert re.search(rb"\r\nt\d+ OK", b"\r\n" + reply), reply
    assert b"* 2 EXPUNGE" in reply
    assert b"EXPUNGEISSUED" not in reply
    assert b"* 2 FETCH" not in reply.split(b"* 2 EXPUNGE")[0]
    status = a.cmd("STATUS Other (MESSAGES)")
    assert b"(MESSAGES 0)" in status, status
    # By sequence number the same race is OK too (FETCH with EXPUNGEISSUED,
    # as Dovecot), but no EXPUNGE may be sent during FETCH or STORE.
    if method in ("setFlags", "openMessage"):
        folder = a.session.view.folder
        original = getattr(folder, method)

        def expungeFirstAgain(*args):
            setattr(folder, method, original)
            b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
            b.ok("EXPUNGE")
            return original(*args)

        setattr(folder, method, expungeFirstAgain)
        reply = a.cmd(command.replace("UID ", "").replace(" 2 ", " 1 "))
        assert re.search(rb"\r\nt\d+ OK", b"\r\n" + reply), reply
        assert (b"[EXPUNGEISSUED]" in reply) == (method == "openMessage"), reply
        assert b"EXPUNGE\r\n" not in reply


def test_expunge_announced_at_noop_highest_first(world):
    for i in range(5):
        world.deliver(message("m%d" % i))
    a, b = selected(world), selected(world)
    b.ok("STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    assert lines(a.cmd("NOOP"))[:2] == [b"* 4 EXPUNGE", b"* 2 EXPUNGE"]
    assert b"* SEARCH 1 2 3" in a.cmd("SEARCH ALL")


def test_idle_sees_delivery_expunge_and_flags_at_once(world):
    world.deliver(message("one"))
    a = selected(world)
    assert a.cmd("IDLE") == b"+ idling\r\n"
    world.deliver(message("two"))
    world.clock.advance(0)
    assert a.take() == b"* 2 EXISTS\r\n* 2 RECENT\r\n"  # "one" came before a selected: recent too
    b = selected(world)
    b.ok("STORE 1 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    world.clock.advance(0)
    reply = a.take()
    assert b"* 1 EXPUNGE" in reply
    assert a.feed(b"DONE\r\n").endswith(b"OK IDLE terminated\r\n")


def test_idle_requires_done(world):
    a = selected(world)
    a.cmd("IDLE")
    assert b"BAD" in a.feed(b"NOOP\r\n")
    assert b"OK" in tagged(a.cmd("NOOP"))


def test_idle_polls_for_outside_changes():
    w = World(idlePoll=2.0)
    a = selected(w)
    calls = []
    folder = a.session.view.folder
    original = folder.refresh
    folder.refresh = lambda: calls.append(1) or original()
    a.cmd("IDLE")
    w.clock.advance(2.0)
    w.clock.advance(2.0)
    assert len(calls) == 2
    a.feed(b"DONE\r\n")
    w.clock.advance(10)
    assert len(calls) == 2


def test_reselect_uses_current_state(world):
    for i in range(3):
        world.deliver(message("m%d" % i))
    a = selected(world)
    a.ok("UNSELECT")
    b = selected(world)
    b.ok("STORE 2 +FLAGS ($Later)")
    b.ok("STORE 1 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    reply = a.cmd("SELECT INBOX")
    assert b"* 2 EXISTS" in reply and b"$Later" in reply
    a.ok("UNSELECT")
    reply = a.cmd("SELECT INBOX")  # unchanged: from the remembered snapshot
    assert b"* 2 EXISTS" in reply and b"$Later" in reply and b"[UNSEEN 1]" in reply
