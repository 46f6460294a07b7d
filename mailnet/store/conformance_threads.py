"""
The part of the store conformance suite about thread ids
(``IFolder.threadIds``, ``IAccount.threadEmails``): see "Thread ids" in
:mod:`mailnet.store.interfaces`.  :class:`~mailnet.store.conformance.StoreConformance`
includes it; the restart test uses :meth:`IdConformance.restartStore`.
"""

from __future__ import annotations

import itertools
import re

from mailnet.store.interfaces import INBOX
from mailnet.store.testing import result

ID_SYNTAX = re.compile(r"[A-Za-z0-9_-]{1,255}")


def mail(mid, subject="Plans", refs=(), inReplyTo=None):
    """A message with the threading fields (ids are made unique per test by the caller)."""
    lines = [b"From: a@example.test", b"To: b@example.test", b"Subject: " + subject.encode()]
    if mid:
        lines.append(b"Message-ID: <%s@example.test>" % mid.encode())
    if refs:
        lines.append(b"References: " + b" ".join(b"<%s@example.test>" % r.encode() for r in refs))
    if inReplyTo:
        lines.append(b"In-Reply-To: <%s@example.test>" % inReplyTo.encode())
    return b"\r\n".join(lines) + b"\r\n\r\nbody\r\n"


def _open(account, name=INBOX):
    return result(account.openFolder(name))


def _threads(folder, uids):
    out = result(folder.threadIds(uids))
    assert all(ID_SYNTAX.fullmatch(t) for t in out.values()), out
    return out


class ThreadConformance:
    """Thread ids for any backend."""

    def test_thread_ids_group_replies(self, account):
        inbox = _open(account)
        a = result(inbox.append(mail("t1-a")))
        b = result(inbox.append(mail("t1-b", "Re: Plans", refs=["t1-a"])))
        c = result(inbox.append(mail("t1-c", "Re: plans", inReplyTo="t1-b")))
        other = result(inbox.append(mail("t1-x", "Something else")))
        ids = _threads(inbox, [a, b, c, other, 999])
        assert set(ids) == {a, b, c, other}  # unknown UIDs are left out
        assert ids[a] == ids[b] == ids[c] != ids[other]
        assert result(inbox.threadIds([])) == {}
        members = result(account.threadEmails(ids[a]))
        emails = inbox.emailIds([a, b, c])
        assert sorted(members) == sorted(emails.values())
        assert result(account.threadEmails("Tnope")) == []
        inbox.close()

    def test_any_arrival_order(self, account):
        inbox = _open(account)
        for n, order in enumerate(itertools.permutations(range(3))):
            p = "t2-%d-" % n
            msgs = [mail(p + "a"), mail(p + "b", "Re: Plans", refs=[p + "a"]),
                    mail(p + "c", "Re: Plans", refs=[p + "a", p + "b"])]
            uids = []
            for i in order:
                uids.append(result(inbox.append(msgs[i])))
                # asked after each arrival (every two of them are linked)
                ids = _threads(inbox, uids)
                assert len(set(ids.values())) == 1, (order, ids)
            ids = _threads(inbox, uids)
            assert len(set(ids.values())) == 1, (order, ids)
            # the thread keeps the id of the message indexed first
            first = inbox.emailIds([uids[0]])[uids[0]]
            assert result(account.threadEmails(ids[uids[0]]))[0] == first
        inbox.close()

    def test_all_at_once_in_any_order(self, account):
        inbox = _open(account)
        for n, order in enumerate(itertools.permutations(range(3))):
            p = "t3-%d-" % n
            msgs = [mail(p + "a"), mail(p + "b", "Re: Plans", inReplyTo=p + "a"),
                    mail(p + "c", "Re: Plans", inReplyTo=p + "b")]
            uids = [result(inbox.append(msgs[i])) for i in order]
            ids = _threads(inbox, uids)
            assert len(set(ids.values())) == 1, (order, ids)
        inbox.close()

    def test_late_parent_takes_the_thread_id(self, account):
        inbox = _open(account)
        reply = result(inbox.append(mail("t4-b", "Re: Plans", refs=["t4-a"])))
        [thread] = _threads(inbox, [reply]).values()
        parent = result(inbox.append(mail("t4-a")))
        assert _threads(inbox, [parent, reply]) == {parent: thread, reply: thread}
        inbox.close()

    def test_missing_parent_joins_two_threads(self, account):
        inbox = _open(account)
        a = result(inbox.append(mail("t5-a")))
        c = result(inbox.append(mail("t5-c", "Re: Plans", inReplyTo="t5-b")))
        ids = _threads(inbox, [a, c])
        assert ids[a] != ids[c]
        b = result(inbox.append(mail("t5-b", "Re: Plans", inReplyTo="t5-a")))
        # the merged thread keeps the id of the older thread
        assert _threads(inbox, [a, b, c]) == {a: ids[a], b: ids[a], c: ids[a]}
        assert len(result(account.threadEmails(ids[a]))) == 3
        assert result(account.threadEmails(ids[c])) == []
        inbox.close()

    def test_thread_of_email_ids_across_folders(self, account):
        inbox, archive = _open(account), _open(account, "Archive")
        a = result(inbox.append(mail("t9-a")))
        b = result(archive.append(mail("t9-b", "Re: Plans", refs=["t9-a"])))
        emailA, emailB = inbox.emailIds([a])[a], archive.emailIds([b])[b]
        inbox.close()
        archive.close()
        found = result(account.threadOf([emailB, emailA, "Mnope", None, emailA]))
        assert set(found) == {emailA, emailB} and found[emailA] == found[emailB]
        assert ID_SYNTAX.fullmatch(found[emailA])
        assert sorted(result(account.threadEmails(found[emailA]))) == sorted([emailA, emailB])

    def test_move_and_copy_keep_the_thread(self, account):
        inbox, archive = _open(account), _open(account, "Archive")
        a = result(inbox.append(mail("t6-a")))
        b = result(inbox.append(mail("t6-b", "Re: Plans", refs=["t6-a"])))
        thread = _threads(inbox, [a, b])[a]
        [(_, moved)] = result(inbox.moveTo([b], archive))
        [(_, copied)] = result(inbox.copyTo([a], archive))
        assert _threads(archive, [moved, copied]) == {moved: thread, copied: thread}
        assert _threads(inbox, [b]) == {}
        inbox.close()
        archive.close()

    def test_expunged_messages_leave_the_thread(self, account):
        inbox = _open(account)
        a = result(inbox.append(mail("t7-a")))
        b = result(inbox.append(mail("t7-b", "Re: Plans", refs=["t7-a"])))
        thread = _threads(inbox, [a, b])[a]
        emailB = inbox.emailIds([b])[b]
        result(inbox.expunge([a]))
        assert result(account.threadEmails(thread)) == [emailB]
        assert _threads(inbox, [a, b]) == {b: thread}
        inbox.close()

    def test_thread_ids_survive_a_restart(self, tmp_path, store, account):
        inbox = _open(account)
        a = result(inbox.append(mail("t8-a")))
        b = result(inbox.append(mail("t8-b", "Re: Plans", refs=["t8-a"])))
        ids = _threads(inbox, [a, b])
        inbox.close()
        store, account = self._restart(tmp_path, store)
        try:
            inbox = _open(account)
            assert _threads(inbox, [a, b]) == ids
            c = result(inbox.append(mail("t8-c", "Re: Plans", refs=["t8-a", "t8-b"])))
            assert _threads(inbox, [c]) == {c: ids[a]}
            inbox.close()
        finally:
            result(store.close())
