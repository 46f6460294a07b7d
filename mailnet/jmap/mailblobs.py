"""
The store's emails as blobs (RFC 8620 s6, RFC 8621 s4.1): an Email's
``blobId`` is its email id (the raw message, RFC 5322 bytes as stored), a
body part's is ``P<partId>_<emailId>`` (its content, transfer-decoded).
An :class:`~mailnet.jmap.blobs.IBlobSource` for the core's pluggable blob
lookup.

The lookup is by accountId; the store is by user, so the HTTP side tells
this source which store account an accountId is (:meth:`remember`, at
each authenticated request: a blob of an account is only found after its
user logged in to this process, which every download does first).
"""

from __future__ import annotations

import io

from zope.interface import implementer

from mailnet.jmap import emailbody, emailimport, mailstore
from mailnet.jmap.blobs import Blob, IBlobSource
from mailnet.mail import mime

MESSAGE_TYPE = "message/rfc822"


@implementer(IBlobSource)
class StoreBlobSource:
    def __init__(self):
        self.accounts = {}  # accountId -> the store's IAccount

    def remember(self, accountId, account):
        if account is not None and hasattr(account, "findEmail"):
            self.accounts[accountId] = account

    async def find(self, accountId, blobId):
        account = self.accounts.get(accountId)
        if account is None:
            return None
        part = emailbody.parsePartBlobId(blobId)
        emailId = part[0] if part else blobId
        where = await mailstore.wait(account.findEmail(emailId))
        if where is None:
            return None
        folderName, uid = where
        folder = await mailstore.openFolder(account, folderName)
        try:
            info = folder.get(uid)
            if info is None:
                return None
            if part is None:
                async def openRaw():
                    return await emailbody.openMessage(account, folderName, uid)

                return Blob(blobId, info.size, MESSAGE_TYPE, lambda: _deferred(openRaw()))
            f = await mailstore.wait(folder.openMessage(uid))
        finally:
            folder.close()
        try:
            structure = emailbody.Structure(emailId, mime.scan(f))
            leaf, source = structure.leaves.get(part[1]), f
            if leaf is None:
                # A part of an attached message ("2.1"; Email/parse gives these ids).
                f.seek(0)
                found = emailimport.nestedPart(f.read(), part[1])
                if found is None:
                    return None
                leaf, source = found[0], io.BytesIO(found[1])
            data = b"".join(mime.decodedChunks(source, leaf.bodyStart, leaf.end, leaf.encoding))
        except (mime.OverBudget, mime.UnknownEncoding, ValueError):
            return None
        finally:
            f.close()
        return Blob(blobId, len(data), f"{leaf.maintype}/{leaf.subtype}", lambda: io.BytesIO(data))

    def copy(self, fromAccountId, toAccountId, blobId):
        return False  # Blob/copy of a message into another account: not yet


def _deferred(coroutine):
    from twisted.internet import defer

    return defer.ensureDeferred(coroutine)
