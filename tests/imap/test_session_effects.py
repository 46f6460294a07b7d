"""
The IMAP session on the protocol shape, pure: commands in, effects out,
outcomes of the long effects scripted by the test (docs/design.md, "One
protocol shape").  No reactor, no runner, no store: a task.Clock for the
session's timers and small stand-ins for what the store would hand back.
"""

from __future__ import annotations

import base64

import pytest
from twisted.internet import task

from mailnet.imap.effects import (
    CancelTimer,
    Close,
    CloseFolder,
    Compress,
    Failed,
    ForgetFolder,
    KeepFolder,
    Login,
    LoginError,
    LoginOk,
    Send,
    StartPolling,
    StartTimer,
    StartTLS,
    StopPolling,
    StoreCall,
)
from mailnet.imap.session import IMAPSession
from mailnet.imap.shared import IMAPSettings, Shared
from mailnet.store.interfaces import FolderExists, NoSuchFolder


class Out:
    """The facts a session reads from its connection (it writes nothing here)."""

    def __init__(self, secure=True, compress=False):
        self.secure = secure
        self.peer = "192.0.2.1"
        if compress:
            self.startCompression = lambda pending=b"": None

    def write(self, data):
        raise AssertionError("the session wrote outside its effects: %r" % data)

    writeSequence = close = startTLS = write

    wakes = 0

    def wake(self):
        self.wakes += 1


class Account:
    username = "alice@example.test"


TIMERS = (StartTimer, CancelTimer)


class Session(IMAPSession):
    """
    The session, with its timer effects set aside in ``timers`` (the tests
    of the other effects compare whole lists; the timer tests read these).
    """

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.timers = []

    def _aside(self, effect):
        if type(effect) in TIMERS:
            if self._effects is not None:
                self.timers.append(effect)
            return
        super()._aside(effect)


def session(secure=True, compress=False, **settings):
    clock = task.Clock()
    options = {"allowPlaintext": False, "idlePoll": 0}
    options.update(settings)
    shared = Shared(IMAPSettings(None, **options), None, None, clock, login=object())
    s = Session(shared, Out(secure, compress))
    greeting = s.start()
    assert len(greeting) == 1 and greeting[0].data.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    return s


def sent(effects):
    """The bytes of the Send effects, checking that nothing else is there."""
    assert all(type(e) is Send for e in effects), effects
    return b"".join(e.data for e in effects)


def loggedIn(**kw):
    s = session(**kw)
    [login] = s.feed(b"a LOGIN alice@example.test secret\r\n")
    s.completed(login, LoginOk(Account(), lambda: None))
    return s


# Auth area: CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE, ENABLE, NAMESPACE, COMPRESS


def test_login_is_the_shared_login_effect():
    s = session()
    effects = s.feed(b"a LOGIN alice@example.test secret\r\nb NOOP\r\n")
    # One long effect, last; the pipelined NOOP waits for it.
    assert effects == [Login("alice@example.test", "secret")]
    logouts = []
    effects = s.completed(effects[0], LoginOk(Account(), lambda: logouts.append(1)))
    reply = sent(effects)
    assert reply.startswith(b"a OK [CAPABILITY IMAP4rev1 ")
    assert b"UIDPLUS" in reply and reply.endswith(b"Logged in\r\nb OK NOOP completed\r\n")
    assert s.state == "authenticated" and s.username == "alice@example.test"
    assert s.shared.userSessions == {"alice@example.test": 1}
    s.connectionLost()
    assert logouts == [1] and s.shared.userSessions == {}


def test_failed_logins_then_bye():
    s = session(authFailures=2)
    [login] = s.feed(b"a LOGIN alice@example.test wrong\r\n")
    assert sent(s.completed(login, LoginError())) == b"a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
    [login] = s.feed(b"b LOGIN alice@example.test wrong\r\nc NOOP\r\n")
    effects = s.completed(login, LoginError())
    assert effects == [Send(b"b NO [AUTHENTICATIONFAILED] Invalid credentials\r\n* BYE Too many failed logins\r\n"),
                       Close()]
    assert s.closed


