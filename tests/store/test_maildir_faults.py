"""
The Maildir store under faults: a full disk in the middle of a write
(injected: os.write / os.fdatasync / os.fsync raise ENOSPC at the Nth call
inside the store) leaves memory and disk in agreement, and a restart reads
the same keywords, flags and UIDs; corrupt index files are reported, set
aside and rebuilt; entries that are not regular files are skipped.
"""

from __future__ import annotations

import errno
import os

import pytest

from mailnet.store.interfaces import FLAGGED, INBOX, SEEN
from tests.store.helpers import failure, result
from tests.store.maildir_helpers import USER, acct, deliver, newStore, openf, read, root, settle  # noqa: F401 (root: fixture)

CRLF = b"Subject: hi\r\n\r\nbody\r\n"


class DiskFull:
    """Make os.write, os.fdatasync and os.fsync fail with ENOSPC from the Nth call on."""

    def __init__(self, monkeypatch, after=0, calls=("write", "fdatasync", "fsync")):
        self.count = 0
        self.after = after
        self.monkeypatch = monkeypatch
        for name in calls:
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(real))

    def _wrap(self, real):
        def fake(*args):
            self.count += 1
            if self.count > self.after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*args)

        return fake

    def stop(self):
        self.monkeypatch.undo()


def flagsOnDisk(root):
    """{uid: flags} as a fresh process sees them."""
    store = newStore(root)
    folder = openf(store)
    out = {i.uid: i.flags for i in folder.messages()}
    folder.close()
    result(store.close())
    return out


def leftovers(path):
    return sorted(n for n in os.listdir(path) if ".tmp" in n)


@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_keyword_save_on_full_disk_rolls_back(root, monkeypatch, after):
    settle(monkeypatch)
    store = newStore(root)
    uid = deliver(store, CRLF)
    folder = openf(store)
    faults = DiskFull(monkeypatch, after=after)
    d = folder.setFlags([uid], {"$Junk"}, "add")
    faults.stop()
    assert failure(d, OSError).errno == errno.ENOSPC
    assert leftovers(acct(root)) == []
    # The keyword table in memory is back to what is on disk: the next
    # keyword is really written, under a letter of its own.
    result(folder.refresh())
    before = folder.get(uid).flags
    result(folder.setFlags([uid], {"Important"}, "add"))
    assert folder.get(uid).flags == before | {"Important"}
    with open(os.path.join(acct(root), "dovecot-keywords")) as f:
        lines = f.read().splitlines()
    assert "Important" in [line.split(" ", 1)[1] for line in lines]
    assert len({line.split(" ")[0] for line in lines}) == len(lines)
    folder.close()
    result(store.close())
    assert flagsOnDisk(root) == {uid: before | {"Important"}}


def test_flag_change_on_full_disk_memory_matches_disk(root, monkeypatch):
    settle(monkeypatch)
    store = newStore(root)
    uids = [deliver(store, CRLF) for _ in range(3)]
    folder = openf(store)
    result(folder.setFlags(uids[:1], {"$Label1"}, "add"))
    seen = []
    for after in range(0, 6):
        faults = DiskFull(monkeypatch, after=after)
        d = folder.setFlags(uids, {SEEN, FLAGGED, "$Label2"}, "add")
        faults.stop()
        box = []
        d.addBoth(box.append)
        seen.append(box[0])
        # Whatever happened, a refresh makes memory agree with the disk.
        result(folder.refresh())
        mem = {i.uid: i.flags for i in folder.messages()}
        folder.close()
        result(store.close())
        assert flagsOnDisk(root) == mem
        store = newStore(root)
        folder = openf(store)
        assert leftovers(acct(root)) == []
    assert any(isinstance(b, Exception) or hasattr(b, "value") for b in seen)
    folder.close()
    result(store.close())


