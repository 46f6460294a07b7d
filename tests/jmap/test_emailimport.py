"""RFC 8621 Email/import, Email/parse, Email/copy in-process (memory store, uploads and the store's blobs)."""

from mailnet.jmap.blobs import BlobLookup
from mailnet.jmap.dispatch import runSync
from mailnet.jmap.mailblobs import StoreBlobSource
from tests.jmap.test_emailcreate import DraftSession

INNER = (b"From: Dave <dave@example.net>\r\nTo: carol@example.net\r\nSubject: the original\r\n"
         b"Message-ID: <orig@example.net>\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=I\r\n\r\n--I\r\nContent-Type: text/plain\r\n\r\n"
         b"Inner text.\r\n--I\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n"
         b"Content-Disposition: attachment; filename=a.pdf\r\n\r\nJVBERi0xLjQK\r\n--I--\r\n")
OUTER = (b"From: Carol <carol@example.net>\r\nTo: alice@example.test\r\nSubject: Fwd: the original\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=O\r\n\r\n--O\r\n"
         b"Content-Type: text/plain\r\n\r\nSee below.\r\n--O\r\nContent-Type: message/rfc822\r\n\r\n" + INNER +
         b"--O--\r\n")


def session():
    s = DraftSession()
    store = StoreBlobSource()
    store.remember(s.jmapAccount.id, s.account)
    s.services["blobs"] = BlobLookup([s.uploads, store])
    s.storeBlobs = store
    return s


def test_import_from_an_upload_with_keywords_and_date():
    s = session()
    s.uploads.add("Gmsg", OUTER.replace(b"\r\n", b"\n"))  # LF only: stored as CRLF
    s.uploads.add("Gjunk", b"\x00\x01 not a message")
    archive = s.mailboxes()["Archive"]["id"]
    answer = s.ok("Email/import", emails={
        "a": {"blobId": "Gmsg", "mailboxIds": {archive: True}, "keywords": {"$seen": True},
              "receivedAt": "2026-12-01T10:00:00Z"},
        "b": {"blobId": "Gnothere", "mailboxIds": {archive: True}},
        "c": {"blobId": "Gmsg", "mailboxIds": {}},
        "d": {"blobId": "Gjunk", "mailboxIds": {archive: True}},
        "e": {"blobId": "Gmsg", "mailboxIds": {archive: True}, "subject": "x"}})
    created = answer["created"]["a"]
    assert created["size"] == len(OUTER) and set(created) == {"id", "blobId", "threadId", "size"}
    assert {k: v["type"] for k, v in answer["notCreated"].items()} == {
        "b": "blobNotFound", "c": "invalidProperties", "d": "invalidEmail", "e": "invalidProperties"}
    got = s.ok("Email/get", ids=[created["id"]], properties=["subject", "keywords", "mailboxIds", "receivedAt"])
    assert got["list"][0] == {"id": created["id"], "subject": "Fwd: the original", "keywords": {"$seen": True},
                              "mailboxIds": {archive: True}, "receivedAt": "2026-12-01T10:00:00Z"}
    assert s.raw(created["id"]) == OUTER
    assert answer["oldState"] != answer["newState"]
    assert s.error("Email/import", emails={"a": {"blobId": "Gmsg", "mailboxIds": {archive: True}}},
                   ifInState="nope") == "stateMismatch"


def test_parse_an_upload_and_an_attached_message():
    s = session()
    s.uploads.add("Gmsg", OUTER)
    parsed = s.ok("Email/parse", blobIds=["Gmsg", "Gnope"], fetchTextBodyValues=True)
    email = parsed["parsed"]["Gmsg"]
    assert parsed["notFound"] == ["Gnope"]
    assert email["subject"] == "Fwd: the original" and email["from"] == [{"name": "Carol", "email":
                                                                            "carol@example.net"}]
    assert email["attachments"][0]["type"] == "message/rfc822" and email["attachments"][0]["blobId"] is None
    assert email["bodyValues"][email["textBody"][0]["partId"]]["value"] == "See below."
    # The same message stored: its attached message is a part blob that parses, and whose parts download.
    stored = s.ok("Email/import", emails={"a": {"blobId": "Gmsg", "mailboxIds": {
        s.mailboxes()["INBOX"]["id"]: True}}})["created"]["a"]["id"]
    [attached] = s.ok("Email/get", ids=[stored], properties=["attachments"])["list"][0]["attachments"]
    inner = s.ok("Email/parse", blobIds=[attached["blobId"]],
                 properties=["subject", "messageId", "sentAt", "attachments", "textBody", "bodyValues", "id",
                             "size", "header:X-None"], fetchAllBodyValues=True)["parsed"][attached["blobId"]]
    assert inner["subject"] == "the original" and inner["messageId"] == ["orig@example.net"]
    assert inner["sentAt"] == "2026-12-01T09:00:00Z" and inner["id"] is None and inner["size"] == len(INNER) - 2  # the CRLF before the boundary is not the part's
    assert inner["header:X-None"] is None
    assert inner["bodyValues"][inner["textBody"][0]["partId"]]["value"] == "Inner text."
    pdf = inner["attachments"][0]
    assert pdf["name"] == "a.pdf"
    blob = runSync(s.services["blobs"].find(s.jmapAccount.id, pdf["blobId"]))
    assert blob is not None and blob.open().read() == b"%PDF-1.4\n" and blob.type == "application/pdf"
    # Something that is not a message.
    s.uploads.add("Gjunk", b"   ")
    assert s.ok("Email/parse", blobIds=["Gjunk"])["notParsable"] == ["Gjunk"]
    assert s.error("Email/parse", blobIds="Gmsg") == "invalidArguments"
    assert s.error("Email/parse", blobIds=["Gmsg"], properties=["colour"]) == "invalidArguments"


def test_copy_within_one_account_is_the_rfc_error():
    s = session()
    me = s.jmapAccount.id
    assert s.error("Email/copy", fromAccountId=me, create={"a": {"id": "x", "mailboxIds": {}}}) == "invalidArguments"
    assert s.error("Email/copy", fromAccountId="other", create={}) == "fromAccountNotFound"
    assert s.error("Email/copy", fromAccountId=me) == "invalidArguments"
