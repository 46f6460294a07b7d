"""
The part of the store conformance suite about the message list
(``IAccount.emailSummaries``, ``IAccount.listEmails``): see the
docstrings of those methods in :mod:`mailnet.store.interfaces` and
"Message list index" in docs/store.md.

A backend that implements the message list runs it beside
:class:`~mailnet.store.conformance.StoreConformance`::

    class TestMyStoreSummaries(SummaryConformance):
        def makeStore(self, tmp_path):
            return MyStore(tmp_path / "mail")

and, for what only some backends can do, defines :meth:`restartStore`,
:meth:`dropListIndex` and :meth:`writeExternally` (the tests that need
them are skipped otherwise).  Deferreds are driven without a reactor, as
in the rest of the suite.
"""

from __future__ import annotations

import email.message
import email.policy

import pytest

from mailnet.store.interfaces import INBOX, SEEN, EmailList, EmailSummary
from mailnet.store.testing import result

USER = "alice@example.test"


def _crlf(text):
    return text.replace("\n", "\r\n").encode("utf-8")


PLAIN = _crlf("""From: Alice <alice@example.test>
To: bob@example.test, "Carol C." <carol@example.test>
Cc: dave@example.test
Subject: Lunch
Date: Tue, 2 Jan 2024 10:30:00 +0000
Message-ID: <plain@example.test>

Shall we meet at noon?
""")

QP = _crlf("""From: x@example.test
Subject: =?iso-8859-1?q?Gr=FC=DFe?= aus =?utf-8?b?S8O2bG4=?=
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Sch=F6ne Gr=FC=DFe
""")

HTML = _crlf("""From: =?utf-8?q?J=C3=B6rg?= <j@example.test>
Subject: News
Content-Type: text/html; charset=utf-8

<html><head><style>p{}</style></head><body><p>Big&nbsp;news &amp; more</p></body></html>
""")

BROKEN = b"Subject: broken\r\nContent-Type: multipart/mixed; boundary=\r\nDate: not a date\r\n\r\n--\r\n\xff\xfe"


def multipart(attachment=False):
    m = email.message.EmailMessage(policy=email.policy.SMTP)
    m["From"] = "Eve <eve@example.test>"
    m["Subject"] = "Report"
    m.set_content("See the report, in base64.", cte="base64")
    m.add_alternative("<p>See the <b>report</b></p>", subtype="html")
    if attachment:
        m.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="r.pdf")
    return m.as_bytes()


def _open(account, name=INBOX):
    return result(account.openFolder(name))


def _list(account, **kw):
    out = result(account.listEmails(**kw))
    assert isinstance(out, EmailList)
    return out


def _one(account, emailId):
    out = result(account.emailSummaries([emailId]))
    assert set(out) == {emailId}
    s = out[emailId]
    assert isinstance(s, EmailSummary)
    return s


