"""
The Maildir store's own format: layout and file names, usernames that must
not escape the root, hard links for several recipients, flags in file names,
the internal date as mtime, renaming an open folder.  Deferreds are driven
as described in ``tests/store/helpers.py``.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from mailnet.store.interfaces import DELETED, FLAGGED, INBOX, SEEN, InvalidFolderName, NoSuchAccount
from tests.store.helpers import msg, result
from tests.store.maildir_helpers import USER, acct, deliver, newStore, nonEmpty, openf, read
from tests.store.maildir_helpers import root  # noqa: F401 (a fixture)


def test_layout_and_names(root):
    store = newStore(root)
    account = result(store.getAccount(USER))
    a = acct(root)
    for sub in ("cur", "new", "tmp"):
        assert os.path.isdir(os.path.join(a, sub))
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert os.path.isfile(os.path.join(a, "." + name, "maildirfolder"))
    result(account.createFolder("Archive/2024"))
    result(account.createFolder("Entw\u00fcrfe"))
    assert os.path.isdir(os.path.join(a, ".Archive.2024", "cur"))
    assert os.path.isdir(os.path.join(a, ".Entw&APw-rfe", "cur"))
    with pytest.raises(InvalidFolderName):
        result(account.createFolder("a.b"))
    subs = open(os.path.join(a, "subscriptions"), "rb").read()
    assert subs.startswith(b"V\t2\n\n") and b"INBOX\n" in subs and b"Sent\n" in subs
    result(account.setSubscribed("Archive/2024", True))
    assert b"Archive\t2024\n" in open(os.path.join(a, "subscriptions"), "rb").read()
    # Header of a new uidlist.
    line = open(os.path.join(a, "dovecot-uidlist")).readline()
    assert re.fullmatch(r"3 V\d+ N1 G[0-9a-f]{32}\n", line)


def test_bad_usernames_never_escape_root(root):
    store = newStore(root)
    for bad in ["../../etc@x", "a@../..", "..@example.test", "a/b@c"]:
        with pytest.raises(NoSuchAccount):
            result(store.getAccount(bad))
    d = store.newDelivery()
    with pytest.raises(NoSuchAccount):
        d.addRecipient("x@../../tmp")
    assert sorted(os.listdir(root)) == [".tmp"]


def test_delivery_file_names_and_hard_links(root):
    store = newStore(root)
    result(store.getAccount(USER))
    result(store.getAccount("dave@example.test"))
    d = store.newDelivery()
    d.addRecipient(USER)
    d.addRecipient("dave@example.test")
    d.addRecipient(USER, "Archive")
    data = msg(1, b"z" * 5000)
    d.write(data)
    before = time.time()
    res = result(d.commit(internalDate=1_500_000_000.25))
    names = []
    for user, folder, uid in res:
        base = acct(root) if user == USER else os.path.join(root, "example.test", "dave")
        path = base if folder == INBOX else os.path.join(base, "." + folder)
        [name] = os.listdir(os.path.join(path, "new"))
        assert re.fullmatch(r"\d+\.M\d+P\d+Q\d+\.[^/:]+,S=%d,W=%d" % (len(data), len(data)), name)
        names.append(os.path.join(path, "new", name))
    inodes = {os.stat(n).st_ino for n in names}
    assert len(inodes) == 1, "recipients share one file (hard links)"
    st = os.stat(names[0])
    assert st.st_nlink == 3 and st.st_mtime == pytest.approx(1_500_000_000.25, abs=0.01)
    assert nonEmpty(os.path.join(root, ".tmp")) == []
    assert time.time() - before < 5
    # Flags given at delivery: straight into cur/ with the info.
    uid = deliver(store, data, flags=[SEEN, "$Junk"])
    folder = openf(store)
    assert folder.get(uid).flags == {SEEN, "$Junk"}
    assert open(os.path.join(acct(root), "dovecot-keywords")).read() == "0 $Junk\n"
    assert any(n.endswith(":2,Sa") for n in os.listdir(os.path.join(acct(root), "cur")))
    folder.close()
    result(store.close())
    assert os.listdir(os.path.join(root, ".tmp")) == []


def test_flags_in_file_names(root):
    store = newStore(root)
    folder = openf(store)
    uid = result(folder.append(msg()))
    result(folder.setFlags([uid], [SEEN, DELETED, FLAGGED, "\\Answered", "\\Draft", "$Forwarded", "k1"]))
    [name] = os.listdir(os.path.join(acct(root), "cur"))
    assert name.endswith(":2,DFRSTab")
    keywords = open(os.path.join(acct(root), "dovecot-keywords")).read().splitlines()
    assert sorted(keywords) in (["0 $Forwarded", "1 k1"], ["0 k1", "1 $Forwarded"])
    result(folder.setFlags([uid], []))
    [name] = os.listdir(os.path.join(acct(root), "cur"))
    assert name.endswith(":2,")
    folder.close()


def test_internal_date_is_mtime(root):
    store = newStore(root)
    folder = openf(store)
    uid = result(folder.append(msg(), internalDate=1_234_567_890))
    [name] = os.listdir(os.path.join(acct(root), "new")) or os.listdir(os.path.join(acct(root), "cur"))
    sub = "new" if os.listdir(os.path.join(acct(root), "new")) else "cur"
    assert os.stat(os.path.join(acct(root), sub, name)).st_mtime == 1_234_567_890
    assert folder.get(uid).internalDate == 1_234_567_890
    folder.close()


def test_rename_open_folder_keeps_working(root):
    store = newStore(root)
    account = result(store.getAccount(USER))
    result(account.createFolder("Old/Kid"))
    folder = openf(store, "Old")
    uid = result(folder.append(msg()))
    result(account.renameFolder("Old", "New"))
    assert folder.name == "New"
    assert os.path.isdir(os.path.join(acct(root), ".New.Kid"))
    result(folder.setFlags([uid], [SEEN]))
    uid2 = result(folder.append(msg(2)))
    assert read(folder, uid2) == msg(2)
    folder.close()
    again = openf(newStore(root), "New")
    assert {m.uid: m.flags for m in again.messages()} == {uid: {SEEN}, uid2: frozenset()}
    again.close()
