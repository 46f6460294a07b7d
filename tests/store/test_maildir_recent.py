"""
The Maildir store's ``mailnet-recent`` (``\\Recent``, RFC 3501 s2.3.2):
its format beside Dovecot's files, which it leaves alone; what a missing,
foreign or corrupt file means; saves through a thread pool land in order.
"""

from __future__ import annotations

import os

from mailnet.store.interfaces import INBOX
from mailnet.store.maildir import MaildirStore
from mailnet.store.maildir.recent import RECENT_FILE
from tests.store.helpers import ThreadedRunner, msg, result, syncRunner

USER = "carol@example.test"


def account(store):
    return result(store.getAccount(USER))


def openf(store, name=INBOX):
    return result(account(store).openFolder(name))


def inboxDir(root):
    return os.path.join(root, "example.test", "carol")


def recentFile(root):
    with open(os.path.join(inboxDir(root), RECENT_FILE), "rb") as f:
        return f.read()


def dovecotFiles(root):
    out = {}
    for name in ("dovecot-uidlist", "dovecot-keywords"):
        path = os.path.join(inboxDir(root), name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                out[name] = f.read()
    return out


def test_the_file_beside_dovecots(tmp_path):
    root = str(tmp_path / "mail")
    store = MaildirStore(root, runner=syncRunner)
    inbox = openf(store)
    uids = [result(inbox.append(msg(n))) for n in range(3)]
    assert not os.path.exists(os.path.join(inboxDir(root), RECENT_FILE))  # nothing claimed yet
    before = dovecotFiles(root)
    assert inbox.claimRecent(uids[-1]) == 1
    assert recentFile(root) == b"mailnet-recent 1 V%d R%d\n" % (inbox.uidValidity, uids[-1] + 1)
    assert dovecotFiles(root) == before  # Dovecot's files are not touched
    assert not [n for n in os.listdir(inboxDir(root)) if n.startswith(RECENT_FILE + ".")]
    # Nothing new claimed: nothing written.
    os.unlink(os.path.join(inboxDir(root), RECENT_FILE))
    inbox.claimRecent(uids[0])
    assert not os.path.exists(os.path.join(inboxDir(root), RECENT_FILE))
    inbox.close()
    result(store.close())


def test_foreign_and_corrupt_files(tmp_path):
    root = str(tmp_path / "mail")
    store = MaildirStore(root, runner=syncRunner)
    inbox = openf(store)
    uids = [result(inbox.append(msg(n))) for n in range(3)]
    validity = inbox.uidValidity
    inbox.close()
    result(store.close())
    path = os.path.join(inboxDir(root), RECENT_FILE)
    # Another UIDVALIDITY (the folder was made again): every message is recent.
    with open(path, "wb") as f:
        f.write(b"mailnet-recent 1 V%d R3\n" % (validity + 1))
    store = MaildirStore(root, runner=syncRunner)
    inbox = openf(store)
    assert inbox.firstRecentUid == 1
    inbox.close()
    result(store.close())
    # Garbage (a crash between write and rename): reported, nothing recent, no error.
    with open(path, "wb") as f:
        f.write(b"\0\0\0garbage")
    store = MaildirStore(root, runner=syncRunner)
    inbox = openf(store)
    assert inbox.firstRecentUid == uids[-1] + 1 == inbox.uidNext
    assert inbox.claimRecent(uids[-1]) == uids[-1] + 1
    inbox.close()
    result(store.close())


def test_saves_through_threads_land_in_order(tmp_path, monkeypatch):
    """Claims in a row while saves run in worker threads: one save waits at a
    time, it writes the value of when it runs, and a load after them (the
    folder's queue keeps the order) reads the last one."""
    root = str(tmp_path / "mail")
    runner = ThreadedRunner()
    store = MaildirStore(root, runner=runner)
    acc = runner.wait(store.getAccount(USER))
    inbox = runner.wait(acc.openFolder(INBOX))
    uids = [runner.wait(inbox.append(msg(n))) for n in range(6)]
    writes = []
    from mailnet.store.maildir import disk

    real = disk.writeFirstRecent
    monkeypatch.setattr(disk, "writeFirstRecent", lambda *a: writes.append(a[2]) or real(*a))
    for uid in uids:
        assert inbox.claimRecent(uid) == (1 if uid == uids[0] else uid)
    inbox.close()
    again = runner.wait(acc.openFolder(INBOX))
    assert again.firstRecentUid == uids[-1] + 1
    assert writes[-1] == uids[-1] + 1 and len(writes) <= 2, writes
    assert recentFile(root).endswith(b" R%d\n" % (uids[-1] + 1))
    again.close()
