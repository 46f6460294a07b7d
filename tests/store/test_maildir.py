"""
Maildir-specific behaviour: Dovecot compatibility, crashes, several
processes, the sidecar, the group committer.  Deferreds are driven as
described in ``tests/store/helpers.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from mailnet.store.interfaces import (
    DELETED,
    FLAGGED,
    INBOX,
    SEEN,
    InvalidFolderName,
    NoSuchAccount,
    TemporaryStoreError,
)
from mailnet.store.maildir import MaildirStore, tuning
from mailnet.store.maildir.delivery import MaildirDelivery
from mailnet.store.maildir.disk import Disk
from mailnet.store.maildir.dotlock import HOSTNAME
from mailnet.store.maildir.files import UidList
from mailnet.store.maildir.modlog import ModLog
from tests.store._deliver_proc import body as procBody
from tests.store.helpers import Recorder, ThreadedRunner, msg, result, syncRunner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER = "carol@example.test"


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "mail")


def newStore(root):
    return MaildirStore(root, runner=syncRunner)


def acct(root):
    return os.path.join(root, "example.test", "carol")


def openf(store, name=INBOX, user=USER):
    return result(result(store.getAccount(user)).openFolder(name))


def read(folder, uid):
    f = result(folder.openMessage(uid))
    try:
        return f.read()
    finally:
        f.close()


def deliver(store, data, user=USER, folder=INBOX, **kw):
    d = store.newDelivery()
    d.addRecipient(user, folder)
    d.write(data)
    return result(d.commit(**kw))[0][2]


def nonEmpty(directory):
    """Files with data (empty ones are made ahead of time for deliveries)."""
    return [n for n in os.listdir(directory) if os.path.getsize(os.path.join(directory, n))]


def settle(monkeypatch):
    """Trust directory mtimes at once (no 1.5 s settling window)."""
    monkeypatch.setattr(tuning, "DIR_SETTLE_SECS", -1)


def uidlistRecords(path):
    ul = UidList(path)
    _, records = ul.readNew()
    uids = [r[0] for r in records]
    assert uids == sorted(uids), "uidlist records must ascend"
    return ul, {base: uid for uid, base, _ in records}


# Hand-made Dovecot and mutt Maildirs

LF_BODY = b"From: a@example.test\nSubject: lf\n\nline one\nline two\n"
CRLF_BODY = LF_BODY.replace(b"\n", b"\r\n")


def makeMaildir(path, dirs=("cur", "new", "tmp")):
    for d in dirs:
        os.makedirs(os.path.join(path, d), exist_ok=True)


def write(path, data, mtime=None):
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_dovecot_maildir_keeps_uids_and_uidvalidity(root):
    a = acct(root)
    makeMaildir(a)
    s, w = len(LF_BODY), len(CRLF_BODY)
    n1 = f"1276528487.M364837P9451.kurkku,S={s},W={w}"
    n2 = "1276533073.M242911P3632.kurkku"  # no S=/W=: vsize in the record
    n3 = "1276540000.M1P2.kurkku"  # no record: gets a new UID
    write(f"{a}/cur/{n1}:2,Sb", LF_BODY, mtime=1_276_528_487)
    write(f"{a}/cur/{n2}:2,F", CRLF_BODY, mtime=1_276_533_073)
    write(f"{a}/new/{n3}", LF_BODY, mtime=1_276_540_000)
    write(f"{a}/dovecot-keywords", b"0 $Junk\n1 $NonJunk\n")
    write(
        f"{a}/dovecot-uidlist",
        b"3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1 Xfuture\n"
        + f"25006 :{n1}:2,S\n".encode()  # old Dovecot wrote the info too
        + f"25017 W{w} Zunknown :{n2}\n".encode(),
    )
    store = newStore(root)
    result(store.getAccount(USER, create=False))
    folder = openf(store)
    assert folder.uidValidity == 1275660208
    infos = {i.uid: i for i in folder.messages()}
    assert sorted(infos) == [25006, 25017, 25022]
    assert folder.uidNext == 25023
    assert infos[25006].flags == {SEEN, "$NonJunk"}
    assert infos[25017].flags == {FLAGGED}
    assert infos[25022].flags == frozenset()
    for uid in infos:
        assert infos[uid].size == w
        assert read(folder, uid) == CRLF_BODY
    assert infos[25006].internalDate == 1_276_528_487
    assert infos[25022].internalDate == 1_276_540_000
    # The uidlist is still Dovecot's, with the new record appended and
    # everything else (unknown fields too) kept.
    ul, byBase = uidlistRecords(a)
    assert (ul.uidValidity, ul.guid) == (1275660208, "3085f01b7f11094c501100008c4a11c1")
    assert byBase == {n1: 25006, n2: 25017, n3: 25022}
    text = open(f"{a}/dovecot-uidlist").read()
    assert "Xfuture" in text and "Zunknown" in text
    assert f"25022 W{w} :{n3}\n" in text
    # new/ was moved to cur/ (as Dovecot does), keeping the UID.
    assert os.listdir(f"{a}/new") == []
    assert f"{n3}:2," in os.listdir(f"{a}/cur")
    folder.close()
    # A fresh process sees the same.
    again = openf(newStore(root))
    assert {i.uid: i.flags for i in again.messages()} == {i.uid: i.flags for i in infos.values()}
    assert again.uidValidity == 1275660208
    again.close()


def test_v1_uidlist_and_crlf_lines(root):
    a = acct(root)
    makeMaildir(a)
    write(f"{a}/cur/100.M1P1.host:2,S", CRLF_BODY)
    write(f"{a}/cur/101.M1P1.host:2,", LF_BODY)
    write(f"{a}/dovecot-uidlist", b"1 424242 9\r\n7 100.M1P1.host:2,S\r\n8 101.M1P1.host\r\n")
    folder = openf(newStore(root))
    assert folder.uidValidity == 424242
    assert [(i.uid, i.size) for i in folder.messages()] == [(7, len(CRLF_BODY)), (8, len(CRLF_BODY))]
    assert read(folder, 8) == CRLF_BODY
    folder.close()


def test_mutt_maildir_without_uidlist(root):
    a = acct(root)
    makeMaildir(a)
    for i in range(3):
        write(f"{a}/cur/{1000 + i}.mutt.host:2,{'S' if i else ''}", LF_BODY + b"%d\n" % i)
    write(f"{a}/new/1003.mutt.host", LF_BODY)
    folder = openf(newStore(root))
    infos = folder.messages()
    assert [i.uid for i in infos] == [1, 2, 3, 4]
    assert [i.flags for i in infos] == [frozenset(), {SEEN}, {SEEN}, frozenset()]
    assert read(folder, 2) == CRLF_BODY + b"1\r\n"
    assert infos[1].size == len(CRLF_BODY) + 3
    validity = folder.uidValidity
    folder.close()
    again = openf(newStore(root))
    assert [i.uid for i in again.messages()] == [1, 2, 3, 4]
    assert again.uidValidity == validity
    again.close()


def test_files_from_other_programs_get_uids_in_arrival_order(root):
    """Names begin with numbers (seconds, M<usec> or a counter): UIDs follow
    their numeric order, not the string order ("M9" before "M10")."""
    a = acct(root)
    makeMaildir(a)
    order = [(1700000000, 9), (1700000000, 10), (1700000000, 100), (1700000001, 2)]
    for n, (secs, counter) in enumerate(order):
        write(f"{a}/new/{secs}.M{counter}P77.host", LF_BODY + b"%d\n" % n)
    folder = openf(newStore(root))
    assert [read(folder, i.uid)[-3:] for i in folder.messages()] == [b"0\r\n", b"1\r\n", b"2\r\n", b"3\r\n"]
    folder.close()


def test_broken_uidlist_is_recreated(root):
    a = acct(root)
    makeMaildir(a)
    write(f"{a}/cur/1.x.host:2,", CRLF_BODY)
    write(f"{a}/dovecot-uidlist", b"garbage\n")
    folder = openf(newStore(root))
    assert [i.uid for i in folder.messages()] == [1]
    ul, byBase = uidlistRecords(a)
    assert byBase == {"1.x.host": 1} and ul.uidValidity == folder.uidValidity
    folder.close()


# Our own format


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


# Changes by other programs


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


# The sidecar


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


# Crashes and other processes


def child(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store._deliver_proc", *args],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def test_kill_during_delivery_leaves_nothing(root):
    store = newStore(root)
    result(store.getAccount(USER))
    p = child(root, USER, "k", "1", "partial")
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGKILL)
    p.wait()
    folder = openf(newStore(root))
    assert folder.messages() == []
    assert os.listdir(os.path.join(acct(root), "new")) == []
    assert len(nonEmpty(os.path.join(root, ".tmp"))) == 1  # garbage, cleaned after 36 h
    folder.close()


def test_kill_at_random_moments(root):
    store = newStore(root)
    result(store.getAccount(USER))
    reported = {}
    for round_ in range(3):
        p = child(root, USER, f"r{round_}", "100000")
        # Kill at a different point each round, counted in reported
        # deliveries (an event) rather than seconds, so load cannot starve it.
        lines = [p.stdout.readline() for _ in range(5 + 7 * round_)]
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate()
        for line in b"".join(lines + [out]).decode().splitlines():
            tag, n, uid = line.split()
            reported[int(uid)] = procBody(tag, int(n))
    assert reported, "the child delivered nothing"
    folder = openf(newStore(root))
    infos = {i.uid: i for i in folder.messages()}
    # Every reported UID is there with its message; nothing half-written.
    for uid, data in reported.items():
        assert infos[uid].size == len(data)
        assert read(folder, uid) == data
    for uid, info in infos.items():
        data = read(folder, uid)
        assert len(data) == info.size == 4000 + (len(data) - 4000)
        tag, n = data.split(b"\r\n")[1].split(b" ")[1:3]
        assert data == procBody(tag.decode(), int(n))
    folder.close()


def test_two_processes_deliver_at_once(root):
    store = newStore(root)
    result(store.getAccount(USER))
    procs = [child(root, USER, tag, "200") for tag in ("p", "q")]
    outs = [p.communicate(timeout=120)[0].decode().splitlines() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    uids = {}
    for lines in outs:
        assert len(lines) == 200
        for line in lines:
            tag, n, uid = line.split()
            assert int(uid) not in uids, "a UID was handed out twice"
            uids[int(uid)] = procBody(tag, int(n))
    assert len(uids) == 400
    ul, byBase = uidlistRecords(acct(root))
    assert sorted(byBase.values()) == sorted(uids)
    folder = openf(newStore(root))
    assert sorted(i.uid for i in folder.messages()) == sorted(uids)
    for uid in list(uids)[::37]:
        assert read(folder, uid) == uids[uid]
    assert len({i.modseq for i in folder.messages()}) >= 1
    folder.close()


def test_stale_lock_of_dead_process_is_broken(root):
    store = newStore(root)
    result(store.getAccount(USER))
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    lock = os.path.join(acct(root), "dovecot-uidlist.lock")
    write(lock, f"{p.pid}:{HOSTNAME}".encode(), mtime=time.time() - 10)
    assert deliver(store, msg()) >= 1
    assert not os.path.exists(lock)


def test_live_lock_blocks(root):
    from mailnet.store.maildir import dotlock

    store = newStore(root)
    result(store.getAccount(USER))
    path = os.path.join(acct(root), "dovecot-uidlist")
    held = dotlock.acquire(path)
    try:
        with pytest.raises(TemporaryStoreError):
            dotlock.acquire(path, timeout=0.2)
    finally:
        held.release()
    dotlock.acquire(path, timeout=0.2).release()


# The group committer with real threads


def test_group_commit_with_threads(root):
    runner = ThreadedRunner()
    store = MaildirStore(root, runner=runner)
    account = runner.wait(store.getAccount(USER))
    folder = runner.wait(account.openFolder(INBOX))
    rec = Recorder()
    folder.addListener(rec)
    placements = []
    real = Disk.addMessages

    def counting(self, jobs):
        placements.append((self.path, len(jobs)))
        return real(self, jobs)

    Disk.addMessages = counting
    try:
        ds = []
        for i in range(40):
            d = store.newDelivery()
            d.addRecipient(USER)
            d.addRecipient(USER, "Archive")
            d.write(msg(i))
            ds.append(d.commit())
        results = [runner.wait(d) for d in ds]
    finally:
        Disk.addMessages = real
    assert sum(n for _, n in placements) == 80
    assert len(placements) < 80, "commits were grouped"
    inbox = [r[0][2] for r in results]
    assert len(set(inbox)) == 40
    added = [u for kind, _, uids in rec.events for u in uids if kind == "added"]
    assert sorted(added) == sorted(inbox)
    for i, uid in enumerate(inbox[:5]):
        assert runner.wait(folder.openMessage(uid)).read() == msg(i)
    folder.close()
    runner.wait(store.getAccount(USER))


def test_small_and_streamed_deliveries(root):
    """
    A message that fits the buffer reaches the disk only in the committer
    (nothing in .tmp before commit); a bigger one is streamed into .tmp and
    its tail written at commit; with two recipients the file is linked and
    the tmp name removed; an aborted streamed delivery leaves nothing.
    """
    store = newStore(root)
    folder = openf(store)
    tmp = os.path.join(root, ".tmp")
    small = msg(1, b"x" * 1000 + b"\r\n")
    d = store.newDelivery()
    d.addRecipient(USER)
    d.write(small)
    assert nonEmpty(tmp) == []
    [(_, _, uid)] = result(d.commit())
    assert read(folder, uid) == small
    line = b"y" * 98 + b"\r\n"
    big = msg(2) + line * (3 * MaildirDelivery.BUFFER // len(line) + 7)
    d = store.newDelivery()
    d.addRecipient(USER)
    d.addRecipient(USER, "Archive")
    for i in range(0, len(big), 10000):
        d.write(big[i:i + 10000])
    assert len(nonEmpty(tmp)) == 1  # streamed
    (_, _, uid), (_, _, archived) = result(d.commit())
    assert read(folder, uid) == big
    assert read(openf(store, "Archive"), archived) == big
    assert nonEmpty(tmp) == []
    d = store.newDelivery()
    d.addRecipient(USER)
    d.write(big)
    assert len(nonEmpty(tmp)) == 1
    d.abort()
    assert nonEmpty(tmp) == []
    result(folder.refresh())
    assert [m.size for m in folder.messages()] == [len(small), len(big)]
    folder.close()


def test_folder_group_commit_leader_and_followers(root, monkeypatch):
    """
    _Disk.place: while one thread places, others queue their items and
    wait; the next round places all of them with one addMessages, and every
    thread gets back exactly its own items' UIDs.
    """
    import threading

    disk = Disk(None, os.path.join(root, "f"))
    calls = []
    inside = threading.Event()
    release = threading.Event()
    nextUid = [1]

    def addMessages(self, items):
        calls.append([job for job, _ in items])
        if len(calls) == 1:
            inside.set()
            assert release.wait(10)
        out = []
        for job, idx in items:
            out.append((job, idx, nextUid[0]))
            nextUid[0] += 1
        return out, None

    monkeypatch.setattr(Disk, "addMessages", addMessages)
    results = {}

    def placeOne(name):
        results[name] = disk.place([(name, 0)])

    leader = threading.Thread(target=placeOne, args=("a",))
    leader.start()
    assert inside.wait(10)
    followers = [threading.Thread(target=placeOne, args=(n,)) for n in ("b", "c", "d")]
    for t in followers:
        t.start()
    deadline = time.monotonic() + 10
    while len(disk.placeQueue) < 3:
        assert time.monotonic() < deadline, "followers did not queue"
        time.sleep(0.001)
    release.set()
    for t in [leader] + followers:
        t.join(10)
    assert calls[0] == ["a"]
    assert sorted(calls[1]) == ["b", "c", "d"] and len(calls) == 2
    for name, (placed, delta) in results.items():
        assert [(job, idx) for job, idx, _ in placed] == [(name, 0)]
    assert sorted(placed[0][2] for placed, _ in results.values()) == [1, 2, 3, 4]
    assert not disk.placing and disk.placeQueue == []


def test_folder_group_commit_failure_reaches_every_follower(root, monkeypatch):
    disk = Disk(None, os.path.join(root, "f"))

    def addMessages(self, items):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Disk, "addMessages", addMessages)
    outcome = disk.place([("a", 0)])
    assert isinstance(outcome, OSError)
    assert not disk.placing


def test_concurrent_operations_with_threads(root):
    """
    Deliveries, flag changes, expunges, copies and refreshes all in flight
    at once on real threads: the listeners' story adds up to the final
    state, which is also what a fresh process reads from disk.
    """
    import random

    rnd = random.Random(7)
    runner = ThreadedRunner()
    store = MaildirStore(root, runner=runner)
    account = runner.wait(store.getAccount(USER))
    one = runner.wait(account.openFolder(INBOX))
    two = runner.wait(account.openFolder("inbox"))
    archive = runner.wait(account.openFolder("Archive"))

    class Story:
        def __init__(self):
            self.state = {}
            self.modseqs = []

        def messagesAdded(self, folder, infos):
            for i in infos:
                assert i.uid not in self.state
                self.state[i.uid] = i
                self.modseqs.append(i.modseq)

        def flagsChanged(self, folder, infos):
            for i in infos:
                assert i.uid in self.state
                self.state[i.uid] = i

        def messagesExpunged(self, folder, uids):
            for uid in uids:
                del self.state[uid]

    story = Story()
    two.addListener(story)
    pending = []
    for i in range(30):
        d = store.newDelivery()
        d.addRecipient(USER)
        d.write(msg(i))
        pending.append(d.commit())
        if i % 3 == 0:
            pending.append(one.append(msg(100 + i), flags=[SEEN]))
        uids = [m.uid for m in one.messages()]
        if uids:
            pick = rnd.sample(uids, min(3, len(uids)))
            op = i % 4
            if op == 0:
                pending.append(one.setFlags(pick, [FLAGGED, "k%d" % (i % 3)], "add"))
            elif op == 1:
                pending.append(two.expunge(pick[:1]))
            elif op == 2:
                pending.append(one.copyTo(pick, archive))
            else:
                pending.append(two.refresh())
    for d in pending:
        runner.wait(d)
    runner.wait(one.refresh())
    final = {m.uid: m for m in one.messages()}
    assert story.state == final
    assert {m.uid: m for m in two.messages()} == final
    assert one.highestModSeq >= max(m.modseq for m in final.values())
    archived = {m.uid: m for m in archive.messages()}
    for h in (one, two, archive):
        h.close()
    runner.wait(store.close())
    fresh = newStore(root)
    assert {m.uid: m for m in openf(fresh).messages()} == final
    assert {m.uid: m for m in openf(fresh, "Archive").messages()} == archived


def test_failed_placement_leaves_nothing_and_reuses_no_uid(root, monkeypatch):
    from mailnet.store.maildir import files

    store = newStore(root)
    folder = openf(store)
    first = deliver(store, msg(1))
    real = files.appendDurably

    def broken(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "appendDurably", broken)
    d = store.newDelivery()
    d.addRecipient(USER)
    d.write(msg(2))
    with pytest.raises(TemporaryStoreError):
        result(d.commit())
    monkeypatch.setattr(files, "appendDurably", real)
    files = os.listdir(os.path.join(acct(root), "new")) + os.listdir(os.path.join(acct(root), "cur"))
    assert len(files) == 1, "the failed delivery left its file behind"
    assert nonEmpty(os.path.join(root, ".tmp")) == []
    result(folder.refresh())
    assert [m.uid for m in folder.messages()] == [first]
    second = deliver(store, msg(3))
    assert second > first
    assert read(folder, second) == msg(3)
    folder.close()
    again = openf(newStore(root))
    assert [m.uid for m in again.messages()] == [first, second]
    again.close()


def test_empty_stale_lock_is_broken(root):
    store = newStore(root)
    result(store.getAccount(USER))
    lock = os.path.join(acct(root), "dovecot-uidlist.lock")
    write(lock, b"", mtime=time.time() - 10)
    assert deliver(store, msg()) >= 1


def test_keywords_are_mapped_per_folder(root):
    store = newStore(root)
    account = result(store.getAccount(USER))
    a = acct(root)
    # Archive already knows other keywords at other letters.
    write(os.path.join(a, ".Archive", "dovecot-keywords"), b"0 $Other\n1 Work\n")
    inbox = openf(store)
    archive = openf(store, "Archive")
    uid = result(inbox.append(msg(), flags=["work", "$Junk"]))
    [(_, copied)] = result(inbox.copyTo([uid], archive))
    assert archive.get(copied).flags == {"Work", "$Junk"}
    names = os.listdir(os.path.join(a, ".Archive", "cur"))
    assert len(names) == 1 and names[0].endswith(":2,bc")
    assert open(os.path.join(a, ".Archive", "dovecot-keywords")).read() == "0 $Other\n1 Work\n2 $Junk\n"
    inbox.close()
    archive.close()
    del account


def test_forwarded_is_a_keyword_letter_as_in_dovecot(root):
    # Dovecot reads only D F R S T and keyword letters: $Forwarded as "P"
    # was invisible to it.  "P" (mutt's "passed") still reads as $Forwarded.
    store = newStore(root)
    folder = openf(store)
    uid = result(folder.append(msg(), flags=["$Forwarded"]))
    [name] = os.listdir(os.path.join(acct(root), "cur"))
    assert name.endswith(":2,a")
    assert open(os.path.join(acct(root), "dovecot-keywords")).read() == "0 $Forwarded\n"
    folder.close()
    base = name.split(":")[0]
    cur = os.path.join(acct(root), "cur")
    os.rename(os.path.join(cur, name), os.path.join(cur, base + ":2,PS"))
    folder = openf(newStore(root))
    assert folder.get(uid).flags == {"$Forwarded", SEEN}
    # While $Forwarded stays, "P" stays (for mutt) and the letter is added
    # (for Dovecot); when it goes, both go.
    result(folder.setFlags([uid], [FLAGGED], "add"))
    assert os.listdir(cur) == [base + ":2,FPSa"]
    result(folder.setFlags([uid], ["$Forwarded"], "remove"))
    assert os.listdir(cur) == [base + ":2,FS"]
    assert folder.get(uid).flags == {FLAGGED, SEEN}
    folder.close()


def test_forwarded_without_a_free_letter_is_p(root):
    store = newStore(root)
    result(store.getAccount(USER))
    write(os.path.join(acct(root), "dovecot-keywords"), "".join(f"{i} k{i}\n" for i in range(26)).encode())
    folder = openf(store)
    uid = result(folder.append(msg(), flags=["$Forwarded", "k3"]))
    [name] = os.listdir(os.path.join(acct(root), "cur"))
    assert name.endswith(":2,Pd")
    assert folder.get(uid).flags == {"$Forwarded", "k3"}
    folder.close()


def test_copy_does_not_carry_the_source_folders_keyword_letters(root):
    # Letters are per folder: "c" in INBOX means nothing in a new folder,
    # and must not come to mean the next keyword that folder learns.
    store = newStore(root)
    account = result(store.getAccount(USER))
    result(account.createFolder("Work"))
    inbox = openf(store)
    work = openf(store, "Work")
    for n, kw in enumerate(["k0", "k1", "k2"]):
        result(inbox.append(msg(n), flags=[kw]))
    [uid] = [m.uid for m in inbox.messages() if m.flags == {"k2"}]
    [(_, copied)] = result(inbox.copyTo([uid], work))
    [(_, moved)] = result(inbox.moveTo([uid - 1], work))
    cur = os.path.join(acct(root), ".Work", "cur")
    assert sorted(n.split(":2,")[1] for n in os.listdir(cur)) == ["a", "b"]
    other = result(work.append(msg(9), flags=["x", "y", "z"]))
    work.close()
    work = openf(newStore(root), "Work")
    assert {m.uid: m.flags for m in work.messages()} == {copied: {"k2"}, moved: {"k1"}, other: {"x", "y", "z"}}
    inbox.close()
    work.close()


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


def test_dovecot_v1_subscriptions(root):
    store = newStore(root)
    account = result(store.getAccount(USER))
    result(account.createFolder("Lists/Python"))
    write(os.path.join(acct(root), "subscriptions"), b"INBOX\nLists.Python\nEntw&APw-rfe\n")
    subscribed = {f.name for f in result(account.listFolders()) if f.subscribed}
    assert subscribed == {INBOX, "Lists/Python"}
    result(account.setSubscribed("Trash", True))
    text = open(os.path.join(acct(root), "subscriptions"), "rb").read()
    assert text == b"V\t2\n\nINBOX\nLists\tPython\nEntw&APw-rfe\nTrash\n"
