"""
The store conformance suite: every documented behaviour of
:mod:`mailnet.store.interfaces`, for any backend.

A backend runs it by subclassing :class:`StoreConformance` in a test
module and saying how to make a store (``docs/extending.md`` shows a whole
example)::

    from mailnet.store.conformance import StoreConformance

    class TestMyStore(StoreConformance):
        def makeStore(self, tmp_path, limits=None):
            return MyStore(tmp_path / "mail", limits=limits)

The suite drives Deferreds without a reactor: every Deferred a store
method returns must have fired by the time the method returns (a store
that does its blocking work in threads takes a synchronous runner for
this, like the Maildir store's ``runner=``;
:func:`mailnet.store.testing.syncRunner` is one).

Needs pytest and hypothesis (``pip install 'mailnet[test]'``); nothing
else in mailnet imports this module.
"""

from __future__ import annotations

try:
    import pytest
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"mailnet.store.conformance needs pytest and hypothesis ({e.name} is missing): "
        "pip install 'mailnet[test]'"
    ) from e

from zope.interface.verify import verifyObject

from mailnet.store.base import FolderLimits
from mailnet.store.conformance_ids import IdConformance
from mailnet.store.conformance_read import ReadConformance
from mailnet.store.conformance_recent import RecentConformance
from mailnet.store.conformance_threads import ThreadConformance
from mailnet.store.interfaces import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    INBOX,
    SEEN,
    SPECIAL_USE,
    FolderExists,
    FolderLimitExceeded,
    IAccount,
    IDelivery,
    IFolder,
    IMailStore,
    InvalidFolderName,
    NoSuchAccount,
    NoSuchFolder,
    NoSuchMessage,
    StoreError,
)
from mailnet.store.testing import Recorder, failure, msg, result, syncRunner

__all__ = ["StoreConformance", "Recorder", "failure", "msg", "result", "syncRunner"]

USER = "alice@example.test"
OTHER = "bob@example.test"


def openf(account, name=INBOX):
    return result(account.openFolder(name))


def names(account):
    return [f.name for f in result(account.listFolders())]


def deliver(store, recipients, body, **kw):
    d = store.newDelivery()
    for r in recipients:
        d.addRecipient(*r) if isinstance(r, tuple) else d.addRecipient(r)
    half = len(body) // 2
    d.write(body[:half])
    d.write(body[half:])
    return result(d.commit(**kw))


def body(folder, uid):
    f = result(folder.openMessage(uid))
    try:
        return f.read()
    finally:
        f.close()


BAD_NAMES = ["..", "a/..", "../a", "/abs", "a\0b", "a//b", "", "a/", "a\\b", "a/./b", "x\x01", "x\x7f"]
FLAG_POOL = [SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, "$Forwarded", "k1", "k2"]


