"""
The Maildir store when other programs change the Maildir: moves and flag
renames keep UIDs, a flag change while closed bumps the modseq, and a
refresh or an open costs little when nothing changed.  Deferreds are driven
as described in ``tests/store/helpers.py``.
"""

from __future__ import annotations

import os

from mailnet.store.interfaces import FLAGGED, SEEN
from tests.store.helpers import Recorder, msg, result
from tests.store.maildir_helpers import (CRLF_BODY, LF_BODY, USER, acct, deliver, newStore, openf, read, settle,
                                         uidlistRecords, write)
from tests.store.maildir_helpers import root  # noqa: F401 (a fixture)


def test_external_moves_and_flag_renames_keep_uids(root, monkeypatch):
    settle(monkeypatch)
    store = newStore(root)
    result(store.getAccount(USER))
    a = acct(root)
    uid1 = deliver(store, msg(1))
    uid2 = deliver(store, msg(2))
    # Another program (mutt) moves one new/ file to cur/ with flags.
    [n1] = [n for n in os.listdir(f"{a}/new") if uid1 == uidlistRecords(a)[1][n]]
    os.rename(f"{a}/new/{n1}", f"{a}/cur/{n1}:2,S")
    folder = openf(store)
    assert folder.get(uid1).flags == {SEEN}
    assert folder.get(uid2).flags == frozenset()
    rec = Recorder()
    folder.addListener(rec)
    hms = folder.highestModSeq
    # Flag rename while open.
    os.rename(f"{a}/cur/{n1}:2,S", f"{a}/cur/{n1}:2,FS")
    result(folder.refresh())
    assert rec.events == [("flags", folder, [(uid1, {SEEN, FLAGGED})])]
    assert folder.get(uid1).modseq > hms
    # Deletion.
    rec.clear()
    [n2] = [n for n in os.listdir(f"{a}/cur") if not n.startswith(n1)]
    os.unlink(f"{a}/cur/{n2}")
    result(folder.refresh())
    assert rec.events == [("expunged", folder, [uid2])]
    assert folder.expungedSince(hms) == [uid2]
    # A new file dropped into new/.
    rec.clear()
    write(f"{a}/new/2000000000.mutt.host", LF_BODY)
    result(folder.refresh())
    [(kind, _, [uid3])] = rec.events
    assert kind == "added" and uid3 > uid2
    assert read(folder, uid3) == CRLF_BODY
    # Nothing changed: nothing reported.
    rec.clear()
    result(folder.refresh())
    assert rec.events == []
    folder.close()
    # And all of it survives a restart, UIDs and modseqs included.
    before = {i.uid: i for i in openf(store).messages()}
    again = openf(newStore(root))
    assert {i.uid: i for i in again.messages()} == before
    again.close()


def test_external_flag_change_while_closed_bumps_modseq(root):
    store = newStore(root)
    folder = openf(store)
    uid = result(folder.append(msg()))
    result(folder.setFlags([uid], [SEEN]))
    old = folder.get(uid)
    folder.close()
    a = acct(root)
    [name] = os.listdir(f"{a}/cur")
    os.rename(f"{a}/cur/{name}", f"{a}/cur/{name.split(':')[0]}:2,FS")
    again = openf(newStore(root))
    info = again.get(uid)
    assert info.flags == {SEEN, FLAGGED} and info.modseq > old.modseq
    again.close()


def test_refresh_is_cheap_when_nothing_changed(root, monkeypatch):
    settle(monkeypatch)
    store = newStore(root)
    folder = openf(store)
    for i in range(5):
        result(folder.append(msg(i)))
    result(folder.refresh())  # moves new/ to cur/
    result(folder.refresh())  # lists once more after its own moves
    calls = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        result(folder.refresh())
    assert calls == []
    folder.close()


def test_open_does_not_touch_every_message_file(root, monkeypatch):
    store = newStore(root)
    folder = openf(store)
    for i in range(300):
        deliver(store, msg(i))
    result(folder.refresh())  # moves new/ to cur/
    folder.close()
    seen = []
    realStat, realOpen = os.stat, os.open
    cur = os.path.join(acct(root), "cur") + "/"

    def stat(path, *a, **kw):
        if isinstance(path, str) and path.startswith(cur):
            seen.append(path)
        return realStat(path, *a, **kw)

    def osopen(path, *a, **kw):
        if isinstance(path, str) and path.startswith(cur):
            seen.append(path)
        return realOpen(path, *a, **kw)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "open", osopen)
    folder = openf(newStore(root))
    assert len(folder.messages()) == 300
    assert seen == []
    folder.close()
