"""
Blobs (RFC 8620 s6): the lookup interface the HTTP side and the methods
share, and ``Blob/copy`` (s6.3).  Pure: the bytes live behind
:class:`IBlobSource` (``mailnet/http/blobstore.py`` keeps uploads under
data_dir; the store will add the blobs of stored emails as a second source).
"""

from __future__ import annotations

import dataclasses
import inspect

from zope.interface import Interface

from mailnet.jmap.core import isId
from mailnet.jmap.dispatch import Registry
from mailnet.jmap.errors import MethodError, SetError


@dataclasses.dataclass
class Blob:
    """
    A blob found by a source.

    @ivar open: a callable returning a binary file object positioned at
        the start (the caller closes it), or a Deferred firing with one.
    """

    blobId: str
    size: int
    type: str
    open: object


class IBlobSource(Interface):
    """Where blobs are found: uploads, and later the store's emails and parts."""

    def find(accountId, blobId):
        """
        The :class:`Blob` of ``blobId`` in ``accountId`` (both already checked
        as JMAP ids), or None; may return a Deferred.
        """

    def copy(fromAccountId, toAccountId, blobId):
        """
        Make ``blobId`` of ``fromAccountId`` available in ``toAccountId``
        under the same id; True if done, False if the source does not have
        it; may return a Deferred.
        """


class BlobLookup:
    """Several :class:`IBlobSource`, asked in order (the pluggable part)."""

    def __init__(self, sources=()):
        self.sources = list(sources)

    def add(self, source):
        self.sources.append(source)

    async def find(self, accountId, blobId):
        if not (isId(accountId) and isId(blobId)):
            return None
        for source in self.sources:
            found = source.find(accountId, blobId)
            if inspect.isawaitable(found):
                found = await found
            if found is not None:
                return found
        return None

    async def copy(self, fromAccountId, toAccountId, blobId):
        if not (isId(fromAccountId) and isId(toAccountId) and isId(blobId)):
            return False
        for source in self.sources:
            done = source.copy(fromAccountId, toAccountId, blobId)
            if inspect.isawaitable(done):
                done = await done
            if done:
                return True
        return False


def register(registry: Registry):
    registry.method("Blob/copy", blobCopy, mutates=True)


async def blobCopy(call):
    """RFC 8620 s6.3."""
    args = call.arguments
    account = call.account("accountId")
    fromId = args.get("fromAccountId")
    if not isinstance(fromId, str):
        raise MethodError("invalidArguments", "fromAccountId must be a string")
    if fromId not in call.context.accounts:
        raise MethodError("fromAccountNotFound")
    blobIds = args.get("blobIds")
    if not isinstance(blobIds, list) or not all(isinstance(b, str) for b in blobIds):
        raise MethodError("invalidArguments", "blobIds must be an array of ids")
    if len(blobIds) > call.context.limits.maxObjectsInSet:
        raise MethodError("requestTooLarge", f"at most {call.context.limits.maxObjectsInSet} blobIds")
    lookup = call.context.services["blobs"]
    copied, notCopied = {}, {}
    for blobId in blobIds:
        if fromId == account.id:
            done = await lookup.find(fromId, blobId) is not None
        else:
            done = await lookup.copy(fromId, account.id, blobId)
        if done:
            copied[blobId] = blobId
        else:
            notCopied[blobId] = SetError("blobNotFound").arguments()
    return {"fromAccountId": fromId, "accountId": account.id,
            "copied": copied or None, "notCopied": notCopied or None}
