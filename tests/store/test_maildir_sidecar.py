"""
The Maildir store's modseq sidecar and uidlist: modseqs survive a reopen and
the sidecar's loss, lines lost in a crash, compaction of both (unknown
uidlist fields kept).  Deferreds are driven as described in
``tests/store/helpers.py``.
"""

from __future__ import annotations

import os

from mailnet.store.interfaces import SEEN
from mailnet.store.maildir import tuning
from mailnet.store.maildir.modlog import ModLog
from tests.store.helpers import msg, result
from tests.store.maildir_helpers import CRLF_BODY, acct, makeMaildir, newStore, openf, write
from tests.store.maildir_helpers import root  # noqa: F401 (a fixture)


def test_modseq_survives_reopen_and_loss(root):
    store = newStore(root)
    folder = openf(store)
    uids = [result(folder.append(msg(i))) for i in range(3)]
    result(folder.setFlags(uids[:1], [SEEN]))
    result(folder.expunge(uids[2:]))
    hms = folder.highestModSeq
    mods = {i.uid: i.modseq for i in folder.messages()}
    mark = folder.highestModSeq - 1
    assert folder.expungedSince(mark) == [uids[2]]
    folder.close()
    store.close()
    again = openf(newStore(root))
    assert again.highestModSeq == hms  # a clean close: no need to skip ahead
    assert {i.uid: i.modseq for i in again.messages()} == mods
    assert again.expungedSince(mark) == [uids[2]]
    again.close()
    # Losing the sidecar: modseqs restart above anything handed out, and
    # old expunges are unknown (QRESYNC falls back to a full resync).
    os.unlink(os.path.join(acct(root), ModLog.NAME))
    lost = openf(newStore(root))
    assert lost.highestModSeq > hms
    assert all(i.modseq > hms for i in lost.messages())
    assert lost.expungedSince(mark) is None
    assert [i.uid for i in lost.messages()] == uids[:2]
    lost.close()


def test_sidecar_lines_lost_in_a_crash(root):
    """
    Sidecar appends are fsynced only when a new reservation is taken; an OS
    crash may lose the lines after it.  Simulate that by cutting the file
    after its last reservation: modseqs must still never go backwards, and
    what the lost lines said is found again from the files.
    """
    store = newStore(root)
    folder = openf(store)
    uids = [result(folder.append(msg(i))) for i in range(3)]
    path = os.path.join(acct(root), ModLog.NAME)
    text = open(path).read()
    cut = text.rindex("\nr ") + 1
    cut = text.index("\n", cut) + 1
    result(folder.setFlags([uids[0]], [SEEN]))
    result(folder.expunge([uids[1]]))
    reported = folder.highestModSeq
    assert len(open(path).read()) > cut  # these lines were not synced
    folder.close()
    with open(path, "r+") as f:
        f.truncate(cut)
    again = openf(newStore(root))
    assert again.highestModSeq > reported
    infos = {i.uid: i for i in again.messages()}
    assert sorted(infos) == [uids[0], uids[2]]
    assert infos[uids[0]].flags == {SEEN} and infos[uids[0]].modseq > reported
    assert again.expungedSince(reported - 5) == [uids[1]]
    again.close()


def test_sidecar_compaction(root, monkeypatch):
    monkeypatch.setattr(tuning, "MODLOG_SLACK", 50)
    monkeypatch.setattr(tuning, "KEEP_EXPUNGED", 5)
    store = newStore(root)
    folder = openf(store)
    uids = [result(folder.append(msg(i))) for i in range(12)]
    for u in uids[:10]:
        result(folder.expunge([u]))
    for i in range(200):
        result(folder.setFlags([uids[10]], [SEEN] if i % 2 else []))
    path = os.path.join(acct(root), ModLog.NAME)
    lines = open(path).read().splitlines()
    assert len(lines) < 120
    assert lines[0].startswith("mailnet-modseq 1 V%d E" % folder.uidValidity)
    floor = int(lines[0].split(" E")[1])
    assert floor > 1  # the oldest expunges were forgotten
    hms = folder.highestModSeq
    mods = {i.uid: (i.modseq, i.flags) for i in folder.messages()}
    assert folder.expungedSince(floor) == uids[5:10]
    folder.close()
    store.close()
    again = openf(newStore(root))
    assert again.highestModSeq == hms
    assert {i.uid: (i.modseq, i.flags) for i in again.messages()} == mods
    assert again.expungedSince(floor) == uids[5:10]
    assert again.expungedSince(floor - 1) is None
    again.close()


def test_uidlist_compaction_keeps_unknown_fields(root):
    a = acct(root)
    makeMaildir(a)
    write(f"{a}/cur/5.x.host,W={len(CRLF_BODY)}:2,", CRLF_BODY)
    lines = [b"3 V77 N2000 G0123456789abcdef0123456789abcdef Qkeep\n"]
    lines += [b"%d :gone%d.host\n" % (i, i) for i in range(1, 1500)]
    lines.append(b"1600 G0011 Xodd :5.x.host,W=%d\n" % len(CRLF_BODY))
    write(f"{a}/dovecot-uidlist", b"".join(lines))
    folder = openf(newStore(root))
    assert [i.uid for i in folder.messages()] == [1600]
    text = open(f"{a}/dovecot-uidlist").read()
    assert text.splitlines() == [
        "3 V77 N2000 G0123456789abcdef0123456789abcdef Qkeep",
        f"1600 G0011 Xodd :5.x.host,W={len(CRLF_BODY)}",
    ]
    assert not os.path.exists(f"{a}/dovecot-uidlist.lock")
    uid = result(folder.append(msg()))
    assert uid == 2000
    folder.close()
