"""
The errors a store reports to a protocol (part of the store contract of
:mod:`mailnet.store.interfaces`, which re-exports them).
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error a store reports to a protocol."""


class NoSuchAccount(StoreError):
    """The account does not exist and was not asked to be created."""


class NoSuchFolder(StoreError):
    """The named folder does not exist."""


class FolderExists(StoreError):
    """A folder of that name exists already."""


class InvalidFolderName(StoreError):
    """The name cannot be stored (bad characters, escapes the account...)."""


class FolderLimitExceeded(StoreError):
    """
    CREATE or RENAME would pass a configured limit: folders per account
    (``[limits] folders``), name length (``folder_name_length``) or depth
    (``folder_depth``).  IMAP answers ``NO [LIMIT]`` (RFC 5530).
    """


class FolderNotEmpty(StoreError):
    """Raised where a backend cannot delete a folder that has children."""


class NoSuchMessage(StoreError):
    """The UID is not (or no longer) in the folder: expunged meanwhile."""


class TemporaryStoreError(StoreError):
    """Disk full, I/O error, lock timeout: the caller may retry later (SMTP 451)."""


class CannotCalculateChanges(StoreError):
    """
    :meth:`mailnet.store.interfaces.IAccount.changesSince` cannot tell what changed since that
    state: it is older than the history the store keeps, from before the
    account's change journal was rebuilt, or not a state of this account.
    The client must resync (JMAP ``cannotCalculateChanges``, RFC 8620 s5.2).
    """


class StorageFull(TemporaryStoreError):
    """
    The disk (or quota) under the store is full (ENOSPC, EDQUOT): SMTP
    answers 452 4.3.1, IMAP ``NO [OVERQUOTA]`` (RFC 5530).  Nothing of the
    failed operation is kept.  Operations may also fail with the plain
    ``OSError``; callers treat an ENOSPC/EDQUOT one the same way.
    """


class OverQuota(StorageFull):
    """
    The user's quota (:mod:`mailnet.store.quota`) does not allow the save:
    SMTP 452 4.2.2 (RFC 3463 X.2.2 "mailbox full"), or 552 5.2.2 when
    ``tooLarge``; IMAP ``NO [OVERQUOTA]`` (RFC 9208 s5); JMAP ``overQuota``.

    @ivar resource: ``"STORAGE"`` or ``"MESSAGE"`` (RFC 9208 s5 names).
    @ivar tooLarge: the message alone is larger than the storage limit:
        no retry can succeed.
    """

    def __init__(self, text="mailbox quota exceeded", resource="STORAGE", tooLarge=False):
        super().__init__(text)
        self.resource = resource
        self.tooLarge = tooLarge