@pytest.mark.parametrize("after", range(0, 8))
def test_delivery_on_full_disk_reuses_no_uid(root, monkeypatch, after):
    settle(monkeypatch)
    store = newStore(root)
    first = deliver(store, CRLF)
    folder = openf(store)
    faults = DiskFull(monkeypatch, after=after)
    d = store.newDelivery()
    d.addRecipient(USER, INBOX)
    d.write(CRLF)
    c = d.commit(flags=("$Junk",))
    faults.stop()
    box = []
    c.addBoth(box.append)
    result(folder.refresh())
    mem = {i.uid: i.flags for i in folder.messages()}
    failed = hasattr(box[0], "value")
    if failed:
        assert mem == {first: frozenset()}
    folder.close()
    result(store.close())
    assert flagsOnDisk(root) == mem
    # A later delivery gets a UID above every one given out.
    store = newStore(root)
    uid = deliver(store, CRLF, flags=("Other",))
    assert uid > max(mem)
    folder = openf(store)
    assert folder.get(uid).flags == {"Other"}
    for u, flags in mem.items():
        assert folder.get(u).flags == flags
    folder.close()
    result(store.close())
    assert leftovers(acct(root)) == []


def test_copy_on_full_disk(root, monkeypatch):
    settle(monkeypatch)
    store = newStore(root)
    account = result(store.getAccount(USER))
    result(account.createFolder("Saved"))
    uid = deliver(store, CRLF, flags=("$Junk",))
    src = openf(store)
    dst = openf(store, "Saved")
    faults = DiskFull(monkeypatch, after=0)
    d = src.copyTo([uid], dst)
    faults.stop()
    assert failure(d, OSError).errno == errno.ENOSPC
    result(dst.refresh())
    assert list(dst.messages()) == []
    result(src.copyTo([uid], dst))
    result(dst.refresh())
    (copied,) = dst.messages()
    assert copied.flags == {"$Junk"}
    assert read(dst, copied.uid) == CRLF
    for f in (src, dst):
        f.close()
    result(store.close())


# Corrupt index files


@pytest.mark.parametrize(
    "name, data",
    [
        ("dovecot-uidlist", b"3 Vxyz Nabc\n1 :1.x.host\n"),
        ("dovecot-uidlist", b"\x00\xff garbage\n"),
        ("mailnet-modseq", b"mailnet-modseq 1 Vnot-a-number E0\n"),
        ("mailnet-modseq", b"\xff\xfe\n"),
        ("dovecot-keywords", b"0 $Junk\nnot a line\n99 Big\n1 a(b\n0 Again\n"),
    ],
)
def test_corrupt_index_file_is_set_aside(root, monkeypatch, name, data):
    settle(monkeypatch)
    store = newStore(root)
    uid = deliver(store, CRLF)
    result(store.close())
    path = os.path.join(acct(root), name)
    with open(path, "wb") as f:
        f.write(data)
    store = newStore(root)
    folder = openf(store)
    assert len(folder.messages()) == 1
    result(folder.setFlags([folder.messages()[0].uid], {"Kw"}, "add"))
    folder.close()
    result(store.close())
    if name != "dovecot-keywords":
        with open(path + ".corrupt", "rb") as f:
            assert f.read() == data
    assert uid


@pytest.mark.parametrize("name", ["dovecot-uidlist", "mailnet-modseq", "dovecot-keywords"])
def test_index_file_that_is_a_directory(root, monkeypatch, name):
    settle(monkeypatch)
    store = newStore(root)
    deliver(store, CRLF)
    result(store.close())
    path = os.path.join(acct(root), name)
    os.unlink(path) if os.path.exists(path) else None
    os.mkdir(path)
    store = newStore(root)
    folder = openf(store)
    assert len(folder.messages()) == 1
    result(folder.setFlags([folder.messages()[0].uid], {"Kw"}, "add"))
    assert folder.messages()[0].flags == {"Kw"}
    folder.close()
    result(store.close())
    assert os.path.isdir(path + ".corrupt")


def test_non_regular_entries_are_skipped(root, monkeypatch, tmp_path):
    settle(monkeypatch)
    store = newStore(root)
    uid = deliver(store, CRLF)
    a = acct(root)
    os.mkdir(os.path.join(a, "new", "1.dir.host"))
    os.mkfifo(os.path.join(a, "cur", "2.fifo.host:2,S"))
    (tmp_path / "outside").write_bytes(b"Subject: outside\r\n\r\nsecret\r\n")
    os.symlink(tmp_path / "outside", os.path.join(a, "new", "3.link.host"))
    folder = openf(store)
    assert [i.uid for i in folder.messages()] == [uid]
    assert read(folder, uid) == CRLF
    os.rmdir(os.path.join(a, "new", "1.dir.host"))
    deliver(store, CRLF)
    result(folder.refresh())
    assert len(folder.messages()) == 2
    folder.close()
    result(store.close())