def test_login_temporary_failure_and_client_gone():
    s = session()
    [login] = s.feed(b"a LOGIN alice@example.test secret\r\n")
    assert sent(s.completed(login, LoginError(temporary=True))) == (
        b"a NO [UNAVAILABLE] Cannot log in now; try again later\r\n")
    [login] = s.feed(b"b LOGIN alice@example.test secret\r\n")
    assert s.completed(login, None) == []  # gone before the check: nothing to say
    assert s.state == "not authenticated"


def test_too_many_connections_for_a_user_gives_the_account_back():
    s = session(connectionsPerUser=1)
    s.shared.userSessions["alice@example.test"] = 1
    [login] = s.feed(b"a LOGIN alice@example.test secret\r\n")
    logouts = []
    reply = sent(s.completed(login, LoginOk(Account(), lambda: logouts.append(1))))
    assert reply == b"a NO [UNAVAILABLE] Too many connections for this user (limit 1)\r\n"
    assert logouts == [1] and s.state == "not authenticated"


def test_plaintext_login_refused_without_tls():
    s = session(secure=False)
    assert sent(s.feed(b"a LOGIN alice@example.test secret\r\n")) == (
        b"a NO [PRIVACYREQUIRED] Plaintext login is disabled until STARTTLS\r\n")


def test_starttls_drops_what_was_pipelined():
    """RFC 3207 s4.2 / RFC 9051 s6.2.1: the go-ahead, then TLS; the bytes after it are never run."""
    s = session(secure=False)
    effects = s.feed(b"a STARTTLS\r\nb LOGIN alice@example.test secret\r\n")
    assert effects == [Send(b"a OK Begin TLS negotiation now\r\n"), StartTLS()]
    assert s.reader.buffered() == 0 and s.secure
    reply = sent(s.feed(b"c CAPABILITY\r\n"))
    assert b"AUTH=PLAIN" in reply and b"STARTTLS" not in reply
    assert sent(s.feed(b"d STARTTLS\r\n")) == b"d BAD TLS is already active\r\n"


def test_authenticate_plain_reads_the_response_line():
    s = session()
    assert s.feed(b"a AUTHENTICATE PLAIN\r\n") == [Send(b"+ \r\n")]
    effects = s.feed(base64.b64encode(b"\0alice@example.test\0secret") + b"\r\n")
    assert effects == [Login("alice@example.test", "secret")]
    assert sent(s.completed(effects[0], LoginOk(Account(), lambda: None))).endswith(b"Logged in\r\n")
    # SASL-IR, and a cancelled exchange
    s = session()
    ir = base64.b64encode(b"\0alice@example.test\0secret")
    assert s.feed(b"a AUTHENTICATE PLAIN " + ir + b"\r\n") == [Login("alice@example.test", "secret")]
    s = session()
    s.feed(b"a AUTHENTICATE PLAIN\r\n")
    assert sent(s.feed(b"*\r\nb NOOP\r\n")) == b"a BAD Authentication cancelled\r\nb OK NOOP completed\r\n"


def test_authenticate_with_another_authorization_identity_is_refused_before_any_check():
    s = session()
    ir = base64.b64encode(b"bob@example.test\0alice@example.test\0secret")
    assert sent(s.feed(b"a AUTHENTICATE PLAIN " + ir + b"\r\n")) == (
        b"a NO [AUTHORIZATIONFAILED] Proxy authorization is not supported\r\n")
    assert s.authFailures == 1


def test_logout_closes_after_its_reply():
    s = session()
    assert s.feed(b"a LOGOUT\r\nb NOOP\r\n") == [Send(b"* BYE Logging out\r\na OK LOGOUT completed\r\n"), Close()]


def test_compress_hands_over_the_rest_of_the_input():
    """RFC 4978 s3: compressed from right after the OK, both ways."""
    s = loggedIn(compress=True)
    assert b"COMPRESS=DEFLATE" in sent(s.feed(b"c CAPABILITY\r\n"))
    effects = s.feed(b"a COMPRESS DEFLATE\r\n\x78\x9c")
    assert effects == [Send(b"a OK DEFLATE active\r\n"), Compress(b"\x78\x9c")]
    assert sent(s.feed(b"b COMPRESS DEFLATE\r\n")) == b"b NO [COMPRESSIONACTIVE] DEFLATE is already active\r\n"
    assert b"BAD" in sent(loggedIn().feed(b"a COMPRESS DEFLATE\r\n"))  # not offered: no such output


