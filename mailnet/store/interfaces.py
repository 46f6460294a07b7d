"""
The mail store contract.

Every access protocol (SMTP delivery, IMAP, POP3, JMAP) talks to mail only
through the interfaces in this module.  Only :mod:`mailnet.service` names a
concrete backend; protocol packages never import ``maildir`` or ``memory``.
The errors, the records (:class:`MessageInfo`, :class:`AccountChanges`...)
and :class:`ProcessMaildropLocks` are defined in :mod:`mailnet.store.errors`,
:mod:`mailnet.store.records` and :mod:`mailnet.store.locks` and re-exported
here; import them from here.

Conventions that hold for every method below:

* Names.  Folder names are ``str`` with ``/`` as the hierarchy separator
  (``"Archive/2024"``).  ``INBOX`` is case-insensitive and always exists.
  A backend refuses names it cannot store safely with
  :class:`InvalidFolderName`; a name can never reach outside the account.
* Messages are bytes in canonical form: lines end in CRLF.  ``MessageInfo.size``
  is the size of that canonical form (IMAP ``RFC822.SIZE``).
* Flags are IMAP flag strings: the system flags in :data:`SYSTEM_FLAGS`
  (``\\Seen`` ...) or keywords (atoms without a backslash).  ``\\Recent`` is
  not a stored flag.
* Asynchrony.  Methods documented as returning a Deferred may also fail with
  one of the :class:`StoreError` subclasses below.  Callers wrap calls with
  ``defer.maybeDeferred`` only where a method is documented as synchronous.
  Metadata of an open folder (``messages()``, ``uidNext``...) is an
  in-memory snapshot and synchronous, so that FETCH FLAGS over 100,000
  messages costs no Deferred per message.
* Durability.  A Deferred returned by a method that writes (``commit``,
  ``append``, ``setFlags``, ``expunge``, ``copyTo``, ``moveTo``) fires only
  when the change is on stable storage (fsynced) for backends that have
  stable storage.
* Ids (for JMAP, RFC 8620/8621, and IMAP OBJECTID, RFC 8474).  An *email
  id* names one message in an account; a *mailbox id* one folder.  Both
  are opaque strings of 1-255 characters of ``A-Za-z0-9_-`` (RFC 8620
  s1.2).  An email id stays the same for the life of the message: across
  :meth:`IFolder.moveTo`, a restart, a crash, and (Maildir) another program
  renaming the file for flags or moving it between folders; a copy
  (:meth:`IFolder.copyTo`, a delivery to several folders) is a new message
  with a new id, so a message is in exactly one mailbox (JMAP
  ``maxMailboxesPerEmail`` is 1).  An id is durable when the operation
  that made the message is.  A mailbox id stays the same across a rename
  and a restart; a folder deleted and created again under the same name
  has a new one.  Ids are never reused for another message or folder.
  Optional for third-party stores written before they existed: callers
  use ``getattr`` and treat a missing method or a None id as "no ids".
* Thread ids (JMAP RFC 8621 s3, IMAP THREADID RFC 8474).  A *thread id*
  (same syntax) names one conversation of an account.  A message joins
  every thread holding a message of the same base subject (RFC 5256 s2.1)
  that it references (References, else In-Reply-To), that references it,
  that shares a reference with it, or that has its Message-ID; a message
  with no references at all and a reply subject (``Re: x``) joins the
  latest thread of base subject ``x``; otherwise it starts a thread.  So
  a reply delivered later joins its thread, and a thread split by a
  missing parent joins when the parent arrives.  A thread's id is fixed
  when it starts (the builtin backends derive it from its first message's
  email id) and a late parent takes it.  When a message links two or
  more threads they merge into the one started first; the messages of
  the others get its id: the one case where a message's thread id
  changes (JMAP clients see those Emails as updated).  A message keeps
  its thread id across a MOVE and a restart; a copy (same header) joins
  the original's thread.
* Account state and changes (JMAP RFC 8620 s5.2 and s7, RFC 8621).  An
  account has one modification counter; :meth:`IAccount.currentState`
  names it, :meth:`IAccount.changesSince` lists the Emails, Mailboxes and
  Threads created, updated and destroyed since an earlier state, for
  changes made by any writer: a protocol, a delivery, the queue, another
  program writing the store (noticed at the latest when the state is
  asked).  An Email is updated when its flags or its mailbox change (a
  MOVE keeps the id: updated, not destroyed and created), or its thread
  id changes (a merge); a Mailbox when it is renamed or its counts change
  (messages added or removed, ``\\Seen`` changed); a Thread when a message
  joins or leaves it (created with its first message, destroyed with its
  last one, destroyed when merged into another).  A state never goes
  backwards, also across a crash; a backend keeps a bounded history and
  answers :class:`CannotCalculateChanges` beyond it.
* Notifications.  All :class:`IFolder` handles open on the same folder in
  one process share one index.  After a change becomes durable, through any
  handle, a delivery, or :meth:`IFolder.refresh` noticing another program's
  change, every registered :class:`IFolderListener` of that folder is told,
  including the listener of the session that made the change.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

# Re-exported: part of the contract, imported from here by every caller.
from mailnet.store.errors import (
    CannotCalculateChanges, FolderExists, FolderLimitExceeded, FolderNotEmpty, InvalidFolderName,
    NoSuchAccount, NoSuchFolder, NoSuchMessage, OverQuota, StorageFull, StoreError, TemporaryStoreError)
from mailnet.store.locks import ProcessMaildropLocks
from mailnet.store.records import (
    COUNT_PROPERTIES, AccountChanges, EmailList, EmailSummary, FolderInfo, MessageInfo, TypeChanges,
    messageBytes)

SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT})

# RFC 6154 special-use folders made for every new account.
SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

INBOX = "INBOX"

__all__ = [
    "SEEN", "ANSWERED", "FLAGGED", "DELETED", "DRAFT", "SYSTEM_FLAGS", "SPECIAL_USE", "INBOX",
    # errors.py
    "StoreError", "NoSuchAccount", "NoSuchFolder", "FolderExists", "InvalidFolderName", "FolderLimitExceeded",
    "FolderNotEmpty", "NoSuchMessage", "TemporaryStoreError", "CannotCalculateChanges", "StorageFull", "OverQuota",
    # records.py
    "MessageInfo", "FolderInfo", "TypeChanges", "COUNT_PROPERTIES", "AccountChanges", "messageBytes", "EmailSummary",
    "EmailList",
    # locks.py
    "ProcessMaildropLocks",
    "IMailStore", "IDelivery", "IAccount", "IFolder", "IAccountListener", "IFolderListener",
]


class IMailStore(Interface):
    """
    A whole mail store: the accounts of all users.

    Made once by :mod:`mailnet.service` from ``[store] backend``; shared by
    every protocol of the process.
    """

    def getAccount(username, create=True):
        """
        Open a user's account.

        Called by IMAP/POP3/JMAP after authentication and by delivery.

        @param username: the canonical login (``user@domain``), as the
            directory returns it.
        @param create: make the account (INBOX and the :data:`SPECIAL_USE`
            folders) when it does not exist yet.
        @return: Deferred firing with an :class:`IAccount`; fails with
            :class:`NoSuchAccount` when absent and ``create`` is false.
        """

    def newDelivery():
        """
        Begin delivering one message to one or more mailboxes.

        Called by the SMTP server (and the queue for local recipients) once
        per message.

        @return: an :class:`IDelivery` (synchronously).
        """

    def quotaUsage(username):
        """
        The :class:`mailnet.store.quota.QuotaUsage` of an account,
        synchronously, for SMTP's RCPT check (answered from memory; a
        backend may read one small file the first time), or None when it
        is not known (the account does not exist yet, or its usage is being
        recalculated).  Optional, like :meth:`IAccount.quota`.
        """

    def maildropLock(username):
        """
        RFC 1939 s8: the POP3 maildrop lock of ``username``, held for one
        POP3 session.  Called by POP3 after a good login.  A backend shared
        by several processes (PostgreSQL) locks across all of them; a
        per-process backend uses :class:`ProcessMaildropLocks`.  Optional:
        POP3 keeps a per-process lock for a store without it.

        @return: Deferred firing with a held lock (its ``release()`` gives
            it back without blocking, once; may return a Deferred), or None
            when another session holds it; may fail with
            :class:`TemporaryStoreError`.
        """

    def close():
        """
        Release resources (open files, timers) at service shutdown.

        @return: None or a Deferred.
        """


class IDelivery(Interface):
    """
    One message on its way into one or more mailboxes.

    The life of a delivery: ``addRecipient`` (one or more times), ``write``
    (any number of times, in order; the body is streamed and never held in
    memory whole), then exactly one of ``commit`` or ``abort``.
    """

    def addRecipient(username, folder=INBOX):
        """
        Add a mailbox that gets a copy.

        Adding the same (username, folder) twice stores one copy.
        Synchronous.  Raises :class:`NoSuchFolder` if the folder is missing
        (the account itself is created as needed).
        """

    def write(data):
        """
        Append bytes of the canonical (CRLF) message.  Synchronous.

        May raise :class:`TemporaryStoreError` (disk full): the caller must
        then ``abort``.
        """

    def commit(internalDate=None, flags=()):
        """
        Make the message visible in every recipient's folder, durably.

        @param internalDate: arrival time (epoch seconds); now if None.
        @param flags: initial flags.
        @return: Deferred firing with a list of ``(username, folder, uid)``
            when every copy is on stable storage.  On failure nothing of this
            delivery is visible in any folder, and the Deferred fails
            (:class:`TemporaryStoreError` for conditions worth a retry).
        """

    def abort():
        """
        Throw the message away.  Nothing becomes visible.  Synchronous,
        idempotent, safe to call after a failed ``write``.
        """


class IAccount(Interface):
    """
    One user's folders.  Got from :meth:`IMailStore.getAccount`.
    """

    username = Attribute("The canonical login name.")

    def listFolders():
        """
        @return: Deferred firing with a list of :class:`FolderInfo`, INBOX
            first, then sorted by name.  Parents implied by a child's name are
            listed only if they exist as folders.
        """

    def createFolder(name):
        """
        Create a folder (and any missing parents).

        A new name must not contain ``*`` or ``%`` (IMAP wildcards),
        control characters (C0, DEL, C1) or bidirectional-text controls
        (U+200E/F, U+202A..U+202E, U+2066..U+2069).

        @return: Deferred firing with None; fails with :class:`FolderExists`,
            :class:`InvalidFolderName` (such characters) or
            :class:`FolderLimitExceeded` (too many folders, name too long or
            too deep).
        """

    def deleteFolder(name):
        """
        Delete a folder and its messages.  Children are kept (RFC 3501
        s6.3.4).  INBOX cannot be deleted (:class:`InvalidFolderName`).

        @return: Deferred firing with None; fails with :class:`NoSuchFolder`.
        """

    def renameFolder(oldName, newName):
        """
        Rename a folder and its children.  Renaming INBOX moves its messages
        into a new folder and leaves INBOX empty (RFC 3501 s6.3.5).
        Renamed folders keep their mailbox ids; INBOX's messages keep their
        email ids in the new folder (which has a new mailbox id).

        The new name follows the rules of :meth:`createFolder`.

        @return: Deferred firing with None; fails with :class:`NoSuchFolder`,
            :class:`FolderExists`, :class:`InvalidFolderName` or
            :class:`FolderLimitExceeded`.
        """

    def setSubscribed(name, subscribed):
        """
        Add a name to (or remove it from) the subscription list.  The folder
        need not exist (RFC 3501 s6.3.6).

        @return: Deferred firing with None.
        """

    def listSubscriptions():
        """
        The subscription list, including names of folders that do not exist
        (any more): RFC 3501 s6.3.9 forbids dropping them unilaterally, and
        IMAP's LSUB and LIST (SUBSCRIBED) show them.

        Called by IMAP at LSUB and LIST with SUBSCRIBED.  Optional for
        third-party stores written before it existed: without it, IMAP
        shows the subscribed folders that :meth:`listFolders` reports.

        @return: Deferred firing with a list of folder names.
        """

    def findEmail(emailId):
        """
        Where a message is, by email id (see the module docstring), without
        reading message files: backends keep an index.

        Called by JMAP (Email/get by id) and IMAP (OBJECTID lookups).
        Optional (see "Ids" in the module docstring).

        @param emailId: a string; anything that is not a valid id of this
            account (malformed, unknown, expunged) gives None.
        @return: Deferred firing with ``(folderName, uid)`` or None.  A
            message another program moved into a folder is found once that
            folder has been opened or refreshed (which gives it its UID).
            Fails only with :class:`StoreError` or ``OSError`` (the store's
            files cannot be read).
        """

    def threadOf(emailIds):
        """
        The thread ids of messages named by email id, wherever they are
        (see "Thread ids" in the module docstring): what JMAP Email/get
        shows as ``threadId``.  Like :meth:`IFolder.threadIds`, it may
        read the headers of messages never asked about.  Optional, like
        :meth:`findEmail`.

        @param emailIds: iterable of strings; ids the account does not
            have (malformed, unknown, expunged) are left out.
        @return: Deferred firing with ``{emailId: threadId}``.
        """

    def threadEmails(threadId):
        """
        The messages of a thread (see "Thread ids" in the module docstring).

        Called by JMAP (Thread/get).  Optional, like :meth:`findEmail`.

        @param threadId: a string; anything that is not a thread id of
            this account gives ``[]``.
        @return: Deferred firing with the list of email ids of the thread's
            messages that the account still has, oldest (first indexed)
            first.  Messages whose thread id was never asked for (through
            :meth:`IFolder.threadIds`) may be missing from it: a backend
            may work thread ids out lazily.
        """

    def currentState():
        """
        The account's state: one account-wide modification counter (see
        "Account state and changes" in the module docstring), for JMAP
        ``state`` (RFC 8620 s5.1) and push (s7).  Any change made since the
        last call, by this process or another program writing the store,
        is taken in first.  Optional, like :meth:`findEmail`.

        @return: Deferred firing with an opaque state string (at most 255
            characters of ``A-Za-z0-9._-``).
        """

    def changesSince(state, maxChanges=None):
        """
        What changed in the account since ``state`` (RFC 8620 s5.2
        ``Foo/changes`` for Email, Mailbox and Thread; RFC 8621 s2.2, s3.2,
        s4.3).  Changes made since the last look, by anyone, are taken in
        first.  Optional, like :meth:`currentState`.

        @param state: a string :meth:`currentState` or an earlier answer
            gave.
        @param maxChanges: None, or a positive int: at most that many ids
            per type; the rest is for a later call from the type's
            ``newState``.
        @return: Deferred firing with an :class:`AccountChanges`; fails
            with :class:`CannotCalculateChanges` for a state that is too
            old, unknown, or from before the account's journal was rebuilt,
            and with ``ValueError`` for a ``maxChanges`` that is not None
            or a positive int.
        """

    def addListener(listener):
        """
        Register an :class:`IAccountListener`: told after every change to
        the account (deliveries and another program's writes included, the
        latter once noticed).  Optional, like :meth:`currentState`.
        """

    def removeListener(listener):
        """Unregister an :class:`IAccountListener`; unknown ones are ignored."""

    # Quota (mailnet/store/quota.py; docs/store.md "Quota").  Optional for
    # third-party stores written before it existed (callers use getattr and
    # treat a missing method as "no quota").

    def quota():
        """
        The account's usage and limits.

        Called by IMAP GETQUOTA/GETQUOTAROOT/STATUS SIZE, JMAP Quota/get,
        the warning after a delivery.  A backend keeps the usage up to date
        cheaply (Maildir: the ``maildirsize`` file, recalculated when it is
        missing or stale).

        @return: Deferred firing with a
            :class:`mailnet.store.quota.QuotaUsage`.
        """

    def checkQuota(size, count=1):
        """
        May ``count`` messages of ``size`` bytes in all be saved now?

        Called before a write that adds messages: IMAP APPEND, COPY, JMAP
        Email/set create and Email/import (docs/jmap.md "Quota"), and the
        local delivery.  The store's own writes (``append``, ``commit``) do
        not check: a message accepted by SMTP is never lost to the quota.

        @return: Deferred firing with None, or failing with
            :class:`OverQuota`.
        """

    def quotaWarning():
        """
        The account is at or past the warning threshold and no warning was
        given for this crossing: True once (the mark is durable); False
        otherwise.  The mark goes when the usage drops below the threshold,
        so the next crossing warns again.

        @return: Deferred firing with a bool.
        """

    def openFolder(name):
        """
        Open a folder for reading and changing.

        Called by IMAP at SELECT/EXAMINE/STATUS/APPEND and by POP3 at login.
        The caller must :meth:`IFolder.close` the handle when done.

        @return: Deferred firing with an :class:`IFolder` whose index is
            loaded and current; fails with :class:`NoSuchFolder`.
        """

    # The message list (JMAP Email/query and Email/get, a webmail's list):
    # an index of list fields per account, so that neither call opens a
    # message file for a message the index has.  Optional for third-party
    # stores written before it existed (callers use getattr).

    def emailSummaries(emailIds):
        """
        The list fields of messages by email id (:class:`EmailSummary`).

        Called by JMAP (Email/get of list properties).  A message the index
        does not have yet (delivered a moment ago, written by another
        program) is read and indexed now; the flags come from its folder's
        index.

        @param emailIds: iterable of strings; ids the account does not have
            (malformed, unknown, expunged) are left out.
        @return: Deferred firing with ``{emailId: EmailSummary}``.  Fails
            only with :class:`StoreError` or ``OSError``.
        """

    def listEmails(mailboxId=None, position=0, limit=None, newestFirst=True):
        """
        The account's email ids sorted by received date (internal date),
        newest first by default, ties broken by email id: the whole account,
        or one folder (by mailbox id).

        Called by JMAP (Email/query sorted by receivedAt) and a webmail's
        message list.  Answered from the list index, without opening
        message files; changes to the folders (by any protocol, a delivery,
        another program writing the Maildir) are taken in first.

        @param mailboxId: a mailbox id, or None for every folder; an
            unknown one gives an empty list.
        @param position: the index of the first id to return (>= 0).
        @param limit: at most this many ids; None for all.
        @return: Deferred firing with an :class:`EmailList`.
        """


class IFolder(Interface):
    """
    A handle on one open folder.  Cheap: handles on the same folder share
    one index (see the module docstring).
    """

    name = Attribute("The folder name.")
    uidValidity = Attribute("UIDVALIDITY (int, non-zero, stable).")
    uidNext = Attribute("The UID the next message will get (int).")
    highestModSeq = Attribute("Highest modification sequence (int, >= 1).")
    mailboxId = Attribute(
        "The mailbox id (str; see 'Ids' in the module docstring): the same "
        "across RENAME and restarts, new for a folder deleted and re-created. "
        "None from a backend without ids."
    )
    firstRecentUid = Attribute(
        "RFC 3501 s2.3.2 \\Recent, kept with the folder (int >= 1): messages "
        "with a UID at or above it have not been claimed by a session (see "
        "claimRecent).  1 for a new folder, so messages delivered before any "
        "session selects it are recent; kept across restarts by a backend "
        "with stable storage; 1 again for a folder deleted and created again "
        "under the same name (or whose UIDVALIDITY changed).  Optional: "
        "callers use getattr and keep \\Recent themselves without it."
    )

    def messages():
        """
        @return: list of :class:`MessageInfo` sorted by ascending UID; a
            snapshot of the index (synchronous, no I/O).
        """

    def get(uid):
        """
        @return: the :class:`MessageInfo` of ``uid`` or None.  Synchronous.
        """

    def emailIds(uids):
        """
        The email ids of messages (see "Ids" in the module docstring).

        Called by IMAP (FETCH EMAILID, RFC 8474) and JMAP.  Synchronous, no
        I/O, like :meth:`messages`.  Optional: a handle without it (or one
        answering ``{}``) has no ids.

        @param uids: iterable of UIDs of this folder.
        @return: dict ``{uid: emailId}`` for the UIDs present in the index;
            UIDs not (or no longer) present are left out.
        """

    def threadIds(uids):
        """
        The thread ids of messages (see "Thread ids" in the module
        docstring).

        Called by IMAP (FETCH THREADID, RFC 8474) and JMAP.  Asynchronous,
        unlike :meth:`emailIds`: the first time a message is asked for, a
        backend may read its header.  Optional: a handle without it (or
        one answering ``{}``) has no thread ids.

        @param uids: iterable of UIDs of this folder.
        @return: Deferred firing with a dict ``{uid: threadId}`` for the
            UIDs present; UIDs not (or no longer) present, or whose message
            cannot be read, are left out.  Fails only with
            :class:`StoreError` or ``OSError``.
        """

    def claimRecent(uid):
        """
        Claim the messages up to ``uid`` for one session: ``firstRecentUid``
        becomes ``uid + 1`` unless it is above that already.

        Called by IMAP when a read-write session selects the folder (up to
        the last UID it is shown) and when a selected one is told of new
        messages (RFC 3501 s2.3.2: a message is recent to one session only).
        Synchronous, no I/O, and atomic among the handles of the process:
        of two sessions claiming, the first gets the messages and the
        second none.  The new value is saved in the background; a save lost
        in a crash only makes the messages recent once more.  Optional,
        like ``firstRecentUid``.

        @return: the former ``firstRecentUid``: the claimant's recent
            messages are those from it up to ``uid``.
        """

    def refresh():
        """
        Pick up changes made outside this process (another program moving,
        flagging, adding or deleting files).  Cheap when nothing changed.
        Listeners are told of what changed.

        Called by IMAP before answering commands and periodically while in
        IDLE; by POP3 at login.

        @return: Deferred firing with None.
        """

    def openMessage(uid):
        """
        Open a message for reading, streamed.

        @return: Deferred firing with a readable binary file object
            positioned at 0 that yields the canonical (CRLF) message of
            exactly ``get(uid).size`` bytes; the caller closes it.  Fails with
            :class:`NoSuchMessage` when the message is gone.  The Deferred
            may have fired already.  A backend that has the whole message in
            memory returns an ``io.BytesIO`` of it, which callers take
            without a copy through :func:`messageBytes`.
        """

    def prefetch(uids):
        """
        A hint: the messages ``uids`` (in this order) will be opened soon
        (IMAP FETCH, SEARCH and THREAD over many messages).  A backend may
        read them ahead, in bounded batches (the PostgreSQL store reads
        many small bodies per query); the built-in Maildir and memory
        stores do nothing.  Returns None at once; never fails (a read ahead
        that fails is retried by the ``openMessage`` that needs it).
        :class:`mailnet.store.base.FolderHandle` provides it (calling its
        index's ``prefetch`` if the index has one).
        """

    def append(source, flags=(), internalDate=None):
        """
        Add a message (IMAP APPEND, saving a sent message...).

        @param source: bytes, or a readable binary file object (canonical
            CRLF form).
        @return: Deferred firing with the new UID once durable.
        """

    def setFlags(uids, flags, mode="set", unchangedSince=None):
        """
        Change flags.

        @param uids: iterable of UIDs; UIDs no longer present are ignored.
        @param flags: iterable of flag strings.
        @param mode: ``"set"`` (replace), ``"add"`` or ``"remove"``.
        @param unchangedSince: RFC 7162 UNCHANGEDSINCE: messages whose modseq
            is above it are left alone.
        @return: Deferred firing with ``(changed, failed)``: a list of the
            new :class:`MessageInfo` of messages whose flags changed, and a
            list of UIDs skipped by ``unchangedSince``.
        """

    def expunge(uids):
        """
        Remove exactly these messages (the caller picks them: those with
        ``\\Deleted`` for EXPUNGE, the moved ones for MOVE).

        @return: Deferred firing with the sorted list of UIDs removed.
        """

    def copyTo(uids, destination):
        """
        Copy messages, keeping flags and internal dates, into another open
        folder (an :class:`IFolder` of the same account).  The copies are
        new messages with new email ids.

        @return: Deferred firing with a list of ``(sourceUid, destUid)``
            pairs in ascending source order (for UIDPLUS COPYUID).
        """

    def moveTo(uids, destination):
        """
        Move messages into another open folder (RFC 6851): like ``copyTo``
        followed by ``expunge`` of the sources, but the source copies are gone
        only once the destination copies are durable.  The messages keep
        their email ids (and get new UIDs).

        @return: Deferred firing with ``(sourceUid, destUid)`` pairs.
        """

    def expungedSince(modseq):
        """
        RFC 7162 QRESYNC support.

        @return: sorted list of UIDs expunged with a modseq above ``modseq``
            that the backend still remembers, or None if it cannot tell
            (the caller must then fall back to a full resync).
        """

    def addListener(listener):
        """
        Register an :class:`IFolderListener` for changes to this folder.
        """

    def removeListener(listener):
        """
        Unregister a listener.  Unknown listeners are ignored.
        """

    def close():
        """
        Release the handle (and its listeners).  Synchronous, idempotent.
        """


class IAccountListener(Interface):
    """
    Told that an account changed (for a push channel, RFC 8620 s7).
    Called on the reactor thread, after the change is durable and in the
    account's state, and must not raise.
    """

    def accountChanged(account, state, types):
        """
        The account is now at ``state`` (a string, as
        :meth:`IAccount.currentState` gives it); ``types`` is a frozenset
        of the object types that changed: ``"Email"``, ``"Mailbox"``,
        ``"Thread"``.  Several changes may be told as one.
        """

    # Optional: ownChange(account, state, types), called after
    # accountChanged with the types of the change that this process made
    # itself (its own journal writes), never with a change only heard of
    # (another node's, told by LISTEN/NOTIFY, or seen by a refresh).  JMAP
    # PushSubscriptions push from it, so that with several nodes exactly
    # one node, the one that made a change, POSTs it (docs/scaling.md).
    # A store whose every change is its own (Memory, Maildir) tells every
    # change here too.


class IFolderListener(Interface):
    """
    Told of changes to a folder.  Methods are called on the reactor thread,
    after the change is durable, and must not raise.
    """

    def messagesAdded(folder, infos):
        """
        New messages: a list of :class:`MessageInfo`, ascending UID.
        """

    def flagsChanged(folder, infos):
        """
        Flags (and so modseqs) changed: a list of the new :class:`MessageInfo`.
        """

    def messagesExpunged(folder, uids):
        """
        Messages removed: a sorted list of UIDs.
        """
