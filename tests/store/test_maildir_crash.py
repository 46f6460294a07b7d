"""
The Maildir store and other processes: kill -9 during a delivery and at
random moments, two processes delivering at once, stale, live and empty
locks, a failed placement that leaves nothing and reuses no UID.  Deferreds
are driven as described in ``tests/store/helpers.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from mailnet.store.interfaces import TemporaryStoreError
from mailnet.store.maildir.dotlock import HOSTNAME
from tests.store._deliver_proc import body as procBody
from tests.store.helpers import msg, result
from tests.store.maildir_helpers import (USER, acct, child, deliver, newStore, nonEmpty, openf, read, uidlistRecords,
                                         write)
from tests.store.maildir_helpers import root  # noqa: F401 (a fixture)


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
