"""
RFC 8621 s3: the Thread data type (id, emailIds) on the store's thread
index (``IAccount.threadEmails``; docs/store.md "Thread ids").  Pure.
"""

from __future__ import annotations

from mailnet.jmap import mailstore, standard
from mailnet.jmap.errors import MethodError
from mailnet.jmap.mailbox import MAIL


class Threads:
    name = "Thread"
    properties = ("id", "emailIds")
    defaultProperties = properties

    async def state(self, account):
        return await mailstore.currentState(account)

    def allIds(self, account):
        raise MethodError("requestTooLarge", "Thread/get needs ids")

    async def read(self, account, ids):
        threadEmails = mailstore.need(account, "threadEmails")
        out = {}
        for threadId in ids:
            emailIds = await mailstore.wait(threadEmails(threadId))
            if emailIds:
                # RFC 8621 s3.1: oldest first (the store's order: first indexed first).
                out[threadId] = {"id": threadId, "emailIds": list(emailIds)}
        return out

    async def changes(self, account, sinceState, maxChanges):
        c = (await mailstore.changesSince(account, sinceState, maxChanges)).threads
        return standard.Changes(c.oldState, c.newState, c.hasMoreChanges, list(c.created),
                                list(c.updated), list(c.destroyed))


TYPE = Threads()


def register(registry):
    registry.method("Thread/get", lambda call: standard.standardGet(call, TYPE), MAIL)
    registry.method("Thread/changes", lambda call: standard.standardChanges(call, TYPE), MAIL)