class SummaryConformance:
    """The message list, for any backend that has one."""

    def makeStore(self, tmp_path):
        raise NotImplementedError("a SummaryConformance subclass defines makeStore")

    def restartStore(self, tmp_path, store):
        """A new store on the data of ``store`` (closed first), or None (the restart tests are skipped)."""
        return None

    def dropListIndex(self, store, account):
        """Delete the account's list index from under the store; False if the backend has no such thing."""
        return False

    def writeExternally(self, store, account, folder, data, date):
        """Put a message into a folder as another program would (a Maildir MDA); False if impossible."""
        return False

    @pytest.fixture
    def store(self, tmp_path):
        s = self.makeStore(tmp_path)
        yield s
        result(s.close())

    @pytest.fixture
    def account(self, store):
        return result(store.getAccount(USER))

    def _append(self, folder, data, date, flags=()):
        uid = result(folder.append(data, flags=flags, internalDate=date))
        return uid, folder.emailIds([uid])[uid]

    def test_fields_of_many_kinds_of_message(self, account):
        inbox = _open(account)
        cases = {}
        for n, data in enumerate([PLAIN, QP, HTML, multipart(), multipart(True), BROKEN]):
            cases[n] = self._append(inbox, data, 1_700_000_000 + n)
        ids = [e for _, e in cases.values()]
        found = result(account.emailSummaries(ids + ["Mnope", "", None, 7]))
        assert set(found) == set(ids)
        plain = found[cases[0][1]]
        assert plain.subject == "Lunch"
        assert plain.sender == (("Alice", "alice@example.test"),)
        assert plain.to == ((None, "bob@example.test"), ("Carol C.", "carol@example.test"))
        assert plain.cc == ((None, "dave@example.test"),)
        assert plain.sentAt == 1704191400.0
        assert plain.messageId == "plain@example.test"
        assert plain.preview == "Shall we meet at noon?"
        assert not plain.hasAttachment
        assert plain.size == len(PLAIN) and plain.receivedAt == 1_700_000_000
        assert plain.folder == INBOX and plain.mailboxId == inbox.mailboxId and plain.uid == cases[0][0]
        assert plain.threadId and plain.flags == frozenset()
        qp = found[cases[1][1]]
        assert qp.subject == "Grüße aus Köln" and qp.preview == "Schöne Grüße"
        html = found[cases[2][1]]
        assert html.sender == (("Jörg", "j@example.test"),)
        assert html.preview.replace("\xa0", " ") == "Big news & more"
        assert found[cases[3][1]].preview == "See the report, in base64."
        assert not found[cases[3][1]].hasAttachment
        assert found[cases[4][1]].hasAttachment
        broken = found[cases[5][1]]
        assert broken.subject == "broken" and broken.sentAt is None
        inbox.close()

    def test_sorted_by_received_date_across_folders(self, account):
        inbox, archive = _open(account), _open(account, "Archive")
        a = self._append(inbox, PLAIN, 1000)[1]
        b = self._append(archive, PLAIN, 3000)[1]
        c = self._append(inbox, PLAIN, 2000)[1]
        d = self._append(archive, PLAIN, 2000)[1]  # same date as c: ties by email id
        tie = sorted([c, d], reverse=True)
        assert _list(account).ids == [b, *tie, a]
        assert _list(account).total == 4
        assert _list(account, newestFirst=False).ids == [a, *reversed(tie), b]
        assert _list(account, mailboxId=inbox.mailboxId).ids == [c, a]
        assert _list(account, mailboxId=archive.mailboxId) == EmailList([b, d], 0, 2)
        assert _list(account, mailboxId="Fnope") == EmailList([], 0, 0)
        # paging
        assert _list(account, position=1, limit=2) == EmailList(tie, 1, 4)
        assert _list(account, position=3, limit=10) == EmailList([a], 3, 4)
        assert _list(account, position=9, limit=10) == EmailList([], 9, 4)
        assert _list(account, limit=0) == EmailList([], 0, 4)
        inbox.close()
        archive.close()

    def test_move_expunge_copy_and_flags(self, account):
        inbox, archive = _open(account), _open(account, "Archive")
        uids, ids = zip(*[self._append(inbox, PLAIN, 1000 + n) for n in range(4)])
        assert _list(account).total == 4
        thread = _one(account, ids[0]).threadId
        # MOVE: same id, new mailbox and UID, same fields and thread
        [(_, moved)] = result(inbox.moveTo([uids[0]], archive))
        s = _one(account, ids[0])
        assert (s.folder, s.mailboxId, s.uid) == ("Archive", archive.mailboxId, moved)
        assert s.subject == "Lunch" and s.threadId == thread and s.receivedAt == 1000
        assert _list(account, mailboxId=archive.mailboxId).ids == [ids[0]]
        assert _list(account).total == 4
        # EXPUNGE: gone from the list and from emailSummaries
        result(inbox.expunge([uids[1]]))
        assert ids[1] not in _list(account).ids and _list(account).total == 3
        assert result(account.emailSummaries([ids[1]])) == {}
        # flags come from the folder
        result(inbox.setFlags([uids[2]], [SEEN, "k1"], "add"))
        assert _one(account, ids[2]).flags == frozenset({SEEN, "k1"})
        # COPY: a new message with a new id
        [(_, copied)] = result(inbox.copyTo([uids[3]], archive))
        copyId = archive.emailIds([copied])[copied]
        assert copyId != ids[3]
        assert _list(account).total == 4 and copyId in _list(account).ids
        assert _one(account, copyId).subject == "Lunch"
        inbox.close()
        archive.close()

    def test_deliveries_and_a_message_never_listed(self, store, account):
        d = store.newDelivery()
        d.addRecipient(USER)
        d.write(PLAIN)
        [(_, _, uid)] = result(d.commit(internalDate=5000))
        inbox = _open(account)
        emailId = inbox.emailIds([uid])[uid]
        # asked before any listing: indexed on the spot
        assert _one(account, emailId).subject == "Lunch"
        assert _list(account).ids == [emailId]
        inbox.close()

    def test_renamed_and_deleted_folders(self, account):
        result(account.createFolder("Work"))
        work = _open(account, "Work")
        emailId = self._append(work, PLAIN, 1000)[1]
        mailbox = work.mailboxId
        work.close()
        assert _list(account).ids == [emailId]
        result(account.renameFolder("Work", "Jobs"))
        s = _one(account, emailId)
        assert (s.folder, s.mailboxId) == ("Jobs", mailbox)
        assert _list(account, mailboxId=mailbox).ids == [emailId]
        result(account.deleteFolder("Jobs"))
        assert _list(account) == EmailList([], 0, 0)
        assert result(account.emailSummaries([emailId])) == {}

    def test_survives_a_restart(self, tmp_path, store, account):
        inbox = _open(account)
        ids = [self._append(inbox, PLAIN if n % 2 else HTML, 1000 + n)[1] for n in range(3)]
        before = result(account.emailSummaries(ids))
        inbox.close()
        result(store.close())
        new = self.restartStore(tmp_path, store)
        if new is None:
            pytest.skip("the backend keeps nothing across a restart")
        try:
            account = result(new.getAccount(USER))
            assert _list(account).ids == list(reversed(ids))
            assert result(account.emailSummaries(ids)) == before
        finally:
            result(new.close())

    def test_deleted_index_is_rebuilt(self, store, account):
        inbox = _open(account)
        ids = [self._append(inbox, PLAIN, 1000 + n)[1] for n in range(3)]
        before = result(account.emailSummaries(ids))
        assert _list(account).total == 3
        if not self.dropListIndex(store, account):
            pytest.skip("the backend has no index to delete")
        assert _list(account).ids == list(reversed(ids))
        assert result(account.emailSummaries(ids)) == before
        inbox.close()

    def test_external_write_is_listed_once_seen(self, store, account):
        inbox = _open(account)
        first = self._append(inbox, PLAIN, 1000)[1]
        assert _list(account).ids == [first]
        if not self.writeExternally(store, account, INBOX, HTML, 2000):
            pytest.skip("nothing but the store writes this backend's folders")
        listed = _list(account)
        assert listed.total == 2 and listed.ids[1] == first
        assert _one(account, listed.ids[0]).preview.replace("\xa0", " ") == "Big news & more"
        inbox.close()
