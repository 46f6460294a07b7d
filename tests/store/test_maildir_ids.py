"""
Email ids and mailbox ids of the Maildir store beyond the conformance
suite: renames and moves by other programs, Dovecot's GUID fields, a lost
or corrupt uidlist, kill -9, and findEmail reading no message file.
"""

from __future__ import annotations

import builtins
import os
import signal

from mailnet.store.interfaces import INBOX
from mailnet.store.maildir.names import emailIdOf
from tests.store.helpers import msg, result
from tests.store.maildir_helpers import USER, acct, child, newStore, openf
from tests.store.maildir_helpers import root  # noqa: F401 (a fixture)


def account(store):
    return result(store.getAccount(USER))


def fileOf(folderPath, uid, folder):
    """The name (``sub/name``) of a message's file, from the open folder's index."""
    return folder._index.disk.full.where[uid]


def test_external_flag_rename_and_new_to_cur_keep_the_id(root):
    store = newStore(root)
    inbox = openf(store)
    d = store.newDelivery()
    d.addRecipient(USER)
    d.write(msg(1))
    [(_, _, uid)] = result(d.commit())
    emailId = inbox.emailIds([uid])[uid]
    path = acct(root)
    rel = fileOf(path, uid, inbox)
    assert rel.startswith("new/")
    # mutt: read it (new/ -> cur/ with S), then flag it.
    base = rel[4:]
    os.rename(os.path.join(path, rel), os.path.join(path, "cur", base + ":2,S"))
    result(inbox.refresh())
    assert inbox.emailIds([uid]) == {uid: emailId}
    os.rename(os.path.join(path, "cur", base + ":2,S"), os.path.join(path, "cur", base + ":2,FS"))
    result(inbox.refresh())
    assert inbox.get(uid).flags == {"\\Seen", "\\Flagged"}
    assert inbox.emailIds([uid]) == {uid: emailId}
    inbox.close()
    # A new process (restart) sees the same id.
    inbox = openf(newStore(root))
    assert inbox.emailIds([uid]) == {uid: emailId}
    inbox.close()


def test_external_move_between_folders_keeps_the_id(root):
    store = newStore(root)
    inbox, archive = openf(store), openf(store, "Archive")
    uid = result(inbox.append(msg(1), flags=["\\Seen"]))
    emailId = inbox.emailIds([uid])[uid]
    path = acct(root)
    rel = fileOf(path, uid, inbox)
    os.rename(os.path.join(path, rel), os.path.join(path, ".Archive", rel))
    result(inbox.refresh())
    result(archive.refresh())
    assert inbox.messages() == []
    [info] = archive.messages()
    assert archive.emailIds([info.uid]) == {info.uid: emailId}
    assert result(account(store).findEmail(emailId)) == ("Archive", info.uid)
    inbox.close()
    archive.close()


def test_dovecot_guid_field_is_the_guid(root):
    """A uidlist record's G field (Dovecot: a GUID that is not the file name) wins."""
    store = newStore(root)
    result(store.getAccount(USER))
    path = acct(root)
    name = "1700000000.M1P1.elsewhere,S=50,W=52"
    with open(os.path.join(path, "cur", name + ":2,S"), "wb") as f:
        f.write(msg(1))
    with open(os.path.join(path, "dovecot-uidlist")) as f:
        header = f.readline()
    guid = "0123456789abcdef0123456789abcdef"
    with open(os.path.join(path, "dovecot-uidlist"), "w") as f:
        f.write(header.replace(" N1 ", " N8 ") + f"7 G{guid} :{name}\n")
    inbox = openf(store)
    assert inbox.emailIds([7]) == {7: emailIdOf(guid)}
    assert result(account(store).findEmail(emailIdOf(guid))) == (INBOX, 7)
    assert result(account(store).findEmail(emailIdOf(name))) is None
    inbox.close()


