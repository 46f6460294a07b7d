"""
``IAccount.listEmails`` and ``IAccount.emailSummaries`` of the PostgreSQL
store, answered from the database's list index (listindex.py): nothing in
this process to build or catch up, so every node answers alike from the
first request after its start.
"""

from __future__ import annotations

import json

from twisted.internet import defer

from mailnet.mail.summary import Summary
from mailnet.store.interfaces import EmailList, EmailSummary, StoreError
from mailnet.store.postgres import listindex, sql


class _Dated:
    __slots__ = ("internalDate",)

    def __init__(self, date):
        self.internalDate = date


class _Unthreaded:
    """
    Messages of one folder the thread index does not have yet, seen as the
    folder view :meth:`mailnet.store.threads.AccountThreads.threadIds`
    needs (email ids, dates, bodies), without loading the whole folder.
    """

    def __init__(self, db, folderId, found):
        self.db = db
        self.folderId = folderId
        self.found = {r[4]: r for r in found}  # uid -> row

    def emailIds(self, uids):
        return {u: self.found[u][0] for u in uids if u in self.found}

    def get(self, uid):
        row = self.found.get(uid)
        return None if row is None else _Dated(row[5])

    def openMessage(self, uid):
        row = self.found[uid]
        return self.db.run(sql.readBody, self.folderId, uid, row[6], self.db.objects)


class PostgresEmailList:
    """One account's message list (see the module docstring)."""

    def __init__(self, account):
        self.account = account
        self.db = account.db
        self.accountId = account.accountId
        self.built = 0  # bodies summarised on the spot (for tests: 0 after a restart)

    def close(self):
        pass

    def listEmails(self, mailboxId=None, position=0, limit=None, newestFirst=True):
        try:
            position = max(0, int(position or 0))
            if limit is not None:
                limit = max(0, int(limit))
        except (TypeError, ValueError) as e:
            return defer.fail(e)
        if mailboxId is not None and not isinstance(mailboxId, str):
            return defer.succeed(EmailList([], position, 0))
        d = self.db.run(listindex.page, self.accountId, mailboxId, position, limit, bool(newestFirst))
        return d.addCallback(lambda found: EmailList(found[0], position, found[1]))

    def emailSummaries(self, emailIds):
        return defer.ensureDeferred(self._emailSummaries(emailIds))

    async def _emailSummaries(self, emailIds):
        wanted = list(dict.fromkeys(e for e in emailIds if isinstance(e, str) and e))
        if not wanted:
            return {}
        rows = await self.db.run(listindex.rows, self.accountId, wanted)
        unsummarised = {bytes(r[10]) for r in rows.values() if r[9] is None}
        fields = {}
        if unsummarised:
            fields = await self.db.run(listindex.build, list(unsummarised), self.db.objects)
            self.built += len(fields)
        threads = await self._threads([r for r in rows.values() if r[8] is None])
        out = {}
        for emailId, row in rows.items():
            _, mailboxId, name, _, uid, date, size, flags, thread, text, h = row
            if text is None:
                text = fields.get(bytes(h))
            try:
                s = Summary.fromJson(json.loads(text)) if text is not None else Summary()
            except (ValueError, TypeError, AttributeError):
                s = Summary()
            out[emailId] = EmailSummary(
                emailId=emailId, mailboxId=mailboxId, folder=name, uid=uid, receivedAt=date, size=size,
                flags=frozenset(flags), threadId=thread or threads.get(emailId),
                subject=s.subject, sender=s.sender, to=s.to, cc=s.cc, sentAt=s.sentAt,
                messageId=s.messageId, hasAttachment=s.hasAttachment, preview=s.preview)
        return out

    async def _threads(self, rows):
        """``{emailId: threadId}`` of messages the thread index lacks (it takes them in now)."""
        byFolder = {}
        for row in rows:
            byFolder.setdefault(row[3], []).append(row)
        out = {}
        for folderId, found in byFolder.items():
            view = _Unthreaded(self.db, folderId, found)
            try:
                threads = await self.account.threads.threadIds(view, list(view.found))
            except (StoreError, OSError):
                continue
            out.update((view.found[u][0], t) for u, t in threads.items())
        return out
