"""
The session state machine, in process: an IMAPSession on the memory store, fed
bytes, with a fake output object and a task.Clock.
"""

import base64
import re

import pytest
from twisted.internet import defer

from mailnet.store.memory import MemoryStore
from tests.imap.helpers import World, lines, message


@pytest.fixture
def world():
    return World()


def tagged(reply, tag=None):
    last = lines(reply)[-1]
    if tag:
        assert last.startswith(tag.encode() + b" "), reply
    return last


# Greeting, capabilities, authentication


def test_greeting_and_capabilities_before_tls():
    w = World(allowPlaintext=False)
    c = w.client()
    assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    caps = c.cmd("CAPABILITY")
    assert b"STARTTLS" in caps and b"LOGINDISABLED" in caps and b"AUTH=PLAIN" not in caps
    assert b"UIDPLUS" not in caps  # only after login
    reply = c.cmd("LOGIN alice@example.test alice-pw")
    assert b"NO [PRIVACYREQUIRED]" in reply
    reply = c.cmd("AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-pw").decode())
    assert b"NO [PRIVACYREQUIRED]" in reply


def test_starttls_discards_pipelined_commands():
    """RFC 3207 s4.2 / RFC 9051 s6.2.1: bytes sent with STARTTLS, before the handshake, are never run."""
    w = World(allowPlaintext=False)
    c = w.client()
    reply = c.feed(b"a STARTTLS\r\nb LOGIN alice@example.test alice-pw\r\nc CREATE Injected\r\n")
    assert reply == b"a OK Begin TLS negotiation now\r\n"
    assert c.out.tlsStarted
    assert c.session.state == "not authenticated"
    # Over TLS, login works and the injected CREATE never happened.
    caps = c.cmd("CAPABILITY")
    assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps
    c.login()
    assert b"Injected" not in c.cmd('LIST "" *')
    assert b"BAD" in c.cmd("STARTTLS")


def test_login_and_authenticate_plain(world):
    c = world.client()
    reply = c.cmd("LOGIN alice@example.test alice-pw")
    assert re.search(rb"t1 OK \[CAPABILITY [^\]]*UIDPLUS[^\]]*\] Logged in", reply)
    # SASL-IR (RFC 4959)
    d = world.client()
    ir = base64.b64encode(b"\0bob@example.test\0bob-pw").decode()
    assert b"OK" in tagged(d.cmd("AUTHENTICATE PLAIN " + ir))
    # Without initial response: empty challenge, then the response line.
    e = world.client()
    assert e.cmd("AUTHENTICATE PLAIN") == b"+ \r\n"
    reply = e.feed(base64.b64encode(b"\0bob@example.test\0bob-pw") + b"\r\n")
    assert b"t1 OK" in reply
    # Cancel
    f = world.client()
    f.cmd("AUTHENTICATE PLAIN")
    assert b"t1 BAD" in f.feed(b"*\r\n")
    assert b"OK" in tagged(f.cmd("NOOP"))
    assert b"NO [CANNOT]" in f.cmd("AUTHENTICATE CRAM-MD5")


def test_failed_logins_are_throttled_then_disconnected():
    w = World(authFailures=3)
    w.throttle.baseDelay = 2.0
    c = w.client()
    reply = c.cmd("LOGIN alice@example.test wrong")
    assert reply == b""  # waits for the throttle
    w.clock.advance(2.0)
    assert b"t1 NO [AUTHENTICATIONFAILED]" in c.take()
    c.cmd("LOGIN alice@example.test wrong")
    w.clock.advance(10)
    c.take()
    c.cmd("LOGIN nobody@example.test x")
    w.clock.advance(10)
    reply = c.take()
    assert b"NO [AUTHENTICATIONFAILED]" in reply and b"* BYE" in reply
    assert c.out.closed


def test_connections_per_user_limit():
    w = World(connectionsPerUser=2)
    a, b, c = w.client(), w.client(), w.client()
    a.login()
    b.login()
    assert b"NO [UNAVAILABLE]" in c.cmd("LOGIN alice@example.test alice-pw")
    a.session.connectionLost()
    c.login()


