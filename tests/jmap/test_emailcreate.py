"""RFC 8621 s4.6 Email/set create (drafts from parts) in-process over the memory store."""

import io

from mailnet.jmap.blobs import Blob, BlobLookup
from mailnet.jmap.dispatch import Context, processRequest, runSync
from mailnet.jmap.request import Request
from mailnet.jmap.dispatch import CORE
from mailnet.jmap.mailbox import MAIL
from mailnet.mail import mime
from tests.jmap.mailhelp import USER, MailSession


class MemoryBlobs:
    def __init__(self):
        self.blobs = {}

    def add(self, blobId, data, type="application/octet-stream"):
        self.blobs[blobId] = (data, type)

    def find(self, accountId, blobId):
        if blobId not in self.blobs:
            return None
        data, type = self.blobs[blobId]
        return Blob(blobId, len(data), type, lambda: io.BytesIO(data))

    def copy(self, fromAccountId, toAccountId, blobId):
        return False


class DraftSession(MailSession):
    def __init__(self, **services):
        super().__init__()
        self.uploads = MemoryBlobs()
        self.services = dict({"blobs": BlobLookup([self.uploads]), "hostname": "mx.example.test"}, **services)

    def request(self, *calls):
        context = Context(USER, {self.jmapAccount.id: self.jmapAccount}, self.limits, dict(self.services))
        methodCalls = []
        for n, (name, args) in enumerate(calls):
            args = dict(args)
            args.setdefault("accountId", self.jmapAccount.id)
            methodCalls.append([name, args, str(n)])
        return runSync(processRequest(self.registry, Request([CORE, MAIL], methodCalls, None), context))

    def raw(self, emailId):
        found = runSync(_await(self.account.findEmail(emailId)))
        folder = runSync(_await(self.account.openFolder(found[0])))
        f = runSync(_await(folder.openMessage(found[1])))
        folder.close()
        return f.read()


async def _await(d):
    return await d


def draft(s, **extra):
    record = {"mailboxIds": {s.mailboxes()["Drafts"]["id"]: True}, "keywords": {"$draft": True, "$seen": True},
              "from": [{"name": "Alice", "email": USER}], "to": [{"name": "Bob", "email": "bob@example.net"}],
              "subject": "Hello", "textBody": [{"partId": "t", "type": "text/plain"}],
              "bodyValues": {"t": {"value": "Hi Bob,\nsee attached.\n"}}}
    record.update(extra)
    return record


def test_create_text_draft_and_read_it_back():
    s = DraftSession()
    made = s.ok("Email/set", create={"d": draft(s)})
    created = made["created"]["d"]
    assert set(created) >= {"id", "blobId", "threadId", "size"}
    raw = s.raw(created["id"])
    assert len(raw) == created["size"]
    assert b"\r\nMessage-ID: <" in raw and b"\r\nDate: " in raw and b"\r\nMIME-Version: 1.0\r\n" in raw
    zoned = s.ok("Email/set", create={"z": draft(s, sentAt="2026-12-03T10:00:00+01:00")})["created"]["z"]
    assert b"\r\nDate: Thu, 03 Dec 2026 10:00:00 +0100\r\n" in s.raw(zoned["id"])
    assert s.ok("Email/get", ids=[zoned["id"]], properties=["sentAt"])["list"][0]["sentAt"] == "2026-12-03T09:00:00Z"
    got = s.ok("Email/get", ids=[created["id"]], properties=["subject", "from", "to", "keywords", "mailboxIds",
                                                            "textBody", "bodyValues", "messageId"],
               fetchTextBodyValues=True)["list"][0]
    assert got["subject"] == "Hello" and got["from"] == [{"name": "Alice", "email": USER}]
    assert got["keywords"] == {"$draft": True, "$seen": True}
    assert got["mailboxIds"] == {s.mailboxes()["Drafts"]["id"]: True}
    part = got["textBody"][0]["partId"]
    assert got["bodyValues"][part]["value"] == "Hi Bob,\nsee attached.\n"


