"""
The Maildir store's cheap paths for long-lived IMAP sessions (issue 12,
speed): a refresh that finds nothing changed, and a flag change that
changes nothing, are answered on the calling thread without a worker; a
refresh does not wait for other sessions' operations unless a worker has
taken in changes the reactor has not been given; a refresh queued behind
other work is shared by every caller that asks before it starts.  Changes
by other programs are still picked up.
"""

from __future__ import annotations

import os

import pytest
from twisted.internet import defer

from mailnet.store.interfaces import INBOX
from mailnet.store.maildir import MaildirStore, tuning
from tests.store.helpers import Recorder, msg, result, syncRunner

USER = "erin@example.test"


class CountingRunner:
    """syncRunner that counts the work sent to "threads"; with ``hold``, keeps it until :meth:`release`."""

    def __init__(self):
        self.calls = []
        self.hold = False
        self.held = []

    def __call__(self, f, *args):
        self.calls.append(getattr(f, "__name__", repr(f)))
        if not self.hold:
            return syncRunner(f, *args)
        d = defer.Deferred()
        self.held.append((f, args, d))
        return d

    def release(self, after=None):
        """Run the work held so far; ``after()`` between the work and its Deferred firing."""
        held, self.held = self.held, []
        for f, args, d in held:
            done = syncRunner(f, *args)
            if after is not None:
                after()
            done.chainDeferred(d)


@pytest.fixture(autouse=True)
def settled(monkeypatch):
    # No "list again once the directory has settled" pass: the tests look
    # at the paths themselves, not at the timestamp granularity guard.
    monkeypatch.setattr(tuning, "DIR_SETTLE_SECS", 0)


def setup(tmp_path, count):
    runner = CountingRunner()
    store = MaildirStore(str(tmp_path / "mail"), runner=runner)
    account = result(store.getAccount(USER))
    folder = result(account.openFolder(INBOX))
    uids = [result(folder.append(msg(n), flags=["\\Seen"] if n % 2 else [])) for n in range(count)]
    result(folder.refresh())  # new/ -> cur/
    runner.calls.clear()
    return runner, folder, uids, os.path.join(str(tmp_path / "mail"), "example.test", "erin")


def fileOf(account, folder, uid):
    """The path of ``uid``'s file, as the index knows it."""
    return os.path.join(account, folder._index.disk.full.where[uid])


def drop(account, name, data=b"From: x@example.test\r\nSubject: dropped\r\n\r\nhi\r\n"):
    """A message delivered by another program (an MDA writing into new/)."""
    with open(os.path.join(account, "tmp", name), "wb") as f:
        f.write(data)
    os.rename(os.path.join(account, "tmp", name), os.path.join(account, "new", name))


def test_refresh_with_nothing_changed_needs_no_worker(tmp_path):
    runner, folder, uids, _ = setup(tmp_path, 3)
    for _ in range(5):
        assert result(folder.refresh()) is None
    assert runner.calls == []


def test_refresh_still_sees_another_programs_message(tmp_path):
    runner, folder, uids, account = setup(tmp_path, 2)
    seen = Recorder()
    folder.addListener(seen)
    drop(account, "1700000000.M1P1.other")
    result(folder.refresh())
    assert runner.calls == ["opRefresh"]
    assert seen.kinds() == ["added"]
    assert len(folder.messages()) == 3
    runner.calls.clear()
    result(folder.refresh())
    assert runner.calls == []


def test_refresh_still_sees_flags_another_program_changed(tmp_path):
    runner, folder, uids, account = setup(tmp_path, 2)
    seen = Recorder()
    folder.addListener(seen)
    path = fileOf(account, folder, uids[1])
    os.rename(path, path.split(":2,")[0] + ":2,FS")
    result(folder.refresh())
    assert runner.calls == ["opRefresh"]
    assert folder.get(uids[1]).flags == {"\\Flagged", "\\Seen"}
    assert seen.kinds() == ["flags"]


def test_refresh_does_not_wait_for_other_sessions_work(tmp_path):
    runner, folder, uids, account = setup(tmp_path, 2)
    runner.hold = True
    busy = folder.setFlags([uids[0]], ["\\Flagged"], "add")  # another session's STORE, in a worker
    fired = []
    folder.refresh().addBoth(fired.append)
    assert fired == [None] and runner.calls == ["opSetFlags"]
    runner.release()
    assert result(busy)[0][0].flags == {"\\Flagged"}


def test_refresh_waits_for_changes_a_worker_took_in(tmp_path):
    runner, folder, uids, account = setup(tmp_path, 2)
    runner.hold = True
    busy = folder.setFlags([uids[0]], ["\\Flagged"], "add")
    drop(account, "1700000004.M1P1.other")
    fired = []

    def between():
        # The STORE's worker has synced (taking in the other program's
        # message) and recorded the new stamps; the reactor has not had
        # its delta yet.  A refresh now must not answer from the old copy.
        assert folder._index.disk.unchanged()
        folder.refresh().addBoth(lambda r: fired.append(len(folder.messages())))

    runner.release(after=between)
    assert fired == [3]
    assert runner.calls == ["opSetFlags"]
    result(busy)