def test_commands_in_the_wrong_state(world):
    c = world.client()
    assert b"BAD Command SELECT needs authentication" in c.cmd("SELECT INBOX")
    c.login()
    assert b"BAD Command FETCH needs a selected mailbox" in c.cmd("FETCH 1 FLAGS")
    assert b"BAD" in c.cmd("LOGIN alice@example.test alice-pw")


def test_bad_input_gets_clear_answers_and_session_survives(world):
    c = world.client(login="alice@example.test")
    assert b"t2 BAD Unknown command FROBNICATE" in c.cmd("FROBNICATE")
    assert b"BAD Error in IMAP command FETCH" in c.cmd("FETCH one FLAGS")
    assert c.feed(b"\r\n").startswith(b"* BAD")
    assert b"* BAD" in c.feed(b"+++ NOOP\r\n")
    assert b"OK" in tagged(c.cmd("NOOP"))


def test_line_and_literal_limits_in_session():
    w = World(maxLine=1000, maxLiteral=100)
    c = w.client(login="alice@example.test")
    assert b"t2 BAD [TOOBIG] Command line too long" in c.cmd("NOOP " + "x" * 2000)
    assert b"t3 BAD [TOOBIG] Literal too big" in c.cmd("APPEND INBOX {500}")
    assert b"OK" in tagged(c.cmd("NOOP"))


def test_autologout():
    w = World(idleTimeout=1800)
    c = w.client(login="alice@example.test")
    w.clock.advance(1799)
    c.cmd("NOOP")
    w.clock.advance(1799)
    assert not c.out.closed
    w.clock.advance(2)
    assert b"* BYE Autologout" in c.take() and c.out.closed


# Pipelining with asynchronous work


class SlowStore(MemoryStore):
    """The memory store, but every openFolder waits until released."""

    def __init__(self):
        super().__init__()
        self.waiting = []

    def getAccount(self, username, create=True):
        d = super().getAccount(username, create)
        store = self

        def wrap(account):
            real = account.openFolder

            def openFolder(name):
                gate = defer.Deferred()
                store.waiting.append(gate)
                return gate.addCallback(lambda _: real(name))

            account.openFolder = openFolder
            return account

        return d.addCallback(wrap)

    def release(self):
        waiting, self.waiting = self.waiting, []
        for gate in waiting:
            gate.callback(None)


def test_pipelined_commands_answered_in_order_while_one_waits():
    store = SlowStore()
    w = World(store=store)
    c = w.client(login="alice@example.test")
    reply = c.feed(b"a STATUS INBOX (MESSAGES)\r\nb NOOP\r\nc CAPABILITY\r\n")
    assert reply == b""  # STATUS is waiting for the store; nothing else ran
    store.release()
    reply = c.take()
    order = [l.split(b" ")[0] for l in lines(reply) if not l.startswith(b"*")]
    assert order == [b"a", b"b", b"c"]
    assert reply.index(b"* STATUS") < reply.index(b"a OK")


def test_reading_pauses_while_a_command_waits():
    store = SlowStore()
    w = World(store=store, maxLine=1000)
    c = w.client(login="alice@example.test")
    c.feed(b"a STATUS INBOX (MESSAGES)\r\n")
    c.feed(b"b NOOP\r\n" * 20000)
    assert c.out.readingPaused
    store.release()
    assert not c.out.readingPaused
    assert c.take().count(b" OK NOOP") == 20000


# Selected state and updates between sessions


def selected(world, user="alice@example.test", mailbox="INBOX", examine=False):
    c = world.client(login=user)
    c.ok(("EXAMINE " if examine else "SELECT ") + mailbox)
    return c


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


# Mailboxes and names


