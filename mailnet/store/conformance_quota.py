"""
The quota part of the store contract (:meth:`IAccount.quota`,
:meth:`IAccount.checkQuota`, :meth:`IAccount.quotaWarning`,
:meth:`IMailStore.quotaUsage`; :mod:`mailnet.store.quota`) as a test class
of its own.  A backend subclasses :class:`QuotaConformance` and defines
``makeStore(tmp_path)``; the suite sets ``store.quotaPolicy`` as the
service does.  A backend without quota methods skips it.
"""

from __future__ import annotations

import pytest

from mailnet.store.interfaces import INBOX, OverQuota
from mailnet.store.quota import QuotaPolicy
from mailnet.store.testing import failure, msg, result

USER = "alice@example.test"
OTHER = "bob@example.test"


def deliver(store, data, *users):
    d = store.newDelivery()
    for user in users or (USER,):
        d.addRecipient(user)
    d.write(data)
    return result(d.commit())


class QuotaConformance:
    """Usage, limits, the check and the warning, for any backend that has them."""

    def makeStore(self, tmp_path):
        raise NotImplementedError("a QuotaConformance subclass defines makeStore")

    def restartStore(self, tmp_path, store):
        """A new store over the same data, or None (data does not outlive the store)."""
        return None

    @pytest.fixture
    def store(self, tmp_path):
        store = self.makeStore(tmp_path)
        store.quotaPolicy = QuotaPolicy(storage=10_000, messages=5, warning=90, grace=0)
        yield store
        result(store.close())

    @pytest.fixture
    def account(self, store):
        account = result(store.getAccount(USER))
        if getattr(account, "quota", None) is None:
            pytest.skip("the backend has no quota")
        return account

    def test_usage_counts_every_way_in_and_out(self, store, account):
        usage = result(account.quota())
        assert (usage.storage, usage.messages) == (0, 0)
        assert (usage.limits.storage, usage.limits.messages) == (10_000, 5)
        one, two = msg(1), msg(2, extra=b"x" * 500 + b"\r\n")
        deliver(store, one)
        inbox = result(account.openFolder(INBOX))
        try:
            uid = result(inbox.append(two))
            usage = result(account.quota())
            assert (usage.storage, usage.messages) == (len(one) + len(two), 2)
            archive = result(account.openFolder("Archive"))
            try:
                result(inbox.copyTo([uid], archive))
                usage = result(account.quota())
                assert (usage.storage, usage.messages) == (len(one) + 2 * len(two), 3)
                # A move changes nothing; an expunge gives back.
                first = inbox.messages()[0].uid
                result(inbox.moveTo([first], archive))
                assert result(account.quota()).storage == len(one) + 2 * len(two)
                result(archive.expunge([m.uid for m in archive.messages()]))
                usage = result(account.quota())
                assert (usage.storage, usage.messages) == (len(two), 1)
            finally:
                archive.close()
        finally:
            inbox.close()

    def test_deleting_a_folder_gives_its_messages_back(self, store, account):
        result(account.createFolder("Old"))
        folder = result(account.openFolder("Old"))
        result(folder.append(msg(1)))
        folder.close()
        deliver(store, msg(2))
        result(account.deleteFolder("Old"))
        usage = result(account.quota())
        assert (usage.storage, usage.messages) == (len(msg(2)), 1)

    def test_check_refuses_over_and_too_large(self, store, account):
        assert result(account.checkQuota(9_000)) is None
        e = failure(account.checkQuota(10_001), OverQuota)
        assert e.tooLarge and e.resource == "STORAGE"
        deliver(store, msg(1, extra=b"y" * 6000 + b"\r\n"))
        e = failure(account.checkQuota(5_000), OverQuota)
        assert not e.tooLarge
        assert result(account.checkQuota(100)) is None

    def test_message_count_limit(self, store, account):
        for n in range(5):
            deliver(store, msg(n))
        e = failure(account.checkQuota(10), OverQuota)
        assert e.resource == "MESSAGE" and not e.tooLarge
        assert result(account.quota()).over

    def test_store_writes_never_refuse_what_was_accepted(self, store, account):
        # The check is the caller's: a delivery past the quota is kept.
        deliver(store, msg(1, extra=b"z" * 12_000 + b"\r\n"))
        usage = result(account.quota())
        assert usage.storage > 10_000 and usage.over

    def test_per_user_rules_override_the_default(self, store, account):
        store.quotaPolicy = QuotaPolicy(storage=10_000, messages=5, grace=0,
                                        rulesFor=lambda u: {"storage": 100} if u == USER else None)
        assert result(account.quota()).limits.storage == 100
        failure(account.checkQuota(200), OverQuota)
        other = result(store.getAccount(OTHER))
        assert result(other.checkQuota(200)) is None

    def test_grace_lets_the_last_message_past_the_limit(self, store, account):
        store.quotaPolicy = QuotaPolicy(storage=10_000, grace=10)
        deliver(store, msg(1, extra=b"a" * 9000 + b"\r\n"))
        used = result(account.quota()).storage
        assert result(account.checkQuota(11_000 - used)) is None
        failure(account.checkQuota(11_000 - used + 1), OverQuota)

    def test_warning_once_per_crossing(self, store, account):
        assert result(account.quotaWarning()) is False
        deliver(store, msg(1, extra=b"w" * 9200 + b"\r\n"))
        assert result(account.quota()).warned
        assert result(account.quotaWarning()) is True
        assert result(account.quotaWarning()) is False
        # Below the threshold again, then across it: one more warning.
        inbox = result(account.openFolder(INBOX))
        try:
            result(inbox.expunge([m.uid for m in inbox.messages()]))
        finally:
            inbox.close()
        assert result(account.quotaWarning()) is False
        deliver(store, msg(2, extra=b"w" * 9200 + b"\r\n"))
        assert result(account.quotaWarning()) is True

    def test_synchronous_usage_for_smtp(self, store, account):
        quotaUsage = getattr(store, "quotaUsage", None)
        if quotaUsage is None:
            pytest.skip("no synchronous usage")
        result(account.quota())  # known now
        deliver(store, msg(1))
        usage = quotaUsage(USER)
        assert usage is not None and usage.messages == 1 and usage.limits.storage == 10_000

    def test_usage_survives_a_restart(self, store, account, tmp_path):
        deliver(store, msg(1))
        before = result(account.quota())
        result(store.close())
        new = self.restartStore(tmp_path, store)
        if new is None:
            pytest.skip("the backend keeps nothing across a restart")
        new.quotaPolicy = store.quotaPolicy
        try:
            after = result(result(new.getAccount(USER)).quota())
            assert (after.storage, after.messages) == (before.storage, before.messages)
        finally:
            result(new.close())
