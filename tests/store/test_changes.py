"""
Account state and changes (mailnet.store.conformance_changes) for both
builtin backends, and the Maildir journal beyond the suite: other
programs writing the Maildir, a lost or corrupt journal, the positions
it keeps.
"""

from __future__ import annotations

import os
import shutil

from mailnet.store.changes import FILE_NAME
from mailnet.store.conformance_changes import ChangesConformance
from mailnet.store.interfaces import INBOX, CannotCalculateChanges
from mailnet.store.maildir import MaildirStore
from mailnet.store.memory import MemoryStore
from mailnet.store.testing import failure, msg, result, syncRunner

USER = "alice@example.test"


def _now(f, delay=0):
    f()


def maildirStore(root, **kw):
    kw.setdefault("changesPoll", 0)
    return MaildirStore(str(root), runner=syncRunner, schedule=_now, **kw)


class TestMemoryChanges(ChangesConformance):
    def makeStore(self, tmp_path, limits=None):
        return MemoryStore(limits)

    def makeStoreKeeping(self, tmp_path, kept):
        return MemoryStore(changesKept=kept)


class TestMaildirChanges(ChangesConformance):
    def makeStore(self, tmp_path, limits=None):
        return maildirStore(tmp_path / "mail", limits=limits)

    def makeStoreKeeping(self, tmp_path, kept):
        return maildirStore(tmp_path / "small", changesKept=kept)

    def restartStore(self, tmp_path, store):
        return maildirStore(tmp_path / "mail")


# Maildir: other programs, the journal file


def _setup(tmp_path):
    store = maildirStore(tmp_path / "mail")
    account = result(store.getAccount(USER))
    return store, account, account.path


def _state(account):
    return result(account.currentState())


def _names(path, sub):
    return sorted(os.listdir(os.path.join(path, sub)))


def test_a_file_dropped_into_new_by_an_mda(tmp_path):
    store, account, path = _setup(tmp_path)
    s0 = _state(account)
    with open(os.path.join(path, "new", "1700000000.M1P1.mda"), "wb") as f:
        f.write(msg(1).replace(b"\r\n", b"\n"))
    c = result(account.changesSince(s0))
    assert len(c.emails.created) == 1
    inbox = result(account.openFolder(INBOX))
    assert list(inbox.emailIds([1]).values()) == c.emails.created
    assert c.mailboxes.updated == [inbox.mailboxId]
    result(store.close())


def test_flag_rename_move_and_delete_by_another_program(tmp_path):
    store, account, path = _setup(tmp_path)
    inbox = result(account.openFolder(INBOX))
    uids = [result(inbox.append(msg(n))) for n in range(3)]
    ids = inbox.emailIds(uids)
    inbox.close()
    s0 = _state(account)
    files = sorted((n, os.path.join(path, sub, n)) for sub in ("new", "cur") for n in _names(path, sub))
    (n0, f0), (n1, f1), (n2, f2) = files
    # mutt marks the first read, moves the second to Trash, deletes the third.
    os.rename(f0, os.path.join(path, "cur", n0.split(":")[0] + ":2,S"))
    os.rename(f1, os.path.join(path, ".Trash", "cur", n1))
    os.unlink(f2)
    c = result(account.changesSince(s0))
    assert set(c.emails.updated) == {ids[uids[0]], ids[uids[1]]}
    assert c.emails.destroyed == [ids[uids[2]]]
    assert c.emails.created == []
    assert len(c.mailboxes.updated) == 2
    assert c.mailboxes.updatedProperties is not None
    result(store.close())


def test_unchanged_folders_are_not_synced(tmp_path):
    store, account, path = _setup(tmp_path)
    _state(account)
    journal = store.journalAt(account)
    syncs = journal.syncs
    d = store.newDelivery()
    d.addRecipient(USER)
    d.write(msg(1))
    result(d.commit())
    _state(account)
    _state(account)
    assert journal.syncs == syncs  # our own delivery: no folder opened
    result(store.close())
    # A new process trusts what the journal saw.
    store = maildirStore(tmp_path / "mail")
    account = result(store.getAccount(USER))
    _state(account)
    assert store.journalAt(account).syncs == 0
    result(store.close())


def test_a_deleted_journal_is_made_again_and_old_states_are_too_old(tmp_path):
    store, account, path = _setup(tmp_path)
    inbox = result(account.openFolder(INBOX))
    result(inbox.append(msg(1)))
    s0 = _state(account)
    os.unlink(os.path.join(path, FILE_NAME))
    failure(account.changesSince(s0), CannotCalculateChanges)
    s1 = _state(account)
    assert s1 != s0
    result(inbox.append(msg(2)))
    assert len(result(account.changesSince(s1)).emails.created) == 1
    result(store.close())


