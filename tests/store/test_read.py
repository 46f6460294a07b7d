"""
The Maildir store's read path: openMessage opens a file at the name the
index knows on the calling thread, and goes to a worker only when another
program renamed or deleted it since the last sync; LF files are served as
CRLF (whole when small, chunk by chunk when large).
"""

from __future__ import annotations

import io
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from mailnet.mail import lines
from mailnet.store.maildir import crlf
from mailnet.store.maildir.names import canonicalSize
from mailnet.store.interfaces import INBOX, NoSuchMessage
from mailnet.store.maildir import MaildirStore
from tests.store.helpers import failure, msg, result, syncRunner

USER = "dave@example.test"


class CountingRunner:
    """syncRunner that counts the work sent to "threads"."""

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        self.calls.append(getattr(f, "__name__", repr(f)))
        return syncRunner(f, *args)


def setup(tmp_path, bodies):
    runner = CountingRunner()
    store = MaildirStore(str(tmp_path / "mail"), runner=runner)
    account = result(store.getAccount(USER))
    folder = result(account.openFolder(INBOX))
    uids = [result(folder.append(b)) for b in bodies]
    result(folder.refresh())  # new/ -> cur/
    runner.calls.clear()
    return store, runner, folder, uids, os.path.join(str(tmp_path / "mail"), "example.test", "dave")


def read(folder, uid):
    f = result(folder.openMessage(uid))
    try:
        return f.read()
    finally:
        f.close()


def fileOf(account, folder, uid):
    """The current path of ``uid``'s file, as the index knows it."""
    rel = folder._index.disk.full.where[uid]
    return os.path.join(account, rel)


def test_known_file_opens_without_a_worker(tmp_path):
    store, runner, folder, uids, _ = setup(tmp_path, [msg(1), msg(2)])
    assert read(folder, uids[0]) == msg(1)
    assert read(folder, uids[1]) == msg(2)
    assert runner.calls == []
    folder.close()


def test_renamed_by_another_program_before_a_sync(tmp_path):
    store, runner, folder, uids, account = setup(tmp_path, [msg(1), msg(2)])
    # mutt reads one and sets flags: the file moves to cur/ under another
    # name; the index does not know yet.
    path = fileOf(account, folder, uids[0])
    base = os.path.basename(path).split(":")[0]
    os.rename(path, os.path.join(account, "cur", base + ":2,FS"))
    assert read(folder, uids[0]) == msg(1)
    assert runner.calls == ["openMessage"]  # looked up in a worker
    # And again (still not synced): found again, wherever it is now.
    runner.calls.clear()
    os.rename(os.path.join(account, "cur", base + ":2,FS"), os.path.join(account, "cur", base + ":2,S"))
    assert read(folder, uids[0]) == msg(1)
    assert runner.calls == ["openMessage"]
    assert read(folder, uids[1]) == msg(2)
    folder.close()


def test_deleted_by_another_program_before_a_sync(tmp_path):
    store, runner, folder, uids, account = setup(tmp_path, [msg(1)])
    os.unlink(fileOf(account, folder, uids[0]))
    failure(folder.openMessage(uids[0]), NoSuchMessage)
    folder.close()


def test_expunged_uid_fails_at_once(tmp_path):
    store, runner, folder, uids, _ = setup(tmp_path, [msg(1)])
    result(folder.expunge(uids))
    runner.calls.clear()
    failure(folder.openMessage(uids[0]), NoSuchMessage)
    assert runner.calls == []
    folder.close()


def test_unreadable_file_is_reported_by_the_worker(tmp_path, monkeypatch):
    """An error other than "not there" (EMFILE, EACCES) is not swallowed."""
    store, runner, folder, uids, account = setup(tmp_path, [msg(1)])
    disk = folder._index.disk

    def tooMany(uid, size):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(disk, "openKnown", tooMany)
    monkeypatch.setattr(disk, "openMessage", tooMany)
    assert failure(folder.openMessage(uids[0]), OSError).errno == 24
    assert runner.calls == ["tooMany"]
    folder.close()


def test_lf_files_small_and_large(tmp_path, monkeypatch):
    """Small LF files are converted whole, large ones streamed; same bytes."""
    store, runner, folder, uids, account = setup(tmp_path, [])
    cur = os.path.join(account, "cur")
    lf = b"Subject: lf\n\n" + b"".join(b"line %d\rx\n" % i for i in range(40000))  # bare CRs too
    with open(os.path.join(cur, "1700000000.M1P1.mutt:2,S"), "wb") as f:
        f.write(lf)
    with open(os.path.join(cur, "1700000001.M1P1.mutt:2,S"), "wb") as f:
        f.write(lf[:200])
    result(folder.refresh())
    big, small = [i for i in folder.messages()]
    expected = lf.replace(b"\n", b"\r\n")
    assert big.size == len(expected) and small.size == len(lf[:200].replace(b"\n", b"\r\n"))
    f = result(folder.openMessage(big.uid))
    assert not isinstance(f, io.BytesIO)  # streamed: larger than WHOLE_LIMIT
    assert len(lf) > crlf.WHOLE_LIMIT
    chunks = []
    while True:
        chunk = f.read(65536)
        if not chunk:
            break
        assert len(chunk) <= 65536
        chunks.append(chunk)
    f.close()
    assert b"".join(chunks) == expected
    f = result(folder.openMessage(small.uid))
    assert isinstance(f, io.BytesIO)
    assert f.read() == lf[:200].replace(b"\n", b"\r\n")
    f.close()
    folder.close()


def test_crlf_files_small_and_large(tmp_path):
    """Small files are read whole at open (no descriptor kept); large ones are the file."""
    big = b"Subject: big\r\n\r\n" + b"y" * 78 * 3000 + b"\r\n"
    store, runner, folder, uids, account = setup(tmp_path, [msg(1), big])
    assert len(big) > crlf.WHOLE_LIMIT
    f = result(folder.openMessage(uids[0]))
    assert isinstance(f, io.BytesIO) and f.read() == msg(1)
    f = result(folder.openMessage(uids[1]))
    try:
        assert type(f) is io.BufferedReader and type(f.raw) is io.FileIO  # IMAP reads it with pread
        assert f.read() == big
    finally:
        f.close()
    folder.close()


def test_file_that_grew_after_fstat_is_read_to_its_end(tmp_path, monkeypatch):
    store, runner, folder, uids, account = setup(tmp_path, [msg(1)])
    realFstat = os.fstat

    class Shrunk:
        def __init__(self, st):
            self.st_mode = st.st_mode
            self.st_size = st.st_size - 5

    monkeypatch.setattr(crlf.os, "fstat", lambda fd: Shrunk(realFstat(fd)))
    assert read(folder, uids[0]) == msg(1)
    folder.close()


LINE_BYTES = st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b".", b"xyz"]), max_size=60).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(data=LINE_BYTES, chunk=st.integers(1, 9))
def test_crlf_reader_matches_whole_conversion_and_size(tmp_path_factory, data, chunk):
    expected = crlf.toCRLF(data)
    # Every LF has exactly one CR before it; nothing else changed.
    assert expected.count(b"\n") == data.count(b"\n")
    assert expected.replace(b"\r\n", b"\n") == data.replace(b"\r\n", b"\n")
    reader = io.BufferedReader(lines.CRLFReader(io.BytesIO(data), chunk=chunk), 4)
    out = []
    while True:
        piece = reader.read(3)
        if not piece:
            break
        out.append(piece)
    assert b"".join(out) == expected
    path = tmp_path_factory.mktemp("crlf") / "m"
    path.write_bytes(data)
    assert canonicalSize(str(path)) == (len(data), len(expected))
