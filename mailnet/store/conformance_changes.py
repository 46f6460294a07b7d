"""
The part of the store conformance suite about account state and changes
(``IAccount.currentState``, ``changesSince``, account listeners): see
"Account state and changes" in :mod:`mailnet.store.interfaces`.

A backend runs it by subclassing :class:`ChangesConformance` in a test
module (name the subclass ``Test...``) and defining ``makeStore(tmp_path,
limits=None)``, and, where it can, :meth:`ChangesConformance.makeStoreKeeping`
(a store that keeps only a little history) and ``restartStore(tmp_path,
store)`` (as for :mod:`mailnet.store.conformance_ids`).  Deferreds must
have fired when the calls return (see :mod:`mailnet.store.testing`).
"""

from __future__ import annotations

import pytest

from mailnet.store.conformance_threads import mail
from mailnet.store.interfaces import (
    COUNT_PROPERTIES,
    INBOX,
    SEEN,
    AccountChanges,
    CannotCalculateChanges,
)
from mailnet.store.testing import failure, msg, result

USER = "alice@example.test"


def _open(account, name=INBOX):
    return result(account.openFolder(name))


def _state(account):
    state = result(account.currentState())
    assert isinstance(state, str) and 0 < len(state) <= 255
    return state


def _changes(account, state, maxChanges=None):
    out = result(account.changesSince(state, maxChanges))
    assert isinstance(out, AccountChanges)
    for part in (out.emails, out.mailboxes, out.threads):
        ids = part.created + part.updated + part.destroyed
        assert len(ids) == len(set(ids)), part  # an id in one list only
    return out


def _lists(part):
    return set(part.created), set(part.updated), set(part.destroyed)


class _Listener:
    def __init__(self):
        self.calls = []

    def accountChanged(self, account, state, types):
        self.calls.append((state, set(types)))


