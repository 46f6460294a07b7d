"""
NOTIFY (RFC 5465) in process: the grammar, the bounds (a client that does
not read, NOTIFICATIONOVERFLOW, the number of watched mailboxes), and the
wake-ups on a task.Clock.
"""

import pytest

from mailnet.imap import notifyspec
from mailnet.imap.parser import ParseError, parseCommand
from tests.imap.helpers import World, lines, message


def turn(world):
    """Run the reactor's next turns (the runner's wake-ups are callLater(0))."""
    for _ in range(3):
        world.clock.advance(0)


def test_grammar():
    cmd = parseCommand(b"a NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
                       b"(subtree (Lists \"Team/x y\") (MessageNew MessageExpunge MailboxName)) (mailboxes Sent NONE)")
    assert cmd.name == "NOTIFY" and cmd.status and not cmd.none
    selected, subtree, mailboxes = cmd.groups
    assert selected.filter == "SELECTED"
    assert selected.events == {"MessageNew", "MessageExpunge", "FlagChange"}
    assert [a.name for a in selected.fetchAtts] == ["UID", "FLAGS"]
    assert subtree.filter == "SUBTREE" and subtree.mailboxes == (b"Lists", b"Team/x y")
    assert mailboxes.mailboxes == (b"Sent",) and mailboxes.events == frozenset()
    assert parseCommand(b"a NOTIFY NONE").none
    assert parseCommand(b"a NOTIFY SET (PERSONAL (Whatever))").groups[0].events == {"Whatever"}
    for bad in (b"a NOTIFY", b"a NOTIFY SET", b"a NOTIFY SET ()", b"a NOTIFY SET (PERSONAL)",
                b"a NOTIFY SET (SUBTREE (MessageNew MessageExpunge))", b"a NOTIFY SET (MAILBOXES () NONE)",
                b"a NOTIFY SET (PERSONAL (MessageNew ()))", b"a NOTIFY SET (PERSONAL NONE) trailing",
                b"a NOTIFY NONE x"):
        with pytest.raises(ParseError):
            parseCommand(bad)


def test_groups_the_most_specific_filter_wins():
    personal = notifyspec.EventGroup("PERSONAL", (), frozenset({"MailboxName"}), None)
    boxes = notifyspec.EventGroup("MAILBOXES", (), frozenset({"MessageNew", "MessageExpunge"}), None)
    others = [("PERSONAL", (), personal), ("MAILBOXES", ("Work",), boxes)]
    assert notifyspec.groupFor(others, "Work", False) is boxes
    assert notifyspec.groupFor(others, "Other", False) is personal
    sub = notifyspec.EventGroup("SUBTREE", (), frozenset(), None)
    assert notifyspec.groupFor([("SUBTREE", ("A",), sub)], "A/b", False) is sub
    assert notifyspec.groupFor([("SUBTREE", ("A",), sub)], "AB", False) is None


def test_a_client_that_does_not_read_gets_an_overflow_not_a_buffer():
    world = World(notifyQueue=10)
    a = world.client(login="alice@example.test")
    b = world.client(login="alice@example.test")
    a.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName))")
    # The client stops reading: the transport is full.
    a.out.paused = True
    for n in range(30):
        b.ok("CREATE Box%d" % n)
        world.deliver(message("x%d" % n))
        turn(world)
    assert a.take() == b""  # nothing was written while the transport was full
    a.out.resume()
    turn(world)
    reply = lines(a.take())
    # s5.8: the overflow is said once and the notifications stop.
    assert reply == [b"* OK [NOTIFICATIONOVERFLOW] Too many notifications waiting; NOTIFY again to resume"], reply
    assert a.session.notify is None
    b.ok("CREATE After")
    world.deliver(message("after"))
    turn(world)
    assert a.take() == b""
    assert b"STATUS" not in a.ok("NOOP")


def test_many_deliveries_to_a_slow_client_are_one_status():
    world = World()
    a = world.client(login="alice@example.test")
    a.ok("NOTIFY SET (INBOXES (MessageNew MessageExpunge))")
    a.out.paused = True
    for n in range(50):
        world.deliver(message("m%d" % n))
        turn(world)
    assert a.take() == b""
    a.out.resume()
    turn(world)
    assert lines(a.take()) == [b"* STATUS INBOX (MESSAGES 50 UIDNEXT 51 UNSEEN 50)"]


def test_watched_mailboxes_are_limited():
    world = World(notifyMailboxes=3)
    a = world.client(login="alice@example.test")
    reply = lines(a.cmd("NOTIFY SET (PERSONAL (MessageNew MessageExpunge))"))
    assert reply[-1].startswith(b"t2 NO [LIMIT]"), reply
    assert a.session.notify is None
    a.ok("NOTIFY SET (MAILBOXES (INBOX Sent) (MessageNew MessageExpunge))")
    assert sorted(a.session.notify.watches) == ["INBOX", "Sent"]
    # A refused SET leaves the notifications in force as they were.
    assert lines(a.cmd("NOTIFY SET (PERSONAL (MessageNew MessageExpunge))"))[-1].startswith(b"t4 NO [LIMIT]")
    assert sorted(a.session.notify.watches) == ["INBOX", "Sent"]
    a.ok("NOTIFY NONE")
    assert a.session.notify is None


def test_watches_are_closed_when_the_connection_goes():
    world = World()
    a = world.client(login="alice@example.test")
    a.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
    held = list(a.session.notify.watches.values())
    assert held and all(watch in folder.listeners for folder, watch in held)
    a.out.stopRunner()
    a.session.connectionLost()
    assert a.session.notify is None
    # Every handle closed, no listener left behind.
    assert all(folder.closed and watch not in folder.listeners for folder, watch in held)


def test_own_session_changes_are_not_told_as_mailbox_events():
    world = World()
    a = world.client(login="alice@example.test")
    a.ok("NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))")
    reply = a.ok("CREATE Mine")
    turn(world)
    assert b"* LIST" not in reply + a.take()


def test_mailbox_changes_made_outside_imap_come_from_the_account_listener():
    # JMAP, the webmail or another program change the mailboxes through the
    # store, not through an IMAP session: the account listener says so and
    # the session lists the mailboxes again.
    world = World()
    a = world.client(login="alice@example.test")
    a.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName SubscriptionChange))")
    account = world.account()
    account.createFolder("Elsewhere")
    turn(world)
    assert lines(a.take()) == [b'* LIST () "/" Elsewhere']
    # ... and watches it for message events from then on.
    world.deliver(message("there"), folder="Elsewhere")
    turn(world)
    assert lines(a.take()) == [b"* STATUS Elsewhere (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"]
    account.setSubscribed("Elsewhere", True)
    account.deleteFolder("Elsewhere")
    turn(world)
    reply = lines(a.take())
    assert b'* LIST (\\NonExistent) "/" Elsewhere' in reply, reply
    # Its own changes are still not news to it, also through the listener.
    a.ok("CREATE Mine")
    turn(world)
    assert b"* LIST" not in a.take()
    # Deliveries change the account too, but not its mailboxes' names: nothing to say.
    world.deliver(message("plain"))
    turn(world)
    assert lines(a.take()) == [b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"]


def test_mail_that_comes_before_a_new_mailbox_is_watched_is_told():
    world = World()
    a = world.client(login="alice@example.test")
    b = world.client(login="alice@example.test")
    a.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName))")
    b.ok("CREATE Quick")
    # Delivered before the session's turn, i.e. before it watches the mailbox.
    world.deliver(message("quick"), folder="Quick")
    turn(world)
    assert lines(a.take()) == [b'* LIST () "/" Quick', b"* STATUS Quick (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"]
