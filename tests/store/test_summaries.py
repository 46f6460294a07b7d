"""
The message list (mailnet.store.summaries): the conformance suite for both
builtin backends, and the Maildir index file (no message file opened,
corrupt or deleted file, kill -9, the background pass after SMTP
deliveries in the real server).
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import time

from mailnet.store.conformance_summaries import PLAIN, SummaryConformance
from mailnet.store.maildir import MaildirStore
from mailnet.store.maildir.names import newBase
from mailnet.store.memory import MemoryStore
from mailnet.store.summaries import FILE_NAME
from mailnet.store.testing import msg, result, syncRunner

USER = "alice@example.test"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TestMemorySummaries(SummaryConformance):
    def makeStore(self, tmp_path):
        return MemoryStore()


def _unlinkIndex(path):
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(os.path.join(path, FILE_NAME + suffix))
        except FileNotFoundError:
            pass


class TestMaildirSummaries(SummaryConformance):
    def makeStore(self, tmp_path):
        return MaildirStore(str(tmp_path / "mail"), runner=syncRunner)

    def restartStore(self, tmp_path, store):
        return MaildirStore(str(tmp_path / "mail"), runner=syncRunner)

    def dropListIndex(self, store, account):
        _unlinkIndex(account.path)
        return True

    def writeExternally(self, store, account, folder, data, date):
        # An MDA: write into tmp/, rename into new/ (no UID, no uidlist record).
        tmp = os.path.join(account.path, "tmp", newBase())
        with open(tmp, "wb") as f:
            f.write(data.replace(b"\r\n", b"\n"))
        os.utime(tmp, (date, date))
        os.rename(tmp, os.path.join(account.path, "new", os.path.basename(tmp)))
        return True


def _store(tmp_path):
    return MaildirStore(str(tmp_path / "mail"), runner=syncRunner)


def _fill(tmp_path, n=30):
    store = _store(tmp_path)
    account = result(store.getAccount(USER))
    result(account.createFolder("Lists"))
    for name in ("INBOX", "Lists"):
        folder = result(account.openFolder(name))
        for i in range(n):
            result(folder.append(msg(i), internalDate=1_000_000 + i * 10 + (name == "Lists")))
        folder.close()
    listed = result(account.listEmails(limit=10))
    summaries = result(account.emailSummaries(listed.ids))
    result(store.close())
    return account.path, listed, summaries


def test_listing_opens_no_message_file(tmp_path, monkeypatch):
    path, listed, summaries = _fill(tmp_path)
    assert listed.total == 60 and len(summaries) == 10
    store = _store(tmp_path)  # a new process, as it were: nothing loaded
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
    account = result(store.getAccount(USER))
    again = result(account.listEmails(limit=10))
    assert again == listed
    assert result(account.emailSummaries(again.ids)) == summaries
    monkeypatch.undo()
    messageFiles = [p for p in opened if isinstance(p, str) and ("/cur/" in p or "/new/" in p)]
    assert messageFiles == []
    assert store.summariesAt(path).indexed == 0
    result(store.close())


def test_index_file_mode_and_corrupt_file_set_aside(tmp_path):
    umask = os.umask(0o022)
    try:
        path, listed, summaries = _fill(tmp_path, 5)
    finally:
        os.umask(umask)
    assert os.stat(os.path.join(path, FILE_NAME)).st_mode & 0o777 == 0o600
    for suffix in ("-wal", "-shm"):
        if os.path.exists(os.path.join(path, FILE_NAME + suffix)):
            os.unlink(os.path.join(path, FILE_NAME + suffix))
    with open(os.path.join(path, FILE_NAME), "wb") as f:
        f.write(b"not a database at all " * 200)
    store = _store(tmp_path)
    account = result(store.getAccount(USER))
    assert result(account.listEmails(limit=10)) == listed
    assert result(account.emailSummaries(listed.ids)) == summaries
    assert os.path.isfile(os.path.join(path, FILE_NAME + ".corrupt"))
    assert store.summariesAt(path).index.rebuilds == 1
    result(store.close())


def test_index_deleted_while_running_is_rebuilt(tmp_path):
    store = _store(tmp_path)
    account = result(store.getAccount(USER))
    inbox = result(account.openFolder("INBOX"))
    uid = result(inbox.append(PLAIN, internalDate=1000))
    emailId = inbox.emailIds([uid])[uid]
    assert result(account.listEmails()).ids == [emailId]
    _unlinkIndex(account.path)
    assert result(account.listEmails()).ids == [emailId]
    assert os.path.isfile(os.path.join(account.path, FILE_NAME))
    assert result(account.emailSummaries([emailId]))[emailId].subject == "Lunch"
    inbox.close()
    result(store.close())


def test_unchanged_folders_are_not_opened_again(tmp_path, monkeypatch):
    _fill(tmp_path, 3)
    import mailnet.store.maildir.listindex as listindex

    monkeypatch.setattr(listindex, "SETTLE", 0)  # trust stamps at once (the files are seconds old in real life)
    store = _store(tmp_path)
    account = result(store.getAccount(USER))
    result(account.listEmails())
    summaries = store.summariesAt(account.path)
    before = summaries.reconciled
    result(account.listEmails())
    assert summaries.reconciled == before  # nothing changed: stamps only
    inbox = result(account.openFolder("INBOX"))
    result(inbox.append(msg(99), internalDate=2_000_000))
    assert result(account.listEmails()).total == 7
    assert summaries.reconciled == before + 1  # INBOX only
    inbox.close()
    result(store.close())


def _child(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "tests.store._list_proc", *args], stdout=subprocess.PIPE,
                            cwd=ROOT, env=env)


def test_kill_9_while_indexing(tmp_path):
    root = str(tmp_path / "mail")
    p = _child(root, USER, "100000")
    lines = [p.stdout.readline() for _ in range(25)]  # killed after 25 listed rounds (an event, not a time)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert all(line.startswith(b"listed ") for line in lines), lines
    store = MaildirStore(root, runner=syncRunner)
    account = result(store.getAccount(USER))
    inbox = result(account.openFolder("INBOX"))
    ids = inbox.emailIds([i.uid for i in inbox.messages()])
    listed = result(account.listEmails())
    assert sorted(listed.ids) == sorted(ids.values()) and listed.total == len(ids) >= 25
    found = result(account.emailSummaries(listed.ids))
    assert {s.subject for s in found.values()} == {"test %d" % n for n in range(len(ids))}
    db = sqlite3.connect(os.path.join(account.path, FILE_NAME))
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    inbox.close()
    result(store.close())


def _indexed(path, count):
    """Wait until the list index at ``path`` has ``count`` rows in a folder, all with a thread id."""
    deadline = time.monotonic() + 30
    rows = []
    while time.monotonic() < deadline:
        if os.path.exists(path):
            db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
            try:
                rows = db.execute("SELECT fields, thread FROM emails WHERE mailbox IS NOT NULL").fetchall()
            except sqlite3.Error:
                rows = []
            finally:
                db.close()
            if len(rows) == count and all(t for _, t in rows):
                break
        time.sleep(0.1)
    return rows


def test_smtp_deliveries_are_indexed_in_the_background(make_server):
    server = make_server(config={"store": {"list_index_delay": 0.2}})
    server.addUser(USER, "pw")
    path = os.path.join(server.maildir(USER), FILE_NAME)
    for rnd in range(2):  # the second round after the first was indexed (folders kept open meanwhile)
        with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
            for n in range(5):
                s.sendmail("bob@example.org", [USER], b"Subject: hello %d\r\nFrom: bob@example.org\r\n\r\nhi\r\n"
                           % (rnd * 5 + n))
        rows = _indexed(path, 5 * (rnd + 1))
        assert len(rows) == 5 * (rnd + 1), (rnd, rows)
        subjects = sorted(json.loads(f)["subject"] for f, _ in rows)
        assert subjects == sorted("hello %d" % n for n in range(5 * (rnd + 1)))
        assert all(t for _, t in rows)  # the thread index was filled by the same pass
        # read from the files, without opening the folder: nothing moved new/ -> cur/ (as a client's look would)
        files = server.messageFiles(USER)
        assert len(files) == 5 * (rnd + 1) and all("/new/" in f for f in files), files
    assert os.path.exists(os.path.join(server.maildir(USER), "mailnet-threads.sqlite"))


def test_a_message_unreadable_for_a_moment_is_indexed_later(tmp_path, monkeypatch):
    from mailnet.store.interfaces import NoSuchMessage
    from mailnet.store.maildir.index import FolderIndex
    from twisted.internet import defer

    store = _store(tmp_path)
    account = result(store.getAccount(USER))
    inbox = result(account.openFolder("INBOX"))
    first = result(inbox.append(msg(1), internalDate=1000))
    second = result(inbox.append(msg(2), internalDate=2000))
    realOpen = FolderIndex.openMessage

    def flaky(self, uid):
        return defer.fail(NoSuchMessage(uid)) if uid == second else realOpen(self, uid)

    monkeypatch.setattr(FolderIndex, "openMessage", flaky)
    assert result(account.listEmails()).ids == [inbox.emailIds([first])[first]]
    monkeypatch.undo()
    assert result(account.listEmails()).total == 2
    inbox.close()
    result(store.close())


def test_background_pass_waits_for_a_pause_in_deliveries_but_not_forever():
    from twisted.internet import task

    from mailnet.store.summaries import AccountSummaries, SummaryIndex

    clock = task.Clock()
    runs = []
    s = AccountSummaries(SummaryIndex(None), None, dict, syncRunner, later=clock.callLater, delay=2.0,
                         maxDelay=10.0, clock=clock.seconds, readDelivered=lambda folder, items: None)

    async def indexDelivered():
        runs.append(clock.seconds())

    s._indexDelivered = indexDelivered
    s.delivered("f", [1])
    clock.advance(1.5)
    s.delivered("f", [2])  # a burst: pushed back
    clock.advance(1.9)
    assert runs == []
    clock.advance(0.2)  # 2 s after the last one (Clock runs calls at the end of the step)
    assert runs == [3.6]
    for _ in range(30):  # deliveries every second: at the latest 10 s after the first
        s.delivered("f", [3])
        clock.advance(1.0)
    assert [round(t - 3.6) for t in runs[1:]] == [10, 20, 30]
    s.close()
