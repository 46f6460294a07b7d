"""
The thin async layer between the RFC 8621 data types and the store's
``IAccount`` (mailnet/store/interfaces.py): each function awaits the
store's Deferreds and turns its failures into JMAP ones.  No I/O of its
own; the data type modules (mailbox.py, email.py, thread.py) call only
these, so the store's contract is read in one place.

Also the keyword mapping of RFC 8621 s4.1.1 between IMAP flags and JMAP
keywords.
"""

from __future__ import annotations

import inspect

from mailnet.jmap.errors import MethodError, ServerUnavailable
from mailnet.store.interfaces import INBOX, CannotCalculateChanges, TemporaryStoreError

# RFC 8621 s4.1.1: the IMAP system flags and their keywords.
FLAG_KEYWORDS = {"\\seen": "$seen", "\\flagged": "$flagged", "\\answered": "$answered", "\\draft": "$draft"}
KEYWORD_FLAGS = {"$seen": "\\Seen", "$flagged": "\\Flagged", "$answered": "\\Answered", "$draft": "\\Draft"}
# Flags that are not keywords: \Recent is per session, \Deleted is IMAP's expunge mark.
NOT_KEYWORDS = {"\\recent", "\\deleted"}


def keywordsOf(flags) -> dict:
    """RFC 8621 s4.1.1: keywords are lower case; the system flags map to $ names."""
    out = {}
    for flag in flags:
        low = flag.lower()
        if low in NOT_KEYWORDS:
            continue
        out[FLAG_KEYWORDS.get(low, low)] = True
    return out


def flagOf(keyword: str) -> str:
    return KEYWORD_FLAGS.get(keyword.lower(), keyword)


def isKeyword(keyword) -> bool:
    # RFC 8621 s4.1.1: 1-255 of %x21-7E except ( ) { ] % * " \.
    return (isinstance(keyword, str) and 0 < len(keyword) <= 255
            and all(0x21 <= ord(c) <= 0x7E and c not in '(){]%*"\\' for c in keyword))


async def wait(value):
    """Await a Deferred (or a coroutine, or a value), mapping store failures."""
    try:
        if inspect.isawaitable(value):
            return await value
        return value
    except TemporaryStoreError as e:
        raise ServerUnavailable(str(e)) from None


def need(account, name):
    """The store method ``name`` (optional in IAccount); serverFail-free refusal without it."""
    method = getattr(account, name, None)
    if method is None:
        raise MethodError("serverFail", f"the store has no {name}")
    return method


async def currentState(account) -> str:
    return await wait(need(account, "currentState")())


async def changesSince(account, state, maxChanges):
    try:
        return await wait(need(account, "changesSince")(state, maxChanges))
    except CannotCalculateChanges:
        raise MethodError("cannotCalculateChanges") from None


class MailboxInfo:
    """One folder as Mailbox/get needs it (read once per call)."""

    def __init__(self, info, mailboxId, messages, threadIds):
        self.name = info.name
        self.specialUse = info.specialUse
        self.subscribed = info.subscribed
        self.mailboxId = mailboxId
        self.messages = messages  # [MessageInfo]
        self.threadIds = threadIds  # {uid: threadId}


async def mailboxes(account, withCounts=True, withThreads=True) -> list:
    """
    Every folder with its mailbox id, and its messages for the counts
    (``withCounts``) and their thread ids (``withThreads``: the first time,
    the store may read the headers of messages never threaded, so it is
    asked only when totalThreads or unreadThreads is wanted).
    """
    folders = await wait(account.listFolders())
    out = []
    for info in folders:
        folder = await wait(account.openFolder(info.name))
        try:
            mailboxId = getattr(folder, "mailboxId", None)
            if mailboxId is None:
                continue  # a backend without ids: nothing JMAP can name
            messages, threads = [], {}
            if withCounts:
                messages = folder.messages()
                threadIdsOf = getattr(folder, "threadIds", None)
                if threadIdsOf is not None and withThreads:
                    threads = await wait(threadIdsOf([m.uid for m in messages]))
        finally:
            folder.close()
        out.append(MailboxInfo(info, mailboxId, messages, threads))
    return out


async def openFolder(account, name):
    return await wait(account.openFolder(name))


__all__ = ["INBOX", "keywordsOf", "flagOf", "isKeyword", "wait", "currentState", "changesSince", "mailboxes"]
