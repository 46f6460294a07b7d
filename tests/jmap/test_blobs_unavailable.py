"""
A blob source that cannot be reached (the PostgreSQL uploads with the
database away, mailnet/store/postgres/uploads.py): Email/set and
Email/import answer serverUnavailable (RFC 8620 s3.6.2), not serverFail,
and the session goes on.
"""

from twisted.internet import defer

from mailnet.jmap.blobs import Blob, BlobLookup
from mailnet.store.interfaces import TemporaryStoreError
from tests.jmap.test_emailcreate import DraftSession, draft


class AwayBlobs:
    """find fails as the database's store does; or finds, and opening fails."""

    def __init__(self, findFails=True):
        self.findFails = findFails

    def find(self, accountId, blobId):
        if self.findFails:
            return defer.fail(TemporaryStoreError("the database is unavailable; try again later"))
        return Blob(blobId, 5, "application/pdf",
                    lambda: defer.fail(TemporaryStoreError("the database is unavailable; try again later")))

    def copy(self, fromAccountId, toAccountId, blobId):
        return False


def session(findFails):
    s = DraftSession()
    s.services["blobs"] = BlobLookup([AwayBlobs(findFails)])
    return s


def test_email_set_with_an_unreachable_upload_is_server_unavailable():
    for findFails in (True, False):
        s = session(findFails)
        attached = draft(s, attachments=[{"blobId": "Gup", "type": "application/pdf", "name": "a.pdf"}])
        assert s.error("Email/set", create={"d": attached}) == "serverUnavailable"
        assert s.ok("Email/set", create={"d": draft(s)})["created"]["d"]["id"]  # the session goes on


def test_email_import_of_an_unreachable_upload_is_server_unavailable():
    s = session(True)
    inbox = s.mailboxes()["Archive"]["id"]
    assert s.error("Email/import", emails={"a": {"blobId": "Gup", "mailboxIds": {inbox: True}}}) == "serverUnavailable"