def test_mailbox_id_is_the_uidlist_guid_and_is_added_when_missing(root):
    store = newStore(root)
    inbox = openf(store)
    path = os.path.join(acct(root), "dovecot-uidlist")
    with open(path) as f:
        header = f.readline().split()
    assert "G" + inbox.mailboxId in header
    inbox.close()
    # An old uidlist without a GUID gets one, which then stays.
    with open(path, "w") as f:
        f.write("1 4242 1\n")
    store = newStore(root)
    first = openf(store)
    assert len(first.mailboxId) == 32
    first.close()
    again = openf(newStore(root))
    assert again.mailboxId == first.mailboxId
    again.close()


def test_ids_survive_a_lost_or_corrupt_uidlist(root):
    """The ids are in the file names: a rebuilt uidlist (new UIDVALIDITY) keeps them."""
    store = newStore(root)
    inbox = openf(store)
    uids = [result(inbox.append(msg(n))) for n in range(5)]
    byName = {}
    for uid, emailId in inbox.emailIds(uids).items():
        byName[fileOf(None, uid, inbox)[4:].partition(":")[0]] = emailId
    inbox.close()
    path = os.path.join(acct(root), "dovecot-uidlist")
    for damage in ("delete", "corrupt"):
        if damage == "delete":
            os.unlink(path)
        else:
            with open(path, "w") as f:
                f.write("garbage\n")
        store = newStore(root)
        inbox = openf(store)
        infos = inbox.messages()
        ids = inbox.emailIds([i.uid for i in infos])
        assert sorted(ids.values()) == sorted(byName.values())
        for emailId in byName.values():
            assert result(account(store).findEmail(emailId)) is not None
        inbox.close()


def test_find_email_opens_no_message_file(root, monkeypatch):
    store = newStore(root)
    result(account(store).createFolder("Lists"))
    emailIds = []
    for name in (INBOX, "Lists"):
        folder = openf(store, name)
        uids = [result(folder.append(msg(n))) for n in range(20)]
        emailIds += list(folder.emailIds(uids).items())
        folder.close()
    store = newStore(root)  # nothing loaded, nothing cached
    opened = []
    realOpen, realOsOpen = builtins.open, os.open

    def spyOpen(file, *a, **kw):
        opened.append(os.fspath(file) if not isinstance(file, int) else file)
        return realOpen(file, *a, **kw)

    def spyOsOpen(file, *a, **kw):
        opened.append(os.fspath(file))
        return realOsOpen(file, *a, **kw)

    monkeypatch.setattr(builtins, "open", spyOpen)
    monkeypatch.setattr(os, "open", spyOsOpen)
    acc = account(store)
    for uid, emailId in emailIds:
        assert result(acc.findEmail(emailId))[1] == uid
    monkeypatch.undo()
    messageFiles = [p for p in opened if isinstance(p, str) and ("/cur/" in p or "/new/" in p)]
    assert messageFiles == []
    assert opened  # the uidlists were read
    # The second round reads no uidlist again: nothing changed.
    locator = acc.locator
    reads = locator.uidlistReads
    for _, emailId in emailIds:
        result(acc.findEmail(emailId))
    assert locator.uidlistReads == reads


def test_email_ids_survive_kill_9(root):
    store = newStore(root)
    result(store.getAccount(USER))
    reported = {}
    for round_ in range(2):
        p = child(root, USER, f"k{round_}", "100000", "ids")
        # Killed after a number of reported deliveries (an event, not a time).
        lines = [p.stdout.readline() for _ in range(6 + 9 * round_)]
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate()
        for line in b"".join(lines + [out]).decode().splitlines():
            _, _, uid, emailId = line.split()
            reported[int(uid)] = emailId
    assert len(reported) >= 21
    store = newStore(root)
    inbox = openf(store)
    ids = inbox.emailIds(list(reported))
    assert {u: ids.get(u) for u in reported} == reported
    assert len(set(inbox.emailIds([i.uid for i in inbox.messages()]).values())) == len(inbox.messages())
    acc = account(store)
    for uid, emailId in reported.items():
        assert result(acc.findEmail(emailId)) == (INBOX, uid)
    inbox.close()