class StoreConformance(IdConformance, ReadConformance, RecentConformance, ThreadConformance):
    """
    The suite, as a pytest test class: subclass it (name the subclass
    ``Test...``) and define :meth:`makeStore` (and, for a backend whose
    data outlives the store object, :meth:`restartStore`).
    """

    def makeStore(self, tmp_path, limits=None):
        """
        A new, empty store keeping its data under ``tmp_path`` (a
        :class:`pathlib.Path` of its own), applying ``limits`` (a
        :class:`~mailnet.store.base.FolderLimits`; None: the defaults).
        """
        raise NotImplementedError("a StoreConformance subclass defines makeStore")

    @pytest.fixture
    def store(self, tmp_path):
        s = self.makeStore(tmp_path)
        yield s
        result(s.close())

    @pytest.fixture
    def account(self, store):
        return result(store.getAccount(USER))

    # Interfaces

    def test_provides_interfaces(self, store, account):
        assert verifyObject(IMailStore, store)
        assert verifyObject(IAccount, account)
        assert account.username == USER
        folder = openf(account)
        assert verifyObject(IFolder, folder)
        delivery = store.newDelivery()
        assert verifyObject(IDelivery, delivery)
        delivery.abort()
        folder.close()

    # Accounts

    def test_new_account_has_inbox_and_special_use(self, account):
        infos = result(account.listFolders())
        assert [f.name for f in infos] == [INBOX] + sorted(SPECIAL_USE)
        for f in infos:
            assert f.subscribed
            assert f.specialUse == SPECIAL_USE.get(f.name)

    def test_get_account_without_create(self, store):
        failure(store.getAccount(OTHER, create=False), NoSuchAccount)
        result(store.getAccount(OTHER))
        account = result(store.getAccount(OTHER, create=False))
        assert account.username == OTHER

    def test_get_account_twice_keeps_state(self, store, account):
        result(account.createFolder("Keep"))
        again = result(store.getAccount(USER))
        assert "Keep" in names(again)

    def test_bad_usernames(self, store):
        for bad in ["../x@example.test", "a/b@example.test", "x@..", "x@a/b", "", ".@x", "x\0@y"]:
            failure(store.getAccount(bad), NoSuchAccount)

    # Folder names

    @pytest.mark.parametrize("bad", BAD_NAMES)
    def test_invalid_names(self, account, bad):
        failure(account.createFolder(bad), InvalidFolderName)
        failure(account.openFolder(bad), InvalidFolderName)
        failure(account.renameFolder("Sent", bad), InvalidFolderName)
        failure(account.setSubscribed(bad, True), InvalidFolderName)
        failure(account.deleteFolder(bad), InvalidFolderName)

    def test_inbox_case_insensitive(self, account):
        folder = openf(account, "inbox")
        assert folder.name == INBOX
        failure(account.createFolder("Inbox"), FolderExists)
        result(account.createFolder("iNbOx/Sub"))
        assert "INBOX/Sub" in names(account)
        folder.close()

    def test_unicode_folder_names(self, store, account):
        for name in ["Entw\u00fcrfe", "\u65e5\u672c\u8a9e/\u5b50", "A&B", "caf\u00e9 & cr\u00e8me"]:
            result(account.createFolder(name))
            folder = openf(account, name)
            assert folder.name == name
            result(folder.append(msg()))
            folder.close()
        listed = names(account)
        for name in ["Entw\u00fcrfe", "\u65e5\u672c\u8a9e", "\u65e5\u672c\u8a9e/\u5b50", "A&B"]:
            assert name in listed
        reopened = result(store.getAccount(USER))
        assert len(openf(reopened, "A&B").messages()) == 1

    # Folder operations

    def test_create_and_list(self, account):
        result(account.createFolder("Zeta"))
        result(account.createFolder("Alpha/Beta/Gamma"))
        listed = names(account)
        assert listed[0] == INBOX
        assert listed[1:] == sorted(listed[1:])
        for n in ["Zeta", "Alpha", "Alpha/Beta", "Alpha/Beta/Gamma"]:
            assert n in listed
        failure(account.createFolder("Zeta"), FolderExists)
        failure(account.createFolder("Alpha/Beta"), FolderExists)
        created = [f for f in result(account.listFolders()) if f.name == "Zeta"][0]
        assert not created.subscribed and created.specialUse is None

    def test_delete_folder(self, account):
        result(account.createFolder("Parent/Child"))
        folder = openf(account, "Parent")
        result(folder.append(msg()))
        folder.close()
        result(account.deleteFolder("Parent"))
        listed = names(account)
        assert "Parent" not in listed
        assert "Parent/Child" in listed
        failure(account.openFolder("Parent"), NoSuchFolder)
        failure(account.deleteFolder("Parent"), NoSuchFolder)
        failure(account.deleteFolder("inbox"), InvalidFolderName)
        # Recreated: empty.
        result(account.createFolder("Parent"))
        assert openf(account, "Parent").messages() == []

    def test_delete_open_folder_tells_listeners(self, account):
        result(account.createFolder("Gone"))
        folder = openf(account, "Gone")
        uid = result(folder.append(msg()))
        rec = Recorder()
        folder.addListener(rec)
        result(account.deleteFolder("Gone"))
        assert ("expunged", folder, [uid]) in rec.events
        failure(folder.append(msg()), NoSuchFolder)
        folder.close()

    def test_rename_folder_with_children(self, store, account):
        result(account.createFolder("Old/Kid"))
        result(account.setSubscribed("Old/Kid", True))
        folder = openf(account, "Old")
        uid = result(folder.append(msg(1), flags=[SEEN]))
        validity = folder.uidValidity
        folder.close()
        result(account.renameFolder("Old", "New/Place"))
        listed = names(account)
        assert "Old" not in listed and "Old/Kid" not in listed
        assert {"New", "New/Place", "New/Place/Kid"} <= set(listed)
        moved = openf(account, "New/Place")
        assert moved.uidValidity == validity
        [info] = moved.messages()
        assert info.uid == uid and info.flags == {SEEN}
        assert body(moved, uid) == msg(1)
        subscribed = {f.name for f in result(account.listFolders()) if f.subscribed}
        assert "New/Place/Kid" in subscribed
        moved.close()

    def test_rename_errors(self, account):
        result(account.createFolder("A"))
        result(account.createFolder("B"))
        failure(account.renameFolder("Nope", "C"), NoSuchFolder)
        failure(account.renameFolder("A", "B"), FolderExists)
        failure(account.renameFolder("A", "inbox"), FolderExists)
        failure(account.renameFolder("A", "A/Sub"), InvalidFolderName)

    def test_rename_inbox(self, store, account):
        result(account.createFolder("INBOX/Child"))
        inbox = openf(account)
        rec = Recorder()
        inbox.addListener(rec)
        uids = [result(inbox.append(msg(i), flags=[SEEN] if i else [])) for i in range(3)]
        result(account.renameFolder("INBOX", "Old Mail"))
        assert inbox.messages() == []
        assert ("expunged", inbox, uids) in rec.events
        assert inbox.uidNext > max(uids)
        listed = names(account)
        assert INBOX in listed and "Old Mail" in listed and "INBOX/Child" in listed
        old = openf(account, "Old Mail")
        infos = old.messages()
        assert [body(old, i.uid) for i in infos] == [msg(i) for i in range(3)]
        assert [i.flags for i in infos] == [frozenset(), {SEEN}, {SEEN}]
        # INBOX keeps working.
        uid = result(inbox.append(msg(9)))
        assert uid > max(uids)
        inbox.close()
        old.close()

    def test_subscriptions(self, account):
        result(account.setSubscribed("Not/There", True))
        result(account.setSubscribed("Trash", False))
        result(account.setSubscribed("inbox", False))
        infos = {f.name: f for f in result(account.listFolders())}
        assert "Not/There" not in infos  # listFolders lists existing folders
        assert not infos["Trash"].subscribed
        assert not infos[INBOX].subscribed
        result(account.createFolder("Not/There"))
        infos = {f.name: f for f in result(account.listFolders())}
        assert infos["Not/There"].subscribed
        assert not infos["Not"].subscribed
        assert "Not/There" in result(account.listSubscriptions())
        assert "Trash" not in result(account.listSubscriptions())
        result(account.setSubscribed("Not/There", False))
        result(account.setSubscribed("Not/There", False))  # idempotent
        assert "Not/There" not in result(account.listSubscriptions())
        infos = {f.name: f for f in result(account.listFolders())}
        assert not infos["Not/There"].subscribed
        # RFC 3501 s6.3.9: a name stays subscribed when its folder goes
        result(account.setSubscribed("Not/There", True))
        result(account.deleteFolder("Not/There"))
        assert "Not/There" in result(account.listSubscriptions())

    def test_open_missing_folder(self, account):
        failure(account.openFolder("Missing"), NoSuchFolder)

    # Messages

    def test_append_and_read(self, account):
        folder = openf(account)
        assert folder.messages() == []
        assert folder.uidValidity > 0
        assert folder.uidNext >= 1
        assert folder.highestModSeq >= 1
        m0 = folder.highestModSeq
        data = msg(1, b"x" * 10000)
        uid = result(folder.append(data, flags=[SEEN, "\\flagged", "$Label1", "\\Recent"], internalDate=1_000_000_000))
        info = folder.get(uid)
        assert info.uid == uid
        assert info.size == len(data)
        assert info.flags == {SEEN, FLAGGED, "$Label1"}
        assert info.internalDate == pytest.approx(1_000_000_000, abs=1)
        assert info.modseq > m0
        assert folder.highestModSeq == info.modseq
        assert folder.uidNext > uid
        assert body(folder, uid) == data
        assert folder.get(uid + 100) is None
        failure(folder.openMessage(uid + 100), NoSuchMessage)
        folder.close()

    def test_append_file_object_and_default_date(self, account):
        import io
        import time

        folder = openf(account)
        before = time.time()
        uid = result(folder.append(io.BytesIO(msg(2))))
        info = folder.get(uid)
        assert before - 2 <= info.internalDate <= time.time() + 2
        assert info.flags == frozenset()
        assert body(folder, uid) == msg(2)
        folder.close()

    def test_uids_ascend_and_never_reused(self, store, account):
        folder = openf(account)
        uids = [result(folder.append(msg(i))) for i in range(5)]
        assert uids == sorted(uids) and len(set(uids)) == 5
        assert result(folder.expunge(uids[-2:])) == uids[-2:]
        new = result(folder.append(msg(9)))
        assert new > uids[-1]
        folder.close()
        again = openf(result(store.getAccount(USER)))
        assert again.uidNext > new
        assert [i.uid for i in again.messages()] == uids[:3] + [new]
        again.close()

    def test_messages_sorted_snapshot(self, account):
        folder = openf(account)
        for i in range(4):
            result(folder.append(msg(i)))
        snap = folder.messages()
        assert [i.uid for i in snap] == sorted(i.uid for i in snap)
        result(folder.append(msg(5)))
        assert len(snap) == 4  # a snapshot, not a live view
        folder.close()

    # Flags and modseq

    def test_set_flags_modes(self, account):
        folder = openf(account)
        a = result(folder.append(msg(1)))
        b = result(folder.append(msg(2), flags=[SEEN]))
        changed, failed = result(folder.setFlags([a, b], [SEEN, FLAGGED], "add"))
        assert failed == []
        assert [(i.uid, i.flags) for i in changed] == [(a, {SEEN, FLAGGED}), (b, {SEEN, FLAGGED})]
        changed, _ = result(folder.setFlags([a], [SEEN], "remove"))
        assert [(i.uid, i.flags) for i in changed] == [(a, {FLAGGED})]
        changed, _ = result(folder.setFlags([b], [DRAFT, "kw"], "set"))
        assert [(i.uid, i.flags) for i in changed] == [(b, {DRAFT, "kw"})]
        assert folder.get(b).flags == {DRAFT, "kw"}
        # No change: nothing reported, modseq unchanged.
        m = folder.highestModSeq
        changed, failed = result(folder.setFlags([b], [DRAFT], "add"))
        assert changed == [] and failed == []
        assert folder.highestModSeq == m
        # Missing UIDs are ignored.
        changed, failed = result(folder.setFlags([9999], [SEEN], "add"))
        assert changed == [] and failed == []
        folder.close()

    def test_all_system_flags_and_keywords_roundtrip(self, store, account):
        folder = openf(account)
        flags = {SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, "$Forwarded", "$Junk", "NonJunk", "work"}
        uid = result(folder.append(msg()))
        result(folder.setFlags([uid], flags))
        assert folder.get(uid).flags == flags
        folder.close()
        again = openf(result(store.getAccount(USER)))
        assert again.get(uid).flags == flags
        again.close()

    def test_modseq_monotonic(self, account):
        folder = openf(account)
        seen = [folder.highestModSeq]
        uid = result(folder.append(msg()))
        seen.append(folder.highestModSeq)
        assert folder.get(uid).modseq == folder.highestModSeq
        for flags in ([SEEN], [FLAGGED], []):
            changed, _ = result(folder.setFlags([uid], flags))
            assert changed[0].modseq == folder.highestModSeq
            seen.append(folder.highestModSeq)
        other = result(folder.append(msg(2)))
        seen.append(folder.highestModSeq)
        result(folder.expunge([other]))
        seen.append(folder.highestModSeq)
        assert seen == sorted(seen) and len(set(seen)) == len(seen)
        assert all(i.modseq >= 1 for i in folder.messages())
        folder.close()

    def test_unchanged_since(self, account):
        folder = openf(account)
        a = result(folder.append(msg(1)))
        b = result(folder.append(msg(2)))
        base = folder.highestModSeq
        result(folder.setFlags([b], [SEEN]))  # b now newer than base
        changed, failed = result(folder.setFlags([a, b], [FLAGGED], "add", unchangedSince=base))
        assert [i.uid for i in changed] == [a]
        assert failed == [b]
        assert folder.get(b).flags == {SEEN}
        folder.close()

    def test_modseq_survives_reopen(self, store, account):
        folder = openf(account)
        uid = result(folder.append(msg()))
        result(folder.setFlags([uid], [SEEN]))
        result(folder.setFlags([uid], [FLAGGED]))
        hms, mod, validity = folder.highestModSeq, folder.get(uid).modseq, folder.uidValidity
        folder.close()
        again = openf(result(store.getAccount(USER)))
        assert again.highestModSeq >= hms
        assert again.get(uid).modseq == mod
        assert again.uidValidity == validity
        again.close()

    # Expunge

    def test_expunge(self, account):
        folder = openf(account)
        uids = [result(folder.append(msg(i))) for i in range(4)]
        before = folder.highestModSeq
        assert result(folder.expunge([uids[2], uids[0], 9999])) == [uids[0], uids[2]]
        assert [i.uid for i in folder.messages()] == [uids[1], uids[3]]
        assert folder.get(uids[0]) is None
        failure(folder.openMessage(uids[0]), NoSuchMessage)
        assert folder.highestModSeq > before
        assert folder.expungedSince(before) == [uids[0], uids[2]]
        assert folder.expungedSince(folder.highestModSeq) == []
        assert result(folder.expunge([uids[0]])) == []
        folder.close()

    # Copy and move

    def test_copy(self, account):
        src = openf(account)
        dst = openf(account, "Archive")
        a = result(src.append(msg(1), flags=[SEEN, "kw"], internalDate=1_200_000_000))
        b = result(src.append(msg(2), internalDate=1_300_000_000))
        first = result(dst.append(msg(0)))
        rec = Recorder()
        dst.addListener(rec)
        pairs = result(src.copyTo([b, a, 9999], dst))
        assert [p[0] for p in pairs] == [a, b]
        assert all(d > first for _, d in pairs)
        assert pairs[0][1] < pairs[1][1]
        info = dst.get(pairs[0][1])
        assert info.flags == {SEEN, "kw"}
        assert info.internalDate == pytest.approx(1_200_000_000, abs=1)
        assert body(dst, pairs[1][1]) == msg(2)
        assert len(src.messages()) == 2
        assert rec.events == [("added", dst, [d for _, d in pairs])]
        src.close()
        dst.close()

    def test_copy_to_same_folder(self, account):
        folder = openf(account)
        a = result(folder.append(msg(1)))
        [(s, d)] = result(folder.copyTo([a], folder))
        assert s == a and d > a
        assert body(folder, d) == msg(1)
        folder.close()

    def test_move(self, account):
        src = openf(account)
        dst = openf(account, "Trash")
        srcRec, dstRec = Recorder(), Recorder()
        src.addListener(srcRec)
        dst.addListener(dstRec)
        uids = [result(src.append(msg(i), flags=[FLAGGED] if i == 1 else [])) for i in range(3)]
        srcRec.clear()
        pairs = result(src.moveTo([uids[1], uids[2]], dst))
        assert [p[0] for p in pairs] == uids[1:]
        assert [i.uid for i in src.messages()] == [uids[0]]
        assert [i.uid for i in dst.messages()] == [d for _, d in pairs]
        assert dst.get(pairs[0][1]).flags == {FLAGGED}
        assert body(dst, pairs[1][1]) == msg(2)
        assert srcRec.events == [("expunged", src, uids[1:])]
        assert dstRec.events == [("added", dst, [d for _, d in pairs])]
        assert src.expungedSince(0) == uids[1:]
        src.close()
        dst.close()

    # Sharing and notifications

    def test_handles_share_one_index(self, account):
        one = openf(account)
        two = openf(account, "inbox")
        rec1, rec2 = Recorder(), Recorder()
        one.addListener(rec1)
        two.addListener(rec2)
        uid = result(one.append(msg()))
        assert two.get(uid) is not None
        assert two.uidNext == one.uidNext and two.highestModSeq == one.highestModSeq
        assert rec1.events == [("added", one, [uid])]
        assert rec2.events == [("added", two, [uid])]
        result(two.setFlags([uid], [SEEN]))
        assert one.get(uid).flags == {SEEN}
        assert rec1.events[-1] == ("flags", one, [(uid, {SEEN})])
        assert rec2.events[-1] == ("flags", two, [(uid, {SEEN})])
        result(one.expunge([uid]))
        assert rec2.events[-1] == ("expunged", two, [uid])
        two.removeListener(rec2)
        two.removeListener(rec2)  # unknown: ignored
        result(one.append(msg()))
        assert rec2.kinds() == ["added", "flags", "expunged"]
        one.close()
        one.close()  # idempotent
        uid3 = result(two.append(msg()))
        assert two.get(uid3) is not None
        two.close()

    def test_delivery_notifies_open_folders(self, store, account):
        folder = openf(account)
        rec = Recorder()
        folder.addListener(rec)
        [(user, name, uid)] = deliver(store, [USER], msg())
        assert (user, name) == (USER, INBOX)
        assert rec.events == [("added", folder, [uid])]
        assert folder.get(uid).size == len(msg())
        folder.close()

    def test_closed_handle_gets_no_events(self, account):
        one = openf(account)
        two = openf(account)
        rec = Recorder()
        one.addListener(rec)
        one.close()
        result(two.append(msg()))
        assert rec.events == []
        two.close()

    def test_listener_exceptions_do_not_break_the_store(self, account):
        class Broken:
            def messagesAdded(self, folder, infos):
                raise RuntimeError("boom")

            flagsChanged = messagesExpunged = messagesAdded

        folder = openf(account)
        folder.addListener(Broken())
        rec = Recorder()
        folder.addListener(rec)
        uid = result(folder.append(msg()))
        result(folder.setFlags([uid], [SEEN]))
        result(folder.expunge([uid]))
        assert rec.kinds() == ["added", "flags", "expunged"]
        folder.close()

    def test_reopen_after_last_close(self, store, account):
        folder = openf(account, "Drafts")
        uid = result(folder.append(msg(), flags=[DRAFT]))
        folder.close()
        again = openf(account, "Drafts")
        assert again.get(uid).flags == {DRAFT}
        again.close()

    def test_refresh_noop(self, account):
        folder = openf(account)
        rec = Recorder()
        folder.addListener(rec)
        uid = result(folder.append(msg()))
        rec.clear()
        assert result(folder.refresh()) is None
        assert rec.events == []
        assert folder.get(uid) is not None
        folder.close()

    # Delivery

    def test_delivery_several_recipients(self, store, account):
        result(account.createFolder("Lists/Python"))
        data = msg(7, b"y" * 3000)
        res = deliver(
            store,
            [USER, (USER, "Lists/Python"), (USER, "inbox"), OTHER],
            data,
            internalDate=1_100_000_000,
            flags=[FLAGGED],
        )
        assert [(u, f) for u, f, _ in res] == [(USER, INBOX), (USER, "Lists/Python"), (OTHER, INBOX)]
        for user, name, uid in res:
            folder = openf(result(store.getAccount(user)), name)
            info = folder.get(uid)
            assert info.flags == {FLAGGED}
            assert info.size == len(data)
            assert info.internalDate == pytest.approx(1_100_000_000, abs=1)
            assert body(folder, uid) == data
            folder.close()
        # The delivery made bob's account.
        assert names(result(store.getAccount(OTHER, create=False)))[0] == INBOX

    def test_delivery_to_missing_folder(self, store, account):
        d = store.newDelivery()
        with pytest.raises(NoSuchFolder):
            d.addRecipient(USER, "Nope")
        with pytest.raises(NoSuchFolder):
            d.addRecipient("new@example.test", "Nope")
        with pytest.raises(InvalidFolderName):
            d.addRecipient(USER, "../x")
        d.addRecipient("new@example.test", "Sent")  # made with the account
        d.write(msg())
        [(_, _, uid)] = result(d.commit())
        folder = openf(result(store.getAccount("new@example.test")), "Sent")
        assert folder.get(uid) is not None
        folder.close()

    def test_delivery_abort_leaves_nothing(self, store, account):
        folder = openf(account)
        rec = Recorder()
        folder.addListener(rec)
        next_, hms = folder.uidNext, folder.highestModSeq
        d = store.newDelivery()
        d.addRecipient(USER)
        d.addRecipient(OTHER)
        d.write(msg())
        d.abort()
        d.abort()  # idempotent
        assert folder.messages() == []
        assert rec.events == []
        result(folder.refresh())
        assert folder.messages() == [] and folder.highestModSeq == hms
        other = openf(result(store.getAccount(OTHER)))
        assert other.messages() == []
        # Nothing left behind, and later deliveries are unaffected.
        [(_, _, uid)] = deliver(store, [USER], msg(1))
        assert uid >= next_
        folder.close()
        other.close()

    def test_abort_after_write_error_is_safe(self, store, account):
        d = store.newDelivery()
        d.addRecipient(USER)
        d.abort()
        d.abort()
        with pytest.raises(StoreError):
            d.write(b"late")

    def test_commit_and_concurrent_deliveries(self, store, account):
        folder = openf(account)
        deliveries = []
        for i in range(10):
            d = store.newDelivery()
            d.addRecipient(USER)
            d.write(msg(i))
            deliveries.append(d)
        results = [result(d.commit()) for d in deliveries]
        uids = [r[0][2] for r in results]
        assert len(set(uids)) == 10
        assert sorted(i.uid for i in folder.messages()) == sorted(uids)
        for i, uid in enumerate(uids):
            assert body(folder, uid) == msg(i)
        folder.close()

    def test_empty_message(self, store, account):
        [(_, _, uid)] = deliver(store, [USER], b"")
        folder = openf(account)
        assert folder.get(uid).size == 0
        assert body(folder, uid) == b""
        folder.close()

    # Property test: flag operations against a model.

    # Every subclass runs this one method (one "executor" each): harmless.
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
    )
    @given(
        ops=st.lists(
            st.tuples(
                st.sampled_from(["set", "add", "remove", "expunge", "append"]),
                st.lists(st.integers(0, 5), max_size=3),
                st.frozensets(st.sampled_from(FLAG_POOL), max_size=4),
            ),
            max_size=12,
        )
    )
    def test_flag_ops_match_model(self, store, ops):
        account = result(store.getAccount("prop@example.test"))
        folder = openf(account)
        existing = [i.uid for i in folder.messages()]
        result(folder.expunge(existing))
        model = {}
        for i in range(3):
            uid = result(folder.append(msg(i)))
            model[uid] = frozenset()
        last = folder.highestModSeq
        for op, picks, flags in ops:
            live = sorted(model)
            uids = [live[p] for p in picks if p < len(live)]
            if op == "append":
                uid = result(folder.append(msg(), flags=flags))
                model[uid] = flags
            elif op == "expunge":
                assert result(folder.expunge(uids)) == sorted(set(uids))
                for uid in uids:
                    model.pop(uid, None)
            else:
                changed, _ = result(folder.setFlags(uids, flags, op))
                expected = []
                for uid in sorted(set(uids)):
                    old = model[uid]
                    model[uid] = flags if op == "set" else (old | flags if op == "add" else old - flags)
                    if model[uid] != old:
                        expected.append(uid)
                assert [i.uid for i in changed] == expected
            assert folder.highestModSeq >= last
            last = folder.highestModSeq
            assert {i.uid: i.flags for i in folder.messages()} == model
        folder.close()
        again = openf(result(store.getAccount("prop@example.test")))
        assert {i.uid: i.flags for i in again.messages()} == model
        again.close()

    # Folder-name rules and limits (CREATE and RENAME)

    @pytest.mark.parametrize(
        "name",
        ["a*b", "50%", "x\x85y", "x\x9fy", "evil\u202egnp.exe", "a\u2066b", "\u200fRTL", "ok/b*d"],
    )
    def test_new_folder_names_without_wildcards_or_bidi_controls(self, account, name):
        failure(account.createFolder(name), InvalidFolderName)
        result(account.createFolder("Plain"))
        failure(account.renameFolder("Plain", name), InvalidFolderName)
        assert name not in names(account) and "Plain" in names(account)

    def test_folder_name_length_and_depth_limits(self, store, account):
        default = FolderLimits()
        failure(account.createFolder("x" * (default.nameLength + 1)), FolderLimitExceeded)
        result(account.createFolder("x" * default.nameLength))
        failure(account.createFolder("/".join(["d"] * (default.depth + 1))), FolderLimitExceeded)
        result(account.createFolder("/".join(["d"] * default.depth)))
        # A rename may not push a child past the limits either.
        result(account.createFolder("p/q"))
        failure(account.renameFolder("p", "/".join(["e"] * default.depth)), FolderLimitExceeded)
        assert "p/q" in names(account)

    def test_folder_count_limit(self, tmp_path):
        store = self.makeStore(tmp_path, FolderLimits(folders=10, nameLength=50, depth=3))
        account = result(store.getAccount(USER))
        have = len(names(account))  # INBOX and the special-use folders
        assert have < 10
        for i in range(10 - have):
            result(account.createFolder("f%d" % i))
        e = failure(account.createFolder("one-more"), FolderLimitExceeded)
        assert "10" in str(e)
        result(account.deleteFolder("f0"))
        # Parents count too: "a/b" needs two.
        failure(account.createFolder("a/b"), FolderLimitExceeded)
        result(account.createFolder("a"))
        failure(account.renameFolder(INBOX, "inbox-copy"), FolderLimitExceeded)
        result(account.renameFolder("a", "b"))
        failure(account.createFolder("x" * 51), FolderLimitExceeded)
        failure(account.createFolder("b/c/d/e"), FolderLimitExceeded)
        assert len(names(account)) == 10
        result(store.close())