def test_enable_id_namespace_are_answered_at_once():
    s = loggedIn()
    reply = sent(s.feed(b'a ENABLE CONDSTORE IMAP4rev2\r\nb ID NIL\r\nc NAMESPACE\r\n'))
    assert reply == (b"* ENABLED CONDSTORE IMAP4rev2\r\na OK ENABLE completed\r\n"
                     b'* ID ("name" "mailnet" "vendor" "mailnet")\r\nb OK ID completed\r\n'
                     b'* NAMESPACE (("" "/")) NIL NIL\r\nc OK NAMESPACE completed\r\n')
    assert s.condstore and s.rev2


def test_a_failed_store_call_is_answered_where_the_command_waits():
    """The store's error comes back as Failed and is mapped to the reply, as a raised one was."""
    s = loggedIn()
    [call] = s.feed(b"a CREATE Work\r\n")
    assert type(call) is StoreCall and call.method == "createFolder" and call.args == ("Work",)
    assert sent(s.completed(call, Failed(FolderExists("Work")))) == b"a NO [ALREADYEXISTS] Mailbox exists already\r\n"


@pytest.mark.parametrize("error, reply", [
    (NoSuchFolder("x"), b"a NO [NONEXISTENT] Mailbox does not exist: x\r\n"),
    (OSError(28, "No space left on device"), b"a NO [OVERQUOTA] Mail storage is full, please try again later\r\n"),
    (RuntimeError("bug"), b"a NO [SERVERBUG] Internal server error\r\n"),
])
def test_store_failures_map_to_replies(error, reply):
    s = loggedIn()
    forget, call = s.feed(b"a DELETE Work\r\n")
    assert forget == ForgetFolder("alice@example.test", "Work") and call.method == "deleteFolder"
    assert sent(s.completed(call, Failed(error))) == reply


# Folders area: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS


class Folder:
    """What a folder handle shows a session (the index, no I/O)."""

    def __init__(self, name="INBOX", infos=(), mailboxId="F123abc"):
        self.name = name
        self.infos = list(infos)
        self.uidNext = 1 + max([i.uid for i in self.infos], default=0)
        self.uidValidity = 7
        self.highestModSeq = 3
        self.mailboxId = mailboxId
        self.closed = 0
        self.listeners = []

    def messages(self):
        return list(self.infos)

    def addListener(self, listener):
        self.listeners.append(listener)

    def removeListener(self, listener):
        if listener in self.listeners:
            self.listeners.remove(listener)

    def expungedSince(self, modseq):
        return None

    def get(self, uid):
        return next((i for i in self.infos if i.uid == uid), None)

    def close(self):
        self.closed += 1


def run(s, effects, outcomes):
    """
    Answer the long effects in turn with ``outcomes`` ({method name or effect
    type name: outcome}); return the bytes sent and the calls seen.
    """
    out = []
    calls = []
    while effects:
        for e in effects:
            if type(e) is CloseFolder:
                e.folder.close()
        *rest, last = effects
        out += [e.data for e in rest if type(e) is Send]
        if type(last) in (Send, CloseFolder):
            out += [e.data for e in [last] if type(e) is Send]
            break
        name = last.method if type(last) is StoreCall else type(last).__name__
        calls.append((name, last.args) if type(last) is StoreCall else name)
        effects = s.completed(last, outcomes[name])
    return b"".join(out), calls


def test_create_then_its_mailbox_id():
    s = loggedIn()
    folder = Folder("Work")
    reply, calls = run(s, s.feed(b"a CREATE Work/\r\n"), {"createFolder": None, "openFolder": folder})
    assert calls == [("createFolder", ("Work",)), ("openFolder", ("Work",))]
    assert reply == b"a OK [MAILBOXID (F123abc)] CREATE completed\r\n"
    assert folder.closed == 1


def test_list_from_the_folder_list_without_the_store():
    from mailnet.store.interfaces import FolderInfo

    s = loggedIn()
    folders = [FolderInfo("INBOX", subscribed=True), FolderInfo("Sent", "\\Sent"), FolderInfo("a/b")]
    reply, calls = run(s, s.feed(b'a LIST "" "*"\r\n'), {"listFolders": folders})
    assert calls == [("listFolders", ())]
    # INBOX first, then by name; "a" exists only as a parent (RFC 3501 s6.3.8: \\Noselect)
    assert reply == (b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
                     b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n'
                     b'* LIST (\\Noselect \\HasChildren) "/" a\r\n'
                     b'* LIST (\\HasNoChildren) "/" a/b\r\n'
                     b"a OK LIST completed\r\n")


