"""
The part of the store conformance suite about ids (email ids, mailbox
ids, ``findEmail``): see "Ids" in :mod:`mailnet.store.interfaces`.
:class:`~mailnet.store.conformance.StoreConformance` includes it; a
backend whose data outlives the store object also defines
:meth:`IdConformance.restartStore`.
"""

from __future__ import annotations

import re

import pytest

from mailnet.store.interfaces import INBOX
from mailnet.store.testing import msg, result

ID_SYNTAX = re.compile(r"[A-Za-z0-9_-]{1,255}")


def _open(account, name=INBOX):
    return result(account.openFolder(name))


def _append(folder, n, **kw):
    return result(folder.append(msg(n), **kw))


def _idOf(folder, uid):
    ids = folder.emailIds([uid])
    assert set(ids) == {uid}
    assert ID_SYNTAX.fullmatch(ids[uid]), ids[uid]
    return ids[uid]


class IdConformance:
    """Email ids, mailbox ids and ``findEmail``, for any backend."""

    USER = "alice@example.test"

    def restartStore(self, tmp_path, store):
        """
        A new store object on the data of ``store`` (closed by the caller
        first), as after a restart of the server; None for a backend whose
        data dies with the store (then the restart tests are skipped).
        """
        return None

    def _restart(self, tmp_path, store):
        result(store.close())
        new = self.restartStore(tmp_path, store)
        if new is None:
            pytest.skip("the backend keeps nothing across a restart")
        return new, result(new.getAccount(self.USER))

    def test_email_ids_are_valid_and_distinct(self, store, account):
        inbox = _open(account)
        uids = [_append(inbox, n) for n in range(5)]
        ids = inbox.emailIds(uids + [999])
        assert sorted(ids) == uids  # unknown UIDs are left out
        assert all(ID_SYNTAX.fullmatch(i) for i in ids.values())
        assert len(set(ids.values())) == 5
        assert inbox.emailIds([]) == {}
        inbox.close()

    def test_mailbox_ids(self, account):
        inbox, sent = _open(account), _open(account, "Sent")
        assert ID_SYNTAX.fullmatch(inbox.mailboxId)
        assert ID_SYNTAX.fullmatch(sent.mailboxId)
        assert inbox.mailboxId != sent.mailboxId
        again = _open(account)
        assert again.mailboxId == inbox.mailboxId
        for f in (inbox, sent, again):
            f.close()

    def test_find_email(self, account):
        inbox = _open(account)
        uid = _append(inbox, 1)
        emailId = _idOf(inbox, uid)
        assert result(account.findEmail(emailId)) == (INBOX, uid)
        for bad in ("Mnope", "", "a/b", "x" * 300, "..", None, 17):
            assert result(account.findEmail(bad)) is None
        inbox.close()

    def test_flags_keep_the_email_id(self, account):
        inbox = _open(account)
        uid = _append(inbox, 1)
        before = _idOf(inbox, uid)
        result(inbox.setFlags([uid], ["\\Seen", "k1"], "add"))
        assert _idOf(inbox, uid) == before
        inbox.close()

    def test_move_keeps_the_email_id(self, account):
        inbox, archive = _open(account), _open(account, "Archive")
        uids = [_append(inbox, n, flags=["k1"] if n else ()) for n in range(3)]
        before = inbox.emailIds(uids)
        pairs = result(inbox.moveTo(uids, archive))
        after = archive.emailIds([d for _, d in pairs])
        assert {before[s]: after[d] for s, d in pairs} == {before[s]: before[s] for s, _ in pairs}
        assert inbox.emailIds(uids) == {}
        for s, d in pairs:
            assert result(account.findEmail(before[s])) == ("Archive", d)
        inbox.close()
        archive.close()

    def test_move_into_the_same_folder_and_back_keeps_the_email_id(self, account):
        inbox, archive = _open(account), _open(account, "Archive")
        uid = _append(inbox, 1)
        emailId = _idOf(inbox, uid)
        [(_, uid)] = result(inbox.moveTo([uid], inbox))
        assert _idOf(inbox, uid) == emailId
        [(_, uid)] = result(inbox.moveTo([uid], archive))
        [(_, uid)] = result(archive.moveTo([uid], inbox))
        assert _idOf(inbox, uid) == emailId
        assert result(account.findEmail(emailId)) == (INBOX, uid)
        inbox.close()
        archive.close()

    def test_copy_makes_a_new_email_id(self, account):
        inbox, archive = _open(account), _open(account, "Archive")
        uid = _append(inbox, 1)
        emailId = _idOf(inbox, uid)
        [(_, copied)] = result(inbox.copyTo([uid], archive))
        [(_, same)] = result(inbox.copyTo([uid], inbox))
        copyId, sameId = _idOf(archive, copied), _idOf(inbox, same)
        assert len({emailId, copyId, sameId}) == 3
        assert _idOf(inbox, uid) == emailId
        assert result(account.findEmail(emailId)) == (INBOX, uid)
        assert result(account.findEmail(copyId)) == ("Archive", copied)
        assert result(account.findEmail(sameId)) == (INBOX, same)
        inbox.close()
        archive.close()

    def test_delivery_to_several_folders_makes_several_messages(self, store, account):
        d = store.newDelivery()
        d.addRecipient(self.USER)
        d.addRecipient(self.USER, "Sent")
        d.write(msg(1))
        [(_, _, a), (_, _, b)] = result(d.commit())
        inbox, sent = _open(account), _open(account, "Sent")
        assert _idOf(inbox, a) != _idOf(sent, b)
        assert result(account.findEmail(_idOf(sent, b))) == ("Sent", b)
        inbox.close()
        sent.close()

    def test_expunged_messages_are_not_found(self, account):
        inbox = _open(account)
        uid = _append(inbox, 1)
        emailId = _idOf(inbox, uid)
        result(inbox.expunge([uid]))
        assert inbox.emailIds([uid]) == {}
        assert result(account.findEmail(emailId)) is None
        inbox.close()

    def test_rename_keeps_mailbox_ids_and_email_ids(self, account):
        result(account.createFolder("Projects/Old"))
        parent, child = _open(account, "Projects"), _open(account, "Projects/Old")
        ids = (parent.mailboxId, child.mailboxId)
        uid = _append(child, 1)
        emailId = _idOf(child, uid)
        parent.close()
        child.close()
        result(account.renameFolder("Projects", "Work"))
        parent, child = _open(account, "Work"), _open(account, "Work/Old")
        assert (parent.mailboxId, child.mailboxId) == ids
        assert _idOf(child, uid) == emailId
        assert result(account.findEmail(emailId)) == ("Work/Old", uid)
        parent.close()
        child.close()

    def test_deleted_and_recreated_folder_has_a_new_mailbox_id(self, account):
        result(account.createFolder("Tmp"))
        folder = _open(account, "Tmp")
        old = folder.mailboxId
        uid = _append(folder, 1)
        emailId = _idOf(folder, uid)
        folder.close()
        result(account.deleteFolder("Tmp"))
        assert result(account.findEmail(emailId)) is None
        result(account.createFolder("Tmp"))
        folder = _open(account, "Tmp")
        assert ID_SYNTAX.fullmatch(folder.mailboxId)
        assert folder.mailboxId != old
        folder.close()

    def test_rename_inbox_keeps_email_ids(self, account):
        inbox = _open(account)
        uid = _append(inbox, 1)
        emailId = _idOf(inbox, uid)
        inboxId = inbox.mailboxId
        inbox.close()
        result(account.renameFolder(INBOX, "Old"))
        old = _open(account, "Old")
        [info] = old.messages()
        assert _idOf(old, info.uid) == emailId
        assert old.mailboxId != inboxId
        assert _open(account).mailboxId == inboxId
        assert result(account.findEmail(emailId)) == ("Old", info.uid)
        old.close()

    def test_ids_survive_a_restart(self, tmp_path, store, account):
        result(account.createFolder("Keep"))
        inbox, keep = _open(account), _open(account, "Keep")
        uids = [_append(inbox, n) for n in range(3)]
        [(_, moved)] = result(inbox.moveTo([uids[0]], keep))
        ids = inbox.emailIds(uids)
        movedId = _idOf(keep, moved)
        boxes = (inbox.mailboxId, keep.mailboxId)
        inbox.close()
        keep.close()
        store, account = self._restart(tmp_path, store)
        try:
            inbox, keep = _open(account), _open(account, "Keep")
            assert (inbox.mailboxId, keep.mailboxId) == boxes
            assert inbox.emailIds(uids) == ids
            assert _idOf(keep, moved) == movedId
            assert result(account.findEmail(movedId)) == ("Keep", moved)
            for uid, emailId in ids.items():
                assert result(account.findEmail(emailId)) == (INBOX, uid)
            inbox.close()
            keep.close()
        finally:
            result(store.close())