def test_mailbox_management_and_list(world):
    a = world.client(login="alice@example.test")
    a.ok("CREATE Work/2024/")
    a.ok("CREATE &AMk-t&AOk-")  # "Été" in modified UTF-7
    assert b"NO [ALREADYEXISTS]" in a.cmd("CREATE Work")
    reply = a.cmd('LIST "" *')
    assert b'* LIST (\\HasChildren) "/" Work' in reply
    assert b'* LIST (\\HasNoChildren) "/" Work/2024' in reply
    assert b'* LIST (\\HasNoChildren) "/" &AMk-t&AOk-' in reply
    assert b'* LIST (\\HasNoChildren \\Sent) "/" Sent' in reply
    reply = a.cmd('LIST "" %')
    assert b"Work/2024" not in reply and b" Work\r\n" in reply
    assert a.cmd('LIST "" ""').startswith(b'* LIST (\\Noselect) "/" ""')
    reply = a.cmd('LIST "Work/" %')
    assert b"Work/2024" in reply and b"INBOX" not in reply
    a.ok("RENAME Work Job")
    assert b"Job/2024" in a.cmd('LIST "" *')
    a.ok("DELETE Job/2024")
    assert b"NO [NONEXISTENT]" in a.cmd("DELETE Job/2024")
    assert b"NO" in a.cmd("DELETE INBOX")
    a.ok("UNSUBSCRIBE Sent")
    reply = a.cmd('LSUB "" *')
    assert b"Sent" not in reply and b"Trash" in reply
    reply = a.cmd('LIST (SUBSCRIBED) "" * RETURN (CHILDREN)')
    assert b"\\Subscribed" in reply and b"Sent" not in reply
    # RFC 3501 s6.3.9, RFC 5258 s3: a subscribed name whose folder is gone
    a.ok("SUBSCRIBE Gone/Away")
    assert b'* LSUB (\\Noselect) "/" Gone/Away' in a.cmd('LSUB "" *')
    assert re.search(rb'\* LIST \(\\NonExistent [^)]*\\Subscribed\) "/" Gone/Away\r\n', a.cmd('LIST (SUBSCRIBED) "" *'))
    assert b"Gone" not in a.cmd('LIST "" *') and b"Gone" not in a.cmd('LIST "" * RETURN (SUBSCRIBED)')
    reply = a.cmd('LIST (SPECIAL-USE) "" *')
    assert b"INBOX" not in reply and b"\\Junk" in reply
    reply = a.cmd('LIST "" (INBOX Trash) RETURN (STATUS (MESSAGES UIDNEXT))')
    assert re.search(rb'\* LIST \([^)]*\) "/" INBOX\r\n\* STATUS INBOX \(MESSAGES 0 UIDNEXT 1\)', reply)


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc", "a//b", '"a\\\\b"', "~{3+}\r\na\x00b"])
def test_names_cannot_leave_the_store(world, name):
    a = world.client(login="alice@example.test")
    reply = a.cmd("CREATE " + name)
    assert re.search(rb"t\d+ (NO|BAD) ", reply), reply
    assert b"OK" in tagged(a.cmd("NOOP"))


def test_bad_mutf7_is_refused(world):
    a = world.client(login="alice@example.test")
    assert b"NO [CANNOT] Mailbox name is not valid" in a.cmd("CREATE &Jjo!")
    assert b"NO [CANNOT]" in a.cmd('CREATE "caf\xc3\xa9"'.encode("latin-1"))


def test_imap4rev2_uses_utf8_names_and_esearch(world):
    a = world.client(login="alice@example.test")
    assert a.cmd("ENABLE IMAP4rev2").startswith(b"* ENABLED IMAP4rev2")
    a.ok('CREATE "\xc3\x89t\xc3\xa9"'.encode("latin-1"))
    assert '"\u00c9t\u00e9"'.encode() in a.cmd('LIST "" *')
    reply = a.cmd("SELECT INBOX")
    assert b"RECENT" not in reply and b'* LIST (' in reply
    assert b'* ESEARCH (TAG "t6")' in a.cmd("SEARCH ALL")


def test_namespace_id_enable(world):
    a = world.client(login="alice@example.test")
    assert b'* NAMESPACE (("" "/")) NIL NIL' in a.cmd("NAMESPACE")
    assert b'* ID ("name" "mailnet"' in a.cmd('ID ("name" "test")')
    assert a.cmd("ENABLE CONDSTORE FOO").startswith(b"* ENABLED CONDSTORE\r\n")
    assert a.cmd("ENABLE CONDSTORE").startswith(b"* ENABLED\r\n")


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


def test_literals_before_login_are_small(world):
    c = world.client()
    assert b"BAD [TOOBIG]" in c.cmd("LOGIN {100000}")
    c.login()
    reply = c.cmd("CREATE {20000}")
    assert reply.startswith(b"+ ")