class ChangesConformance:
    """Account state, changes since a state, account listeners."""

    def makeStoreKeeping(self, tmp_path, kept):
        """A new store that keeps about ``kept`` changes per account; None to skip the test."""
        return None

    def restartStore(self, tmp_path, store):
        return None

    @pytest.fixture
    def store(self, tmp_path):
        s = self.makeStore(tmp_path)
        yield s
        result(s.close())

    @pytest.fixture
    def account(self, store):
        return result(store.getAccount(USER))

    def _ids(self, folder, uid):
        return folder.emailIds([uid])[uid]

    def test_state_changes_only_with_the_account(self, account):
        s0 = _state(account)
        assert _state(account) == s0
        c = _changes(account, s0)
        assert c.oldState == s0
        for part in (c.emails, c.mailboxes, c.threads):
            assert (part.created, part.updated, part.destroyed) == ([], [], [])
            assert part.newState == s0 and not part.hasMoreChanges
        result(_open(account).append(msg(1)))
        assert _state(account) != s0

    def test_append_creates_an_email_and_changes_the_counts(self, account):
        inbox = _open(account)
        s0 = _state(account)
        uid = result(inbox.append(msg(1)))
        c = _changes(account, s0)
        assert _lists(c.emails) == ({self._ids(inbox, uid)}, set(), set())
        assert _lists(c.mailboxes) == (set(), {inbox.mailboxId}, set())
        assert c.mailboxes.updatedProperties == COUNT_PROPERTIES
        assert c.emails.newState == _state(account)

    def test_delivery_creates_an_email(self, store, account):
        s0 = _state(account)
        d = store.newDelivery()
        d.addRecipient(USER)
        d.write(msg(2))
        [(_, _, uid)] = result(d.commit())
        inbox = _open(account)
        c = _changes(account, s0)
        assert c.emails.created == [self._ids(inbox, uid)]
        assert c.mailboxes.updated == [inbox.mailboxId]

    def test_flags_update_the_email_and_seen_the_counts(self, account):
        inbox = _open(account)
        uid = result(inbox.append(msg(1)))
        emailId = self._ids(inbox, uid)
        s0 = _state(account)
        result(inbox.setFlags([uid], ["$Important"], "add"))
        c = _changes(account, s0)
        assert _lists(c.emails) == (set(), {emailId}, set())
        assert c.mailboxes.updated == []  # no count changed
        s1 = _state(account)
        result(inbox.setFlags([uid], [SEEN], "add"))
        c = _changes(account, s1)
        assert c.emails.updated == [emailId]
        assert c.mailboxes.updated == [inbox.mailboxId]
        assert c.mailboxes.updatedProperties == COUNT_PROPERTIES
        s2 = _state(account)
        result(inbox.setFlags([uid], [SEEN], "add"))  # no change at all
        assert _state(account) == s2

    def test_expunge_destroys_the_email(self, account):
        inbox = _open(account)
        uid = result(inbox.append(msg(1)))
        emailId = self._ids(inbox, uid)
        s0 = _state(account)
        result(inbox.expunge([uid]))
        c = _changes(account, s0)
        assert _lists(c.emails) == (set(), set(), {emailId})
        assert c.mailboxes.updated == [inbox.mailboxId]

    def test_created_then_destroyed_is_left_out(self, account):
        inbox = _open(account)
        s0 = _state(account)
        keep = result(inbox.append(msg(1)))
        gone = result(inbox.append(msg(2)))
        result(inbox.expunge([gone]))
        c = _changes(account, s0)
        assert _lists(c.emails) == ({self._ids(inbox, keep)}, set(), set())

    def test_move_updates_the_email_and_both_mailboxes(self, account):
        inbox, trash = _open(account), _open(account, "Trash")
        uid = result(inbox.append(msg(1)))
        emailId = self._ids(inbox, uid)
        s0 = _state(account)
        [(_, dest)] = result(inbox.moveTo([uid], trash))
        c = _changes(account, s0)
        assert _lists(c.emails) == (set(), {emailId}, set())
        assert set(c.mailboxes.updated) == {inbox.mailboxId, trash.mailboxId}
        assert c.mailboxes.updatedProperties == COUNT_PROPERTIES
        assert self._ids(trash, dest) == emailId

    def test_copy_creates_an_email(self, account):
        inbox, trash = _open(account), _open(account, "Trash")
        uid = result(inbox.append(msg(1)))
        s0 = _state(account)
        [(_, dest)] = result(inbox.copyTo([uid], trash))
        c = _changes(account, s0)
        assert _lists(c.emails) == ({self._ids(trash, dest)}, set(), set())
        assert c.mailboxes.updated == [trash.mailboxId]

    def test_folders_created_renamed_deleted(self, account):
        s0 = _state(account)
        result(account.createFolder("Work"))
        work = _open(account, "Work")
        uid = result(work.append(msg(1)))
        emailId, mailboxId = self._ids(work, uid), work.mailboxId
        work.close()
        c = _changes(account, s0)
        assert _lists(c.mailboxes) == ({mailboxId}, set(), set())
        assert c.emails.created == [emailId]
        s1 = _state(account)
        result(account.renameFolder("Work", "Jobs"))
        c = _changes(account, s1)
        assert _lists(c.mailboxes) == (set(), {mailboxId}, set())
        assert c.mailboxes.updatedProperties is None  # the name changed, not only counts
        assert c.emails.updated == c.emails.created == c.emails.destroyed == []
        s2 = _state(account)
        result(account.deleteFolder("Jobs"))
        c = _changes(account, s2)
        assert _lists(c.mailboxes) == (set(), set(), {mailboxId})
        assert _lists(c.emails) == (set(), set(), {emailId})

    def test_rename_inbox_moves_its_emails(self, account):
        inbox = _open(account)
        uid = result(inbox.append(msg(1)))
        emailId = self._ids(inbox, uid)
        s0 = _state(account)
        result(account.renameFolder(INBOX, "Old"))
        old = _open(account, "Old")
        c = _changes(account, s0)
        assert c.emails.updated == [emailId]
        assert old.mailboxId in c.mailboxes.created
        assert inbox.mailboxId in c.mailboxes.updated

    def test_max_changes_pages(self, account):
        inbox = _open(account)
        s0 = _state(account)
        uids = [result(inbox.append(msg(n))) for n in range(5)]
        expunged = uids[0]
        result(inbox.setFlags([uids[1]], ["$x"], "add"))
        result(inbox.expunge([expunged]))
        want = {self._ids(inbox, u) for u in uids[1:]}
        seen, state, pages = set(), s0, 0
        while True:
            c = _changes(account, state, maxChanges=2)
            part = c.emails
            ids = part.created + part.updated + part.destroyed
            assert len(ids) <= 2
            assert not set(part.destroyed) & want
            seen.update(part.created + part.updated)
            seen.difference_update(part.destroyed)
            pages += 1
            assert part.newState != state or not part.hasMoreChanges
            state = part.newState
            if not part.hasMoreChanges:
                break
            assert pages < 10
        assert seen == want
        assert pages >= 2
        assert state == _state(account)
        failure(account.changesSince(s0, 0), ValueError)

    def test_unknown_states_cannot_be_calculated(self, account):
        s0 = _state(account)
        for bad in ("", "nonsense", s0 + "9", "x" + s0, s0.rsplit(".", 1)[0] + ".-1"):
            failure(account.changesSince(bad), CannotCalculateChanges)

    def test_too_old(self, tmp_path):
        store = self.makeStoreKeeping(tmp_path, 100)
        if store is None:
            pytest.skip("the backend cannot be made with a small history")
        try:
            account = result(store.getAccount(USER))
            inbox = _open(account)
            s0 = _state(account)
            for n in range(150):
                result(inbox.append(msg(n)))
            failure(account.changesSince(s0), CannotCalculateChanges)
            s1 = _state(account)
            result(inbox.append(msg(999)))
            assert len(_changes(account, s1).emails.created) == 1
        finally:
            result(store.close())

    def test_threads(self, account):
        inbox = _open(account)
        a = result(inbox.append(mail("ch-a")))
        s0 = _state(account)
        ta = result(inbox.threadIds([a]))[a]
        c = _changes(account, s0)
        assert c.threads.created == [ta]  # once its id is known
        s1 = _state(account)
        b = result(inbox.append(mail("ch-b", "Re: Plans", refs=["ch-a"])))
        assert result(inbox.threadIds([b]))[b] == ta
        c = _changes(account, s1)
        assert _lists(c.threads) == (set(), {ta}, set())
        s2 = _state(account)
        result(inbox.expunge([b]))
        assert _changes(account, s2).threads.updated == [ta]
        s3 = _state(account)
        result(inbox.expunge([a]))
        assert _lists(_changes(account, s3).threads) == (set(), set(), {ta})

    def test_thread_merge(self, account):
        inbox = _open(account)
        # Two replies to a parent we do not have yet: two threads.
        r1 = result(inbox.append(mail("m-r1", "Re: Plans", refs=["m-p"])))
        r2 = result(inbox.append(mail("m-r2", "Re: Plans", refs=["m-q"])))
        ids = result(inbox.threadIds([r1, r2]))
        assert ids[r1] != ids[r2]
        s0 = _state(account)
        # The parent references both: the threads merge into the first.
        p = result(inbox.append(mail("m-p", refs=["m-q"])))
        ids2 = result(inbox.threadIds([r1, r2, p]))
        assert ids2[r1] == ids2[r2] == ids2[p] == ids[r1]
        c = _changes(account, s0)
        assert ids[r2] in c.threads.destroyed
        assert ids[r1] in c.threads.updated
        assert self._ids(inbox, r2) in c.emails.updated

    def test_listeners(self, account):
        heard = _Listener()
        account.addListener(heard)
        inbox = _open(account)
        _state(account)
        heard.calls.clear()
        uid = result(inbox.append(msg(1)))
        state = _state(account)
        assert heard.calls and heard.calls[-1][0] == state
        assert {"Email", "Mailbox"} <= set().union(*(t for _, t in heard.calls))
        heard.calls.clear()
        result(inbox.setFlags([uid], ["$y"], "add"))
        state = _state(account)
        assert heard.calls[-1] == (state, {"Email"})
        account.removeListener(heard)
        account.removeListener(heard)  # unknown: ignored
        heard.calls.clear()
        result(inbox.setFlags([uid], ["$z"], "add"))
        _state(account)
        assert heard.calls == []

    def test_changes_survive_a_restart(self, tmp_path, store, account):
        inbox = _open(account)
        s0 = _state(account)
        uid = result(inbox.append(msg(1)))
        emailId = self._ids(inbox, uid)
        s1 = _state(account)
        inbox.close()
        result(store.close())
        new = self.restartStore(tmp_path, store)
        if new is None:
            pytest.skip("the backend keeps nothing across a restart")
        try:
            account = result(new.getAccount(USER))
            assert _state(account) == s1
            assert _changes(account, s0).emails.created == [emailId]
            inbox = _open(account)
            result(inbox.setFlags([uid], [SEEN], "add"))
            c = _changes(account, s1)
            assert c.emails.updated == [emailId]
            inbox.close()
        finally:
            result(new.close())