def test_a_corrupt_journal_is_set_aside(tmp_path, caplog):
    store, account, path = _setup(tmp_path)
    s0 = _state(account)
    result(store.close())
    journal = os.path.join(path, FILE_NAME)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(journal + suffix):
            os.unlink(journal + suffix)
    with open(journal, "wb") as f:
        f.write(b"this is not a database" * 100)
    store = maildirStore(tmp_path / "mail")
    account = result(store.getAccount(USER))
    failure(account.changesSince(s0), CannotCalculateChanges)
    assert os.path.exists(journal + ".corrupt")
    s1 = _state(account)
    inbox = result(account.openFolder(INBOX))
    result(inbox.append(msg(1)))
    assert len(result(account.changesSince(s1)).emails.created) == 1
    result(store.close())


def test_changes_made_by_another_process_are_read_from_the_logs(tmp_path):
    store, account, path = _setup(tmp_path)
    s0 = _state(account)
    # Another mailnet process (a second store on the same files) delivers.
    other = maildirStore(tmp_path / "mail")
    d = other.newDelivery()
    d.addRecipient(USER, "Trash")
    d.write(msg(7))
    result(d.commit())
    result(other.close())
    c = result(account.changesSince(s0))
    assert len(c.emails.created) == 1
    result(store.close())


def test_a_lost_sidecar_does_not_lose_or_invent_changes(tmp_path):
    store, account, path = _setup(tmp_path)
    inbox = result(account.openFolder(INBOX))
    uid = result(inbox.append(msg(1)))
    emailId = inbox.emailIds([uid])[uid]
    inbox.close()
    result(store.close())
    store = maildirStore(tmp_path / "mail")
    account = result(store.getAccount(USER))
    s0 = _state(account)
    os.unlink(os.path.join(path, "mailnet-modseq"))
    [(sub, name)] = [(sub, n) for sub in ("new", "cur") for n in _names(path, sub)]
    os.rename(os.path.join(path, sub, name), os.path.join(path, "cur", name.split(":")[0] + ":2,F"))
    c = result(account.changesSince(s0))
    assert c.emails.updated == [emailId]
    assert c.emails.created == c.emails.destroyed == []
    result(store.close())


def test_journal_in_a_copied_maildir(tmp_path):
    # The journal is beside Dovecot's files and travels with the account.
    store, account, path = _setup(tmp_path)
    s0 = _state(account)
    result(store.close())
    shutil.copytree(tmp_path / "mail", tmp_path / "copy")
    store = maildirStore(tmp_path / "copy")
    account = result(store.getAccount(USER))
    assert _state(account) == s0
    result(store.close())


def _deliver(store, n, folder=INBOX):
    d = store.newDelivery()
    d.addRecipient(USER, folder)
    d.write(msg(n))
    return result(d.commit())


def test_two_processes_share_the_journal(tmp_path):
    one, two = maildirStore(tmp_path / "mail"), maildirStore(tmp_path / "mail")
    a, b = result(one.getAccount(USER)), result(two.getAccount(USER))
    s0 = _state(a)
    assert _state(b) == s0
    states = []
    for n in range(3):
        _deliver(one, n)
        states.append(_state(a))
        _deliver(two, 10 + n, "Trash")
        states.append(_state(b))
    assert len(set(states)) == len(states)
    assert [int(s.rpartition(".")[2]) for s in states] == sorted(int(s.rpartition(".")[2]) for s in states)
    assert len(result(a.changesSince(s0)).emails.created) == 6
    assert result(b.changesSince(states[1])).emails.created == result(a.changesSince(states[1])).emails.created
    result(one.close())
    result(two.close())


