"""
The part of the store conformance suite about ``\\Recent`` (RFC 3501
s2.3.2): ``IFolder.firstRecentUid`` and ``IFolder.claimRecent``.
:class:`~mailnet.store.conformance.StoreConformance` includes it; a backend
without them (both are optional) skips these tests, and one whose data
outlives the store object (:meth:`restartStore`) is checked across a
restart too.
"""

from __future__ import annotations

import pytest

from mailnet.store.interfaces import INBOX
from mailnet.store.testing import msg, result


def _open(account, name=INBOX):
    folder = result(account.openFolder(name))
    if getattr(folder, "firstRecentUid", None) is None:
        folder.close()
        pytest.skip("the backend does not keep \\Recent")
    return folder


def _deliver(store, user, n, folder=INBOX):
    d = store.newDelivery()
    d.addRecipient(user, folder)
    d.write(msg(n))
    [(_, _, uid)] = result(d.commit())
    return uid


class RecentConformance:
    """``firstRecentUid`` and ``claimRecent``, for any backend that has them."""

    USER = "alice@example.test"

    def test_messages_are_recent_until_claimed(self, store, account):
        inbox = _open(account)
        assert inbox.firstRecentUid == 1
        # Delivered and appended while no one has claimed anything.
        uids = [_deliver(store, self.USER, 1), result(inbox.append(msg(2))), _deliver(store, self.USER, 3)]
        assert inbox.firstRecentUid == 1
        assert inbox.claimRecent(uids[-1]) == 1
        assert inbox.firstRecentUid == uids[-1] + 1
        # A second claimant gets nothing; every handle sees the same value.
        other = _open(account)
        assert other.firstRecentUid == uids[-1] + 1
        assert other.claimRecent(uids[-1]) == uids[-1] + 1
        # A claim never moves it back.
        assert other.claimRecent(1) == uids[-1] + 1
        assert inbox.firstRecentUid == uids[-1] + 1
        # New messages are recent again, up to the next claim.
        later = _deliver(store, self.USER, 4)
        assert later >= inbox.firstRecentUid
        assert inbox.claimRecent(later) == uids[-1] + 1
        assert other.firstRecentUid == later + 1
        inbox.close()
        other.close()

    def test_claim_survives_closing_every_handle(self, store, account):
        inbox = _open(account)
        uid = result(inbox.append(msg(1)))
        inbox.claimRecent(uid)
        inbox.close()
        again = _open(result(store.getAccount(self.USER)))
        assert again.firstRecentUid == uid + 1
        again.close()

    def test_claim_survives_a_restart(self, store, account, tmp_path):
        inbox = _open(account)
        uid = result(inbox.append(msg(1)))
        inbox.claimRecent(uid)
        unclaimed = result(inbox.append(msg(2)))
        inbox.close()
        result(store.close())
        new = self.restartStore(tmp_path, store)
        if new is None:
            pytest.skip("the backend keeps nothing across a restart")
        try:
            again = _open(result(new.getAccount(self.USER)))
            assert again.firstRecentUid == uid + 1
            assert again.claimRecent(unclaimed) == uid + 1
            again.close()
        finally:
            result(new.close())

    def test_a_folder_made_again_starts_over(self, store, account):
        result(account.createFolder("Again"))
        folder = _open(account, "Again")
        uid = _deliver(store, self.USER, 1, "Again")
        folder.claimRecent(uid)
        folder.close()
        result(account.deleteFolder("Again"))
        result(account.createFolder("Again"))
        folder = _open(account, "Again")
        assert folder.firstRecentUid == 1
        uid = _deliver(store, self.USER, 2, "Again")
        assert folder.claimRecent(uid) == 1
        folder.close()

    def test_rename_keeps_it(self, store, account):
        result(account.createFolder("Before"))
        folder = _open(account, "Before")
        uid = result(folder.append(msg(1)))
        folder.claimRecent(uid)
        folder.close()
        result(account.renameFolder("Before", "After"))
        renamed = _open(account, "After")
        assert renamed.firstRecentUid == uid + 1
        renamed.close()