def test_status_opens_refreshes_and_closes_the_folder():
    from mailnet.store.interfaces import MessageInfo

    s = loggedIn()
    infos = [MessageInfo(1, frozenset({"\\Seen"}), 0.0, 100, 1), MessageInfo(2, frozenset(), 0.0, 50, 2)]
    folder = Folder("INBOX", infos)
    reply, calls = run(s, s.feed(b"a STATUS INBOX (MESSAGES UNSEEN SIZE UIDNEXT MAILBOXID)\r\n"),
                       {"openFolder": folder, "refresh": None})
    assert calls == [("openFolder", ("INBOX",)), ("refresh", ())]
    assert reply == (b"* STATUS INBOX (MESSAGES 2 UNSEEN 1 SIZE 150 UIDNEXT 3 MAILBOXID (F123abc))\r\n"
                     b"a OK STATUS completed\r\n")
    assert folder.closed == 1


def test_status_of_a_folder_that_failed_to_refresh_still_closes_it():
    s = loggedIn()
    folder = Folder("INBOX")
    [call] = s.feed(b"a STATUS INBOX (MESSAGES)\r\n")
    [call] = s.completed(call, folder)
    assert s.completed(call, Failed(OSError(5, "Input/output error"))) == [
        CloseFolder(folder), Send(b"a NO [UNAVAILABLE] Temporary storage failure, please try again\r\n")]


def test_rename_and_subscribe_are_store_calls():
    s = loggedIn()
    reply, calls = run(s, s.feed(b"a RENAME Old New\r\nb UNSUBSCRIBE New\r\n"),
                       {"renameFolder": None, "setSubscribed": None})
    assert calls == [("renameFolder", ("Old", "New")), ("setSubscribed", ("New", False))]
    assert reply == b"a OK RENAME completed\r\nb OK UNSUBSCRIBE completed\r\n"


# Select area: SELECT, EXAMINE, CHECK, CLOSE, UNSELECT, EXPUNGE (and the refresh before each command)


def info(uid, *flags, size=100):
    from mailnet.store.interfaces import MessageInfo

    return MessageInfo(uid, frozenset(flags), 0.0, size, uid)


def selected(infos=(), **kw):
    """A logged-in session with INBOX selected (the folder stand-in returned too)."""
    s = loggedIn(**kw)
    folder = Folder("INBOX", infos or [info(1, "\\Seen"), info(2)])
    reply, calls = run(s, s.feed(b"s SELECT INBOX\r\n"), {"openFolder": folder, "refresh": None})
    assert calls == [("openFolder", ("INBOX",)), ("refresh", ())]
    assert reply.endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    return s, folder


def test_select_from_the_index_with_the_keeper_told():
    s = loggedIn()
    folder = Folder("INBOX", [info(1, "\\Seen"), info(2)])
    [call] = s.feed(b"a SELECT inbox\r\n")
    assert call == StoreCall(s.account, "openFolder", ("INBOX",))
    [call] = s.completed(call, folder)
    assert call == StoreCall(folder, "refresh")
    keep, reply = s.completed(call, None)
    assert type(keep) is KeepFolder and keep.key == ("alice@example.test", "INBOX") and keep.snapshot is not None
    assert reply.data == (b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 2 EXISTS\r\n* 0 RECENT\r\n"
                          b"* OK [UNSEEN 2] First unseen\r\n* OK [UIDVALIDITY 7] UIDs valid\r\n"
                          b"* OK [UIDNEXT 3] Predicted next UID\r\n"
                          b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n"
                          b"* OK [HIGHESTMODSEQ 3] Highest\r\n* OK [MAILBOXID (F123abc)] Ok\r\n"
                          b"a OK [READ-WRITE] SELECT completed\r\n")
    assert s.state == "selected" and folder.listeners == [s.view]