def test_a_sidecar_made_anew_under_the_same_inode_is_read_whole(tmp_path):
    # An inode number can be given again to a new file (a lost sidecar
    # made anew): the journal must not read the new file from the old
    # file's position.  Simulated by rewriting the sidecar in place.
    store, account, path = _setup(tmp_path)
    inbox = result(account.openFolder(INBOX))
    uid = result(inbox.append(msg(1)))
    emailId = inbox.emailIds([uid])[uid]
    info = inbox.get(uid)
    uv = inbox.uidValidity
    inbox.close()
    s0 = _state(account)
    result(store.close())
    [(sub, name)] = [(sub, n) for sub in ("new", "cur") for n in _names(path, sub)]
    os.rename(os.path.join(path, sub, name), os.path.join(path, "cur", name.split(":")[0] + ":2,F"))
    sidecar = os.path.join(path, "mailnet-modseq")
    ino = os.stat(sidecar).st_ino
    text = (f"mailnet-modseq 1 V{uv} E5000000\na 5000001 {uid} {info.internalDate!r} {info.size} :F\n"
            + "h 5000001\n" * 200)
    with open(sidecar, "r+b") as f:
        f.write(text.encode())
        f.truncate()
    assert os.stat(sidecar).st_ino == ino
    store = maildirStore(tmp_path / "mail")
    account = result(store.getAccount(USER))
    c = result(account.changesSince(s0))
    assert c.emails.updated == [emailId]
    assert c.emails.created == c.emails.destroyed == []
    result(store.close())


class Heard:
    def __init__(self):
        self.calls = []

    def accountChanged(self, account, state, types):
        self.calls.append((state, set(types)))


def test_listeners_hear_deliveries_and_operations_without_asking(tmp_path):
    store, account, path = _setup(tmp_path)
    heard = Heard()
    account.addListener(heard)
    _state(account)
    # A delivery to a folder no one has open (as SMTP and the queue do).
    [(_, _, uid)] = _deliver(store, 1)
    assert heard.calls and heard.calls[-1][1] == {"Email", "Mailbox"}
    # An IMAP STORE on an open folder.
    inbox = result(account.openFolder(INBOX))
    heard.calls.clear()
    result(inbox.setFlags([uid], ["\\Flagged"], "add"))
    assert len(heard.calls) == 1 and heard.calls[0][1] == {"Email"}
    assert heard.calls[0][0] == _state(account)
    inbox.close()
    result(store.close())


def test_another_programs_write_is_heard_at_the_next_poll(tmp_path):
    from twisted.internet import task

    clock = task.Clock()
    store = maildirStore(tmp_path / "mail", changesPoll=5, reactor=clock)
    account = result(store.getAccount(USER))
    heard = Heard()
    account.addListener(heard)
    s0 = _state(account)
    with open(os.path.join(account.path, "new", "1700000000.M1P1.mda"), "wb") as f:
        f.write(msg(1))
    clock.advance(4)
    assert heard.calls == []
    clock.advance(1)
    assert len(heard.calls) == 1 and heard.calls[0][1] == {"Email", "Mailbox"}
    assert len(result(account.changesSince(s0)).emails.created) == 1
    account.removeListener(heard)
    assert not clock.getDelayedCalls()  # the poll stops with the last listener
    result(store.close())


def test_a_look_between_a_deliverys_uidlist_record_and_its_log_line(tmp_path, monkeypatch):
    # A delivery appends the uidlist record, then the modseq log line.  A
    # reader in another process that looks in between reads the record
    # (for an earlier message) but not the line; at its next look the
    # uidlist has not grown, and the message must still be taken in.
    from mailnet.store.maildir.modlog import ModLog

    writer, reader = maildirStore(tmp_path / "mail"), maildirStore(tmp_path / "mail")
    w, r = result(writer.getAccount(USER)), result(reader.getAccount(USER))
    s0 = _state(r)
    _deliver(writer, 0)
    appendLines = ModLog.append
    looked = []

    def append(self, lines):
        if not looked and any(line.startswith("a ") for line in lines):
            # Another message's line is in the log but not yet read: the
            # look (its ingest step: the writer holds the folder's lock)
            # reads the uidlist past this delivery's record.
            looked.append(reader.journalAt(r).ingest())
        return appendLines(self, lines)

    monkeypatch.setattr(ModLog, "append", append)
    _deliver(writer, 1)
    monkeypatch.setattr(ModLog, "append", appendLines)
    assert looked
    inbox = result(w.openFolder(INBOX))
    ids = set(inbox.emailIds([i.uid for i in inbox.messages()]).values())
    inbox.close()
    assert len(ids) == 2
    assert set(result(r.changesSince(s0)).emails.created) == ids
    result(writer.close())
    result(reader.close())


def test_a_listener_of_a_new_account_hears_its_first_delivery(tmp_path):
    # A push client (EventSource, PushSubscription) that subscribes before
    # the account has ever been looked at: the first delivery is an Email
    # change, told at once, not folded into the journal's first look.
    store, account, path = _setup(tmp_path)
    heard = Heard()
    account.addListener(heard)
    heard.calls.clear()
    _deliver(store, 1)  # no state was asked: the client only listens
    assert heard.calls and heard.calls[-1][1] >= {"Email", "Mailbox"}
    result(store.close())
