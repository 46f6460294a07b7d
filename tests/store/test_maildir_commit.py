"""
The Maildir store's group committer with real threads: small and streamed
deliveries, a folder's leader and followers, a failure that reaches every
follower, concurrent operations.  Deferreds are driven as described in
``tests/store/helpers.py``.
"""

from __future__ import annotations

import os
import time

from mailnet.store.interfaces import FLAGGED, INBOX, SEEN
from mailnet.store.maildir import MaildirStore
from mailnet.store.maildir.delivery import MaildirDelivery
from mailnet.store.maildir.disk import Disk
from tests.store.helpers import Recorder, ThreadedRunner, msg, result
from tests.store.maildir_helpers import USER, newStore, nonEmpty, openf, read
from tests.store.maildir_helpers import root  # noqa: F401 (a fixture)


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