def test_a_folder_that_fails_to_refresh_at_select_is_closed():
    s = loggedIn()
    folder = Folder("INBOX")
    [call] = s.feed(b"a SELECT INBOX\r\n")
    [call] = s.completed(call, folder)
    effects = s.completed(call, Failed(NoSuchFolder("INBOX")))
    assert effects == [CloseFolder(folder), Send(b"a NO [NONEXISTENT] Mailbox does not exist: INBOX\r\n")]
    assert s.state == "authenticated"


def test_every_command_in_the_selected_state_refreshes_first():
    s, folder = selected()
    [call] = s.feed(b"a NOOP\r\nb CHECK\r\n")
    assert call == StoreCall(folder, "refresh")
    reply, call = s.completed(call, None)  # a's answer, then b's refresh
    assert reply == Send(b"a OK NOOP completed\r\n") and call == StoreCall(folder, "refresh")
    assert sent(s.completed(call, None)) == b"b OK CHECK completed\r\n"


def test_the_selected_mailbox_deleted_meanwhile():
    s, folder = selected()
    view = s.view
    [call] = s.feed(b"a NOOP\r\n")
    effects = s.completed(call, Failed(NoSuchFolder("INBOX")))
    assert effects == [CloseFolder(view), Send(b"* BYE Selected mailbox was deleted, have to disconnect\r\n"), Close()]
    assert s.closed and s.view is None


def test_expunge_and_close():
    s, folder = selected([info(1, "\\Deleted"), info(2), info(3, "\\Deleted")])
    reply, calls = run(s, s.feed(b"a EXPUNGE\r\n"), {"refresh": None, "expunge": None})
    assert calls == [("refresh", ()), ("expunge", ([1, 3],))]
    assert reply == b"a OK EXPUNGE completed\r\n"
    s, folder = selected([info(1, "\\Deleted"), info(2)])
    view = s.view
    [call] = s.feed(b"a CLOSE\r\n")
    [call] = s.completed(call, None)
    assert call == StoreCall(folder, "expunge", ([1],))
    assert s.completed(call, None) == [CloseFolder(view), Send(b"a OK CLOSE completed\r\n")]
    assert s.state == "authenticated" and folder.listeners == []  # CLOSE expunges silently


# Messages area: APPEND (MULTIAPPEND), COPY, MOVE, STORE


def test_store_answers_from_the_changed_index():
    s, folder = selected()
    [call] = s.feed(b"a STORE 2 +FLAGS (\\Flagged)\r\n")
    [call] = s.completed(call, None)
    assert call == StoreCall(folder, "setFlags", ([2], ["\\Flagged"], "add", None))
    folder.infos[1] = changed = info(2, "\\Flagged")
    assert sent(s.completed(call, ([changed], []))) == b"* 2 FETCH (FLAGS (\\Flagged))\r\na OK STORE completed\r\n"


def test_store_on_a_read_only_mailbox_asks_nothing():
    s = loggedIn()
    folder = Folder("INBOX", [info(1)])
    run(s, s.feed(b"s EXAMINE INBOX\r\n"), {"openFolder": folder, "refresh": None})
    [call] = s.feed(b"a STORE 1 +FLAGS (\\Seen)\r\n")
    assert call.method == "refresh"
    assert sent(s.completed(call, None)) == b"a NO [READ-ONLY] Mailbox is read-only\r\n"


def test_copy_gives_copyuid_and_closes_the_target():
    s, folder = selected()
    dest = Folder("Archive")
    [call] = s.feed(b"a COPY 1:2 Archive\r\n")
    [call] = s.completed(call, None)
    assert call == StoreCall(s.account, "openFolder", ("Archive",))
    [call] = s.completed(call, dest)
    assert call == StoreCall(folder, "copyTo", ([1, 2], dest))
    assert s.completed(call, [(1, 5), (2, 6)]) == [CloseFolder(dest),
                                                   Send(b"a OK [COPYUID 7 1:2 5:6] COPY completed\r\n")]


def test_copy_to_a_missing_mailbox_says_trycreate():
    s, folder = selected()
    [call] = s.feed(b"a MOVE 1 Nope\r\n")
    [call] = s.completed(call, None)
    assert sent(s.completed(call, Failed(NoSuchFolder("Nope")))) == b"a NO [TRYCREATE] Mailbox does not exist\r\n"