def test_deleted_selected_mailbox(world):
    a = world.client(login="alice@example.test")
    a.ok("CREATE Doomed")
    a.ok("SELECT Doomed")
    b = world.client(login="alice@example.test")
    b.ok("DELETE Doomed")
    assert b"* BYE Selected mailbox was deleted" in a.cmd("NOOP")
    assert a.out.closed


def test_store_name_errors_map_to_no(world):
    a = world.client(login="alice@example.test")
    assert b"NO [CANNOT] Invalid mailbox name" in a.cmd("SELECT a/")
    assert b"NO [CANNOT] Invalid mailbox name" in a.cmd("STATUS ../x (MESSAGES)")
    assert b"NO [ALREADYEXISTS]" in a.cmd("RENAME Sent Trash")


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


def test_autologout_waits_for_a_running_command():
    w = World(idleTimeout=1800)
    w.deliver(b"Subject: big\r\n\r\n" + b"y" * (2 * 1024 * 1024))
    c = selected(w)
    c.out.paused = True
    c.cmd("FETCH 1 BODY.PEEK[]")  # the client does not read
    w.clock.advance(1801)
    assert not c.out.closed
    c.out.resume()
    assert c.take().endswith(b"OK FETCH completed\r\n")
    w.clock.advance(1801)
    assert c.out.closed


def test_deleted_selected_mailbox_select_elsewhere_or_close(world):
    a = world.client(login="alice@example.test")
    a.ok("CREATE Doomed")
    a.ok("SELECT Doomed")
    b = world.client(login="alice@example.test")
    b.ok("DELETE Doomed")
    assert b"* 0 EXISTS" in a.ok("SELECT INBOX")
    a.ok("CREATE Doomed2")
    a.ok("SELECT Doomed2")
    b.ok("DELETE Doomed2")
    assert b"OK CLOSE completed" in a.cmd("CLOSE")
    assert a.session.state == "authenticated" and not a.out.closed


def test_search_batches_are_bounded_in_bytes(monkeypatch):
    """Messages already in memory are handed to the matcher at most ~SEARCH_BATCH_BYTES at a time."""
    from mailnet.imap.commands import search as searchCommands

    calls = []
    w = World()
    inThread = w.shared.inThread

    def counting(f, batch, *args):
        calls.append(len(batch))
        return inThread(f, batch, *args)

    w.shared.inThread = counting
    for i in range(10):
        w.deliver(message("m%d" % i, body=("needle\r\n" if i % 3 == 0 else "hay\r\n") + "x" * 3000 + "\r\n"))
    a = selected(w)
    monkeypatch.setattr(searchCommands, "SEARCH_BATCH_BYTES", 7000)
    assert b"* SEARCH 1 4 7 10\r\n" in a.cmd("SEARCH BODY needle")
    assert calls == [3, 3, 3, 1]


def test_long_fetch_lets_other_sessions_in(monkeypatch):
    """A FETCH that has had the reactor for FETCH_TURN seconds waits a turn, then goes on."""
    from mailnet.imap.commands import fetch as fetchCommands

    w = World()
    for i in range(5):
        w.deliver(message("m%d" % i))
    a = selected(w)
    other = w.client(login="bob@example.test")
    monkeypatch.setattr(fetchCommands, "FETCH_TURN", -1)  # every message is a long turn
    out = a.feed(b"f1 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    assert out.count(b" FETCH (") == 1 and b"f1 OK" not in out
    assert b"n1 OK" in other.feed(b"n1 NOOP\r\n")  # another session is served meanwhile
    for _ in range(4):
        w.clock.advance(0)
        out += a.take()
    assert out.count(b" FETCH (") == 5 and b"Subject: m4" in out and b"f1 OK FETCH completed" in out


def test_a_defect_in_a_commands_grammar_fails_that_command_only(world, monkeypatch):
    # A grammar function that raises something other than a ParseError (a
    # defect of ours) must not loop on the buffered command nor end the
    # session: that command is BAD [SERVERBUG], the next one runs.
    from mailnet.imap import parser

    def broken(p, uid):
        raise AttributeError("no such grammar")

    c = world.client()
    c.login()
    monkeypatch.setitem(parser._COMMANDS, b"NOOP", broken)
    reply = c.cmd("NOOP")
    assert tagged(reply).endswith(b"BAD [SERVERBUG] The server could not parse this command")
    monkeypatch.undo()
    assert b"OK" in tagged(c.cmd("NOOP"))