def test_refreshes_queued_behind_work_are_shared(tmp_path):
    runner, folder, uids, account = setup(tmp_path, 2)
    runner.hold = True
    busy = folder.setFlags([uids[0]], ["\\Flagged"], "add")  # a worker holds the folder's queue
    drop(account, "1700000001.M1P1.other")  # so the refreshes must wait for their turn
    waiting = [folder.refresh() for _ in range(4)]
    assert runner.calls == ["opSetFlags"]
    fired = []
    for d in waiting:
        d.addBoth(fired.append)
    # The STORE ends (another program delivered once more meanwhile); the one refresh goes to a worker.
    runner.release(after=lambda: drop(account, "1700000005.M1P1.other"))
    assert fired == []
    runner.release()
    assert runner.calls == ["opSetFlags", "opRefresh"]
    assert fired == [None, None, None, None]
    assert result(busy)[0][0].flags == {"\\Flagged"}
    assert len(folder.messages()) == 4


def test_a_refresh_asked_while_one_runs_gets_its_own(tmp_path):
    runner, folder, uids, account = setup(tmp_path, 1)
    drop(account, "1700000002.M1P1.other")
    runner.hold = True
    first = folder.refresh()
    assert runner.calls == ["opRefresh"]  # started: it may have looked already
    second = folder.refresh()
    # Another program delivers once the first has looked: the second sees it.
    runner.release(after=lambda: drop(account, "1700000003.M1P1.other"))
    runner.release()
    result(first)
    result(second)
    assert runner.calls == ["opRefresh", "opRefresh"]
    assert len(folder.messages()) == 3


def test_flag_change_that_changes_nothing_needs_no_worker(tmp_path):
    runner, folder, uids, _ = setup(tmp_path, 4)
    seen = Recorder()
    folder.addListener(seen)
    before = folder.highestModSeq
    seenUids = [u for u in uids if "\\Seen" in folder.get(u).flags]
    assert result(folder.setFlags(seenUids, ["\\Seen"], "add")) == ([], [])
    assert result(folder.setFlags(uids, ["\\Deleted"], "remove")) == ([], [])
    assert runner.calls == []
    assert seen.events == [] and folder.highestModSeq == before
    # A real change still goes to a worker, and is told.
    changed, failed = result(folder.setFlags(uids, ["\\Seen"], "add"))
    assert runner.calls == ["opSetFlags"]
    assert sorted(i.uid for i in changed) == sorted(set(uids) - set(seenUids))
    assert seen.kinds() == ["flags"] and folder.highestModSeq > before


def test_flag_change_that_changes_nothing_keeps_unchangedsince(tmp_path):
    runner, folder, uids, _ = setup(tmp_path, 2)
    old = folder.get(uids[1]).modseq
    result(folder.setFlags([uids[1]], ["\\Flagged"], "add"))
    runner.calls.clear()
    # RFC 7162 s3.1.3: a message changed since UNCHANGEDSINCE fails, even
    # when the STORE would not change it.
    changed, failed = result(folder.setFlags([uids[1]], ["\\Flagged"], "add", unchangedSince=old))
    assert (changed, failed) == ([], [uids[1]])
    assert runner.calls == []


def test_flag_change_after_another_programs_change_goes_to_a_worker(tmp_path):
    runner, folder, uids, account = setup(tmp_path, 2)
    path = fileOf(account, folder, uids[1])
    os.rename(path, path.split(":2,")[0] + ":2,")
    # The mirror says seen, the disk no more: the worker decides, and sets it again.
    changed, failed = result(folder.setFlags([uids[1]], ["\\Seen"], "add"))
    assert runner.calls == ["opSetFlags"]
    assert [i.uid for i in changed] == [uids[1]]
    assert folder.get(uids[1]).flags == {"\\Seen"}


def test_open_of_a_loaded_unchanged_folder_needs_no_worker(tmp_path):
    # IMAP opens the target folder of every APPEND (and SELECT opens its
    # folder): a folder loaded already and unchanged on disk is shared at
    # once; one changed by another program is still caught up.
    runner, folder, uids, account = setup(tmp_path, 3)
    acct = result(folder._index.store.getAccount(USER))
    runner.calls.clear()
    again = result(acct.openFolder(INBOX))
    assert runner.calls == []
    assert [i.uid for i in again.messages()] == uids
    again.close()
    drop(account, "1700000000.M1P1.other")
    again = result(acct.openFolder(INBOX))
    assert runner.calls == ["refresh"]
    assert len(again.messages()) == 4
    again.close()