def test_create_with_attachment_html_and_non_ascii():
    s = DraftSession()
    payload = bytes(range(256)) * 10
    s.uploads.add("Gblob1", payload, "application/pdf")
    record = draft(s, subject="Grüße — café", htmlBody=[{"partId": "h", "type": "text/html"}],
                   attachments=[{"blobId": "Gblob1", "type": "application/pdf", "name": "résumé.pdf"}],
                   inReplyTo=["orig@example.net"], references=["root@example.net", "orig@example.net"],
                   bcc=[{"email": "secret@example.net"}])
    record["bodyValues"]["h"] = {"value": "<p>Hi</p>"}
    created = s.ok("Email/set", create={"d": record})["created"]["d"]
    raw = s.raw(created["id"])
    root = mime.scan(io.BytesIO(raw))
    assert (root.maintype, root.subtype) == ("multipart", "mixed")
    alternative, attachment = root.children
    assert alternative.subtype == "alternative"
    data = b"".join(mime.decodedChunks(io.BytesIO(raw), attachment.bodyStart, attachment.end, attachment.encoding))
    assert data == payload
    got = s.ok("Email/get", ids=[created["id"]], properties=["subject", "inReplyTo", "references", "bcc",
                                                            "attachments"])["list"][0]
    assert got["subject"] == "Grüße — café"
    assert got["inReplyTo"] == ["orig@example.net"] and got["references"] == ["root@example.net", "orig@example.net"]
    assert got["bcc"] == [{"name": None, "email": "secret@example.net"}]
    assert got["attachments"][0]["name"] == "résumé.pdf" and got["attachments"][0]["type"] == "application/pdf"


def test_create_errors():
    s = DraftSession(messageSize=2000)
    drafts = s.mailboxes()["Drafts"]["id"]
    s.uploads.add("Gbig", b"x" * 5000)
    records = {
        "nobox": {k: v for k, v in draft(s).items() if k != "mailboxIds"},
        "badbox": draft(s, mailboxIds={"nope": True}),
        "two": draft(s, mailboxIds={drafts: True, s.mailboxes()["Sent"]["id"]: True}),
        "id": draft(s, id="x"),
        "from": draft(s, **{"from": "alice"}),
        "both": draft(s, **{"header:Subject:asText": "x"}),
        "ctype": draft(s, **{"header:Content-Type": " text/html"}),
        "blob": draft(s, attachments=[{"blobId": "Gmissing"}]),
        "big": draft(s, attachments=[{"blobId": "Gbig"}]),
        "nopart": draft(s, textBody=[{"partId": "zz"}]),
        "charset": draft(s, textBody=[{"partId": "t", "charset": "latin1"}]),
        "kw": draft(s, keywords={"$seen": False}),
        "crlf": draft(s, **{"header:X-Raw": " a\r\nBcc: x@y"}),
        "both2": draft(s, bodyStructure={"partId": "t"}),
    }
    answer = s.ok("Email/set", create=records)
    errors = {k: (v["type"], v.get("properties"), v.get("notFound")) for k, v in answer["notCreated"].items()}
    assert errors == {
        "nobox": ("invalidProperties", ["mailboxIds"], None),
        "badbox": ("invalidProperties", ["mailboxIds"], None),
        "two": ("tooManyMailboxes", ["mailboxIds"], None),
        "id": ("invalidProperties", ["id"], None),
        "from": ("invalidProperties", ["from"], None),
        "both": ("invalidProperties", ["subject"], None),
        "ctype": ("invalidProperties", ["header:Content-Type"], None),
        "blob": ("blobNotFound", None, ["Gmissing"]),
        "big": ("tooLarge", None, None),
        "nopart": ("invalidProperties", ["textBody"], None),
        "charset": ("invalidProperties", ["textBody"], None),
        "kw": ("invalidProperties", ["keywords"], None),
        "crlf": ("invalidProperties", ["header:X-Raw"], None),
        "both2": ("invalidProperties", ["bodyStructure"], None),
    }
    assert answer["created"] is None
    # A line break in a text value is white space, never a new header field.
    made = s.ok("Email/set", create={"n": draft(s, subject="a\r\nBcc: x@y")})["created"]["n"]
    assert b"\r\nBcc:" not in s.raw(made["id"])


def test_replace_draft_in_one_set_and_creation_reference():
    s = DraftSession()
    first = s.ok("Email/set", create={"a": draft(s)})["created"]["a"]["id"]
    answer = s.ok("Email/set", create={"b": draft(s, subject="Hello again")}, destroy=[first])
    assert answer["destroyed"] == [first]
    second = answer["created"]["b"]["id"]
    assert s.ok("Email/get", ids=[first, second], properties=["subject"])["list"] == [
        {"id": second, "subject": "Hello again"}]
    # bodyStructure with header:X on parts and a multipart tree.
    tree = {"type": "multipart/mixed", "subParts": [
        {"partId": "t", "type": "text/plain", "header:X-Part:asText": "one"},
        {"partId": "t2", "type": "text/plain", "disposition": "attachment", "name": "notes.txt"}]}
    record = draft(s, bodyStructure=tree, **{"header:X-Mailer:asText": "mailnet test"})
    del record["textBody"]
    record["bodyValues"]["t2"] = {"value": "line " * 400}  # one long line: quoted-printable, soft breaks
    made = s.ok("Email/set", create={"c": record})["created"]["c"]
    raw = s.raw(made["id"])
    assert b"\r\nX-Mailer: mailnet test\r\n" in raw and b"\r\nX-Part: one\r\n" in raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
