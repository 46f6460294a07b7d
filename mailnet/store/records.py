"""
The values a store hands to protocols: message and folder records, the
account changes (JMAP ``Foo/changes``), message-list summaries and pages
(part of the store contract of :mod:`mailnet.store.interfaces`, which
re-exports them).
"""

from __future__ import annotations

import dataclasses
import io


@dataclasses.dataclass(frozen=True, slots=True)
class MessageInfo:
    """
    What an index knows of one message without reading it.

    @ivar uid: unique id in the folder, ascending with arrival, never reused
        while ``uidValidity`` stays the same.
    @ivar flags: frozenset of flag strings.
    @ivar internalDate: arrival time, seconds since the epoch (float).
    @ivar size: size in bytes of the canonical (CRLF) message.
    @ivar modseq: the folder's modification sequence at the message's last
        change (RFC 7162); at least 1.
    """

    uid: int
    flags: frozenset
    internalDate: float
    size: int
    modseq: int


@dataclasses.dataclass(frozen=True, slots=True)
class FolderInfo:
    """
    One entry of :meth:`mailnet.store.interfaces.IAccount.listFolders`.

    @ivar name: the folder name, ``/``-separated.
    @ivar specialUse: ``"\\\\Sent"`` and the like (RFC 6154), or None.
    @ivar subscribed: whether the folder is in the subscription list.
    """

    name: str
    specialUse: str | None = None
    subscribed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class TypeChanges:
    """
    What changed for one type of object (``"Email"``, ``"Mailbox"`` or
    ``"Thread"``) between two account states: one part of
    :class:`AccountChanges`, shaped like a JMAP ``Foo/changes`` answer
    (RFC 8620 s5.2).

    @ivar oldState: the state asked about.
    @ivar newState: the state this answer brings the caller to: the
        account's current state, or, when ``hasMoreChanges``, an
        intermediate one to ask from next.
    @ivar hasMoreChanges: ``maxChanges`` cut the answer short.
    @ivar created: ids created since ``oldState`` (sorted lists of str).
    @ivar updated: ids changed since ``oldState``.
    @ivar destroyed: ids gone since ``oldState``.  An id is in one list at
        most; one created and destroyed in between is left out.
    @ivar updatedProperties: Mailbox only: ``COUNT_PROPERTIES`` when every
        updated mailbox changed only in its counts (messages added,
        removed, ``\\Seen`` changed), else None (anything may have changed:
        a rename).  None for the other types.
    """

    oldState: str
    newState: str
    hasMoreChanges: bool
    created: list
    updated: list
    destroyed: list
    updatedProperties: list | None = None


# RFC 8621 s2: the Mailbox properties that change with its messages alone.
COUNT_PROPERTIES = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]


@dataclasses.dataclass(frozen=True, slots=True)
class AccountChanges:
    """
    The answer of :meth:`mailnet.store.interfaces.IAccount.changesSince`: ``emails``,
    ``mailboxes`` and ``threads`` are :class:`TypeChanges`, each paged on
    its own by ``maxChanges``.
    """

    oldState: str
    emails: TypeChanges
    mailboxes: TypeChanges
    threads: TypeChanges


def messageBytes(f):
    """
    The whole message as ``bytes``, without reading or copying, when the
    reader that :meth:`mailnet.store.interfaces.IFolder.openMessage` gave holds it in memory; else
    None, and the caller reads ``f`` as a file.

    A backend that has the message in memory returns ``io.BytesIO(data)``
    (exactly that class: a subclass may read differently, so it gets no
    fast path); a ``BytesIO`` made from ``bytes`` shares them until written
    to, so this costs no copy.  Protocols use it on their hot paths (IMAP
    FETCH and SEARCH; POP3 RETR may) instead of testing for the type
    themselves.  Does not move the file position.
    """
    if type(f) is io.BytesIO:
        return f.getvalue()
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class EmailSummary:
    """
    One message as a message list shows it: :meth:`mailnet.store.interfaces.IAccount.emailSummaries`
    (JMAP Email/get's list properties, RFC 8621 s4.1).  Everything but
    ``flags`` comes from the account's list index, not from the message
    file; ``flags`` from the folder's index.

    @ivar emailId: the email id.
    @ivar mailboxId: the mailbox id of its folder; ``folder`` its name and
        ``uid`` its UID there.
    @ivar receivedAt: internal date (epoch seconds); ``size`` as
        :attr:`MessageInfo.size`.
    @ivar threadId: the thread id, or None if it could not be worked out.
    @ivar subject: decoded (RFC 2047), unfolded; ``""`` when absent.
    @ivar sender: From as a tuple of ``(name, email)`` pairs (name None when
        absent); ``to`` and ``cc`` likewise.
    @ivar sentAt: the Date field in epoch seconds, None if absent or unparsable.
    @ivar messageId: the first Message-ID, without angle brackets, or None.
    @ivar hasAttachment: a part is an attachment (see mailnet.mail.summary).
    @ivar preview: up to 256 characters of the first text part (RFC 8621 s4.1.4).
    """

    emailId: str
    mailboxId: str
    folder: str
    uid: int
    receivedAt: float
    size: int
    flags: frozenset
    threadId: str | None
    subject: str
    sender: tuple
    to: tuple
    cc: tuple
    sentAt: float | None
    messageId: str | None
    hasAttachment: bool
    preview: str


@dataclasses.dataclass(frozen=True, slots=True)
class EmailList:
    """
    One page of :meth:`mailnet.store.interfaces.IAccount.listEmails`: ``ids`` (email ids), the
    ``position`` of the first in the whole list, and ``total`` (the length
    of the whole list).
    """

    ids: list
    position: int
    total: int