def test_multiappend_is_all_or_none():
    """RFC 3502 s6.3.11: the second message fails, the first is taken out again."""
    s = loggedIn()
    folder = Folder("INBOX")
    [call] = s.feed(b"a APPEND INBOX {7+}\r\nSubj: 1 {7+}\r\nSubj: 2\r\n")
    [call] = s.completed(call, folder)
    assert call.method == "append" and call.target is folder
    [call] = s.completed(call, 41)
    assert call.method == "append"
    [call] = s.completed(call, Failed(OSError(28, "No space left on device")))
    assert call == StoreCall(folder, "expunge", ([41],))
    assert s.completed(call, None) == [
        CloseFolder(folder), Send(b"a NO [OVERQUOTA] Mail storage is full, please try again later\r\n")]


def test_append_gives_appenduid():
    s = loggedIn()
    folder = Folder("INBOX")
    reply, calls = run(s, s.feed(b"a APPEND INBOX (\\Seen) {7+}\r\nSubj: 1\r\n"), {"openFolder": folder, "append": 9})
    assert [c[0] for c in calls] == ["openFolder", "append"] and calls[1][1][1] == ["\\Seen"]
    assert reply == b"a OK [APPENDUID 7 9] APPEND completed\r\n"
    assert folder.closed == 1


# IDLE (RFC 2177)


def test_idle_polls_through_the_runner_and_ends_with_done():
    s, folder = selected(idlePoll=2.0)
    # No refresh first: the poll does it.
    assert s.feed(b"a IDLE\r\n") == [Send(b"+ idling\r\n"), StartPolling(folder, 2.0)]
    assert s.idling
    assert s.feed(b"DONE\r\nb NOOP\r\n") == [StopPolling(), Send(b"a OK IDLE terminated\r\n"),
                                           StoreCall(folder, "refresh")]
    assert not s.idling


def test_idle_without_done_is_bad_and_stops_polling():
    s, folder = selected(idlePoll=2.0)
    s.feed(b"a IDLE\r\n")
    assert s.feed(b"NOOP\r\n") == [StopPolling(), Send(b"a BAD Expected DONE to end IDLE\r\n")]


def test_idle_before_select_does_not_poll():
    s = loggedIn(idlePoll=2.0)
    assert s.feed(b"a IDLE\r\n") == [Send(b"+ idling\r\n")]
    assert s.feed(b"DONE\r\n") == [Send(b"a OK IDLE terminated\r\n")]


# The runner (mailnet.imap.runner) with the memory store, whose Deferreds have fired already


def test_thousands_of_pipelined_store_calls_do_not_deepen_the_stack():
    """Each command's refresh completes at once: the runner loops instead of recursing."""
    from tests.imap.helpers import World

    world = World()
    c = world.client(login="alice@example.test")
    c.ok("SELECT INBOX")
    reply = c.feed(b"".join(b"n%d NOOP\r\n" % i for i in range(5000)) + b"z STATUS INBOX (MESSAGES)\r\n")
    assert reply.count(b" OK NOOP completed\r\n") == 5000
    assert reply.endswith(b"* STATUS INBOX (MESSAGES 0)\r\nz OK STATUS completed\r\n")


def test_connection_lost_while_a_command_waits_for_a_line():
    s, folder = selected(idlePoll=2.0)
    s.feed(b"a IDLE\r\n")
    s.connectionLost()
    assert not s.idling and s._task is None and folder.listeners == []
    s = session()
    s.feed(b"a AUTHENTICATE PLAIN\r\n")
    s.connectionLost()
    assert s._task is None and s.reader.buffered() == 0


def test_a_folder_opened_after_the_connection_went_is_closed():
    """The runner, stopped, still closes what a finished command gives up."""
    from tests.imap.helpers import FakeOut

    s, folder = selected()
    out = FakeOut(shared=s.shared)
    out.session = s
    dest = Folder("Archive")
    [call] = s.feed(b"a COPY 1 Archive\r\n")
    [call] = s.completed(call, None)
    [call] = s.completed(call, dest)
    assert call.method == "copyTo"
    s.connectionLost()
    out.stopRunner()
    out.runEffects(s.completed(call, [(1, 5)]))  # the copy ends: CloseFolder, then its reply (not sent)
    assert dest.closed == 1 and out.data == b""
