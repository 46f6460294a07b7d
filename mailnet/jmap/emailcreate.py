"""
RFC 8621 s4.6: Email/set create, drafts from parts.  The record is checked
here, the message bytes are built by the shared MIME builder
(:mod:`mailnet.mail.compose`) and appended through the store like an IMAP
APPEND (durable before the answer).  Pure but for the store and the blob
lookup, reached through the call.

The one way in is :class:`Creator` (Email/set's ``create``, in email.py).
Errors per record (SetError): ``invalidProperties`` naming the property,
``blobNotFound`` with ``notFound``, ``tooLarge``, ``tooManyMailboxes``.
"""

from __future__ import annotations

import re
import time

from mailnet.jmap import emailbody, mailstore
from mailnet.jmap.errors import MethodError, SetError
from mailnet.jmap.quota import checkQuota
from mailnet.mail import compose

# RFC 8621 s4.6: what a client may give on create (plus header:X forms).
TOP = {"mailboxIds", "keywords", "receivedAt", "messageId", "inReplyTo", "references", "sender", "from", "to",
       "cc", "bcc", "replyTo", "subject", "sentAt", "bodyStructure", "textBody", "htmlBody", "attachments",
       "bodyValues"}
PART = {"partId", "blobId", "size", "type", "charset", "disposition", "cid", "language", "location", "name",
        "subParts"}
ADDRESS_FIELDS = {"from": "From", "sender": "Sender", "replyTo": "Reply-To", "to": "To", "cc": "Cc", "bcc": "Bcc"}
ID_FIELDS = {"messageId": "Message-ID", "inReplyTo": "In-Reply-To", "references": "References"}
# The order fields are written in (then header:X ones as given).
ORDER = ("from", "sender", "replyTo", "to", "cc", "bcc", "subject", "sentAt", "messageId", "inReplyTo",
         "references")
_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}\Z")
_UTC = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)\Z")
MAX_PARTS = 500  # parts one created Email may have
MAX_DEPTH = 20


def bad(prop, description):
    return SetError("invalidProperties", description, properties=[prop])


def parseDate(prop, value) -> float:
    """A UTCDate or Date (RFC 3339) to epoch seconds."""
    return parseZonedDate(prop, value)[0]


def parseZonedDate(prop, value):
    """A Date (RFC 3339) to (epoch seconds, its offset from UTC in minutes)."""
    import calendar

    match = _UTC.match(value) if isinstance(value, str) else None
    if match is None:
        raise bad(prop, f"{prop} must be an RFC 3339 date")
    y, mo, d, h, mi, s, zone = match.groups()
    try:
        seconds = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    except (ValueError, OverflowError):
        raise bad(prop, f"{prop} must be an RFC 3339 date") from None
    offset = 0
    if zone != "Z":
        offset = (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 60 + int(zone[4:6]))
        if abs(offset) >= 24 * 60:
            raise bad(prop, f"{prop} has an impossible time zone")
        seconds -= offset * 60
    return seconds, offset


def _addresses(prop, value):
    if not isinstance(value, list) or not all(
            isinstance(a, dict) and isinstance(a.get("email"), str)
            and (a.get("name") is None or isinstance(a.get("name"), str)) for a in value):
        raise bad(prop, f"{prop} must be an array of EmailAddress objects")
    return [(a.get("name"), a["email"]) for a in value]


def _ids(prop, value):
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise bad(prop, f"{prop} must be an array of message ids")
    return value


def headerField(prop, name, form, value) -> str:
    """One header field from its JMAP form (RFC 8621 s4.1.2) as a formatted line."""
    try:
        if form == "asRaw":
            if not isinstance(value, str) or re.search(r"\r(?!\n[ \t])|(?<!\r)\n|\r\n(?![ \t])", value):
                raise bad(prop, "a raw value must be a string with folds only (CRLF before white space)")
            line = f"{compose.checkFieldName(name)}:{value if value[:1] in (' ', chr(9)) else ' ' + value}"
            if any(len(piece.encode()) > compose.MAX_LINE for piece in line.split("\r\n")):
                raise bad(prop, "a line of a raw header is longer than 998 octets")
            return line
        if form == "asText":
            if not isinstance(value, str):
                raise bad(prop, f"{prop} must be a string")
            return compose.unstructured(name, value)
        if form == "asAddresses":
            return compose.addressList(name, _addresses(prop, value))
        if form == "asGroupedAddresses":
            if not isinstance(value, list) or not all(isinstance(g, dict) for g in value):
                raise bad(prop, f"{prop} must be an array of EmailAddressGroup objects")
            pairs = []
            for group in value:
                pairs += _addresses(prop, group.get("addresses"))
            return compose.addressList(name, pairs)
        if form == "asMessageIds":
            return compose.messageIdList(name, _ids(prop, value))
        if form == "asDate":
            return compose.date(name, *parseZonedDate(prop, value))
        if form == "asURLs":
            if not isinstance(value, list) or not all(isinstance(u, str) and ">" not in u for u in value):
                raise bad(prop, f"{prop} must be an array of URLs")
            return compose.unstructured(name, ", ".join(f"<{u}>" for u in value))
    except compose.ComposeError as e:
        raise bad(prop, str(e)) from None
    raise bad(prop, f"{prop}: unknown form")


def _headerProperties(record, where, forbidContent):
    """The header:X properties of a record as formatted fields, in order."""
    out = []
    for prop, value in record.items():
        if not prop.startswith("header:"):
            continue
        parsed = emailbody.parseHeaderProperty(prop)
        if parsed is None:
            raise bad(prop, f"{prop[:100]} is not a header property")
        name, form, every = parsed
        low = name.lower()
        if (forbidContent and low.startswith("content-")) or low == "content-transfer-encoding":
            # RFC 8621 s4.6: the server writes the Content-* fields of the message.
            raise bad(prop, f"{name} is set by the server")
        values = value if every else [value]
        if every and not isinstance(value, list):
            raise bad(prop, f"{prop} must be an array")
        for v in values:
            out.append((low, headerField(prop, name, form, v)))
    return out


class Creator:
    """
    Email/set create for one call: ``await create(account, record)`` ->
    ``(emailId, serverSet)``.  ``call.context.services`` gives ``blobs``
    (the :class:`~mailnet.jmap.blobs.BlobLookup`), and optionally
    ``hostname`` (for Message-IDs), ``messageSize`` (largest message),
    ``clock`` (``seconds()``).
    """

    def __init__(self, call, resolveId=None):
        self.call = call
        services = call.context.services
        self.blobs = services.get("blobs")
        self.hostname = services.get("hostname") or "localhost"
        self.messageSize = services.get("messageSize") or 35_000_000
        self.attachmentSize = services.get("attachmentSize") or 35_000_000
        clock = services.get("clock")
        self.now = clock.seconds if clock is not None and hasattr(clock, "seconds") else time.time
        self.resolveId = resolveId or call.resolveId

    async def create(self, account, record):
        data, folderName, flags, receivedAt = await self.message(account, record)
        await checkQuota(account, len(data))  # overQuota (RFC 9425, docs/jmap.md "Quota")
        folder = await mailstore.openFolder(account, folderName)
        try:
            # Durable before the answer, like IMAP APPEND (IFolder.append).
            uid = await mailstore.wait(folder.append(data, flags, receivedAt))
            emailId = folder.emailIds([uid]).get(uid) if hasattr(folder, "emailIds") else None
            if emailId is None:
                raise MethodError("serverFail", "the store gave the new message no id")
            threadId = emailId
            if hasattr(folder, "threadIds"):
                threadId = (await mailstore.wait(folder.threadIds([uid]))).get(uid) or emailId
        finally:
            folder.close()
        return emailId, {"blobId": emailId, "threadId": threadId, "size": len(data)}

    async def message(self, account, record):
        """(bytes, folder name, flags, receivedAt) of a create record, checked."""
        unknown = [k for k in record if k not in TOP and not k.startswith("header:")]
        if unknown:
            raise SetError("invalidProperties", "these properties cannot be set on create",
                           properties=sorted(unknown)[:20])
        folderName = await self._mailbox(account, record.get("mailboxIds"))
        flags = self._flags(record.get("keywords", {}))
        receivedAt = None
        if record.get("receivedAt") is not None:
            receivedAt = parseDate("receivedAt", record["receivedAt"])
        fields = self._fields(record)
        root = await self._body(record)
        try:
            data = compose.build(fields, root)
        except compose.ComposeError as e:
            raise bad("bodyStructure", str(e)) from None
        if len(data) > self.messageSize:
            raise SetError("tooLarge", f"the message would be larger than {self.messageSize} octets",
                           maxSize=self.messageSize)
        return data, folderName, flags, receivedAt

    async def _mailbox(self, account, mailboxIds):
        if not isinstance(mailboxIds, dict) or not mailboxIds or not all(v is True for v in mailboxIds.values()):
            raise bad("mailboxIds", "mailboxIds (required) must map one Mailbox id to true")
        if len(mailboxIds) > 1:
            # RFC 8621 s4.6: maxMailboxesPerEmail is 1 here.
            raise SetError("tooManyMailboxes", "an Email is in exactly one Mailbox here", properties=["mailboxIds"])
        wanted = next(iter(mailboxIds))
        try:
            wanted = self.resolveId(wanted)
        except MethodError:
            raise bad("mailboxIds", "unknown creation id") from None
        boxes = await mailstore.mailboxes(account, withCounts=False)
        name = next((b.name for b in boxes if b.mailboxId == wanted), None)
        if name is None:
            raise bad("mailboxIds", "no such Mailbox")
        return name

    def _flags(self, keywords):
        if not isinstance(keywords, dict) or not all(mailstore.isKeyword(k) and v is True
                                                      for k, v in keywords.items()):
            raise bad("keywords", "keywords must map keywords to true")
        return [mailstore.flagOf(k.lower()) for k in keywords]

    def _fields(self, record):
        given = _headerProperties(record, "Email", True)
        named = {low for low, _ in given}
        fields = []
        for prop in ORDER:
            value = record.get(prop)
            header = ADDRESS_FIELDS.get(prop) or ID_FIELDS.get(prop) or ("Subject" if prop == "subject" else "Date")
            if header.lower() in named and prop in record:
                # RFC 8621 s4.6: a field given twice (as a property and as header:X) is an error.
                raise bad(prop, f"{prop} and header:{header} are both given")
            try:
                if value is None:
                    if prop == "sentAt" and "date" not in named:
                        fields.append(compose.date("Date", self.now()))
                    elif prop == "messageId" and "message-id" not in named:
                        fields.append(compose.messageIdList("Message-ID", [compose.newMessageId(self.hostname)]))
                    continue
                if prop in ADDRESS_FIELDS:
                    fields.append(compose.addressList(header, _addresses(prop, value)))
                elif prop in ID_FIELDS:
                    ids = _ids(prop, value)
                    if prop == "messageId" and len(ids) != 1:
                        raise bad(prop, "messageId must hold exactly one id")
                    fields.append(compose.messageIdList(header, ids))
                elif prop == "subject":
                    if not isinstance(value, str):
                        raise bad(prop, "subject must be a string")
                    fields.append(compose.unstructured("Subject", value))
                else:
                    # RFC 8621 s4.1.2.6: the Date keeps the time zone the client gave.
                    fields.append(compose.date("Date", *parseZonedDate(prop, value)))
            except compose.ComposeError as e:
                raise bad(prop, str(e)) from None
        return fields + [line for _, line in given]

    # The body (RFC 8621 s4.6: bodyStructure, or textBody/htmlBody/attachments)

    async def _body(self, record):
        values = record.get("bodyValues") or {}
        if not isinstance(values, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("value"), str)
                and v.get("isEncodingProblem", False) is False and v.get("isTruncated", False) is False
                for v in values.values()):
            raise bad("bodyValues", "bodyValues must map partIds to {value} (not truncated, no encoding problem)")
        self.values = values
        self.used = set()
        self.partCount = 0
        self.attached = 0
        self.missing = []
        if record.get("bodyStructure") is not None:
            if any(record.get(k) is not None for k in ("textBody", "htmlBody", "attachments")):
                raise bad("bodyStructure", "bodyStructure excludes textBody, htmlBody and attachments")
            root = await self._part("bodyStructure", record["bodyStructure"], None, 0)
        else:
            root = await self._fromLists(record)
        if self.missing:
            raise SetError("blobNotFound", "no such blob", notFound=sorted(set(self.missing)))
        if self.attached > self.attachmentSize:
            raise SetError("tooLarge", f"the attachments are larger than {self.attachmentSize} octets",
                           maxSize=self.attachmentSize)
        return root

    async def _fromLists(self, record):
        text = await self._single(record, "textBody", "text/plain")
        html = await self._single(record, "htmlBody", "text/html")
        attachments = record.get("attachments") or []
        if not isinstance(attachments, list):
            raise bad("attachments", "attachments must be an array of EmailBodyParts")
        parts = [await self._part("attachments", a, "application/octet-stream", 1) for a in attachments]
        # Inline images referenced by cid go with the HTML (multipart/related, RFC 2387).
        related = [p for p in parts if p.cid is not None and p.disposition == "inline"] if html else []
        mixed = [p for p in parts if p not in related]
        if html is not None and related:
            html = compose.Part("multipart/related", subParts=[html] + related)
        if text is not None and html is not None:
            body = compose.Part("multipart/alternative", subParts=[text, html])
        else:
            body = text or html or compose.Part("text/plain", content=b"", charset="utf-8")
        if mixed:
            return compose.Part("multipart/mixed", subParts=[body] + mixed)
        return body

    async def _single(self, record, prop, type):
        value = record.get(prop)
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 1:
            raise bad(prop, f"{prop} must hold exactly one part")
        part = value[0]
        if isinstance(part, dict) and part.get("type", type) != type:
            raise bad(prop, f"the {prop} part must be {type}")
        return await self._part(prop, part, type, 1)

    async def _part(self, prop, spec, defaultType, depth):
        if not isinstance(spec, dict):
            raise bad(prop, "a body part must be an object")
        self.partCount += 1
        if self.partCount > MAX_PARTS or depth > MAX_DEPTH:
            raise bad(prop, "too many body parts")
        unknown = [k for k in spec if k not in PART and not k.startswith("header:")]
        if unknown:
            raise bad(prop, f"a body part cannot have {unknown[0][:60]}")
        for key in ("type", "charset", "disposition", "cid", "location", "name", "partId", "blobId"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise bad(prop, f"{key} must be a string")
        language = spec.get("language")
        if language is not None and not (isinstance(language, list) and all(isinstance(t, str) for t in language)):
            raise bad(prop, "language must be an array of strings")
        type = (spec.get("type") or defaultType or "").lower()
        subParts = spec.get("subParts")
        headers = [(line.partition(":")[0], line) for _, line in _headerProperties(spec, "part", False)]
        common = dict(name=spec.get("name"), disposition=(spec.get("disposition") or "").lower() or None,
                      cid=spec.get("cid"), language=language, location=spec.get("location"), headers=headers)
        if common["cid"] is not None:
            common["cid"] = common["cid"].strip("<>")
        if subParts is not None:
            if not type.startswith("multipart/") or not isinstance(subParts, list) or not subParts:
                raise bad(prop, "subParts belong to a multipart/* part, and are not empty")
            if spec.get("partId") is not None or spec.get("blobId") is not None:
                raise bad(prop, "a multipart part has subParts, not partId or blobId")
            children = [await self._part(prop, c, None, depth + 1) for c in subParts]
            return compose.Part(type, subParts=children, **common)
        if (spec.get("partId") is None) == (spec.get("blobId") is None):
            raise bad(prop, "a body part needs exactly one of partId and blobId")
        if spec.get("partId") is not None:
            partId = spec["partId"]
            if partId not in self.values:
                raise bad(prop, f"partId {partId[:60]!r} is not in bodyValues")
            if spec.get("charset") is not None:
                # RFC 8621 s4.6: the server chooses the charset of a bodyValues part.
                raise bad(prop, "charset must be omitted with partId")
            type = type or "text/plain"
            if not type.startswith("text/") or not _TYPE.match(type):
                raise bad(prop, "a partId part must be text/*")
            text = self.values[partId]["value"]
            self.used.add(partId)
            return compose.Part(type, content=text.encode("utf-8"), charset="utf-8", **common)
        blobId = spec["blobId"]
        # A shared upload store that cannot be reached (the database is away): serverUnavailable.
        blob = await mailstore.wait(self.blobs.find(self.call.account().id, blobId)) if self.blobs is not None else None
        if blob is None:
            self.missing.append(blobId)
            return compose.Part("application/octet-stream", content=b"", **common)
        type = type or blob.type or "application/octet-stream"
        if not _TYPE.match(type) or type.startswith("multipart/"):
            raise bad(prop, f"not a leaf media type: {type[:60]}")
        self.attached += blob.size
        if blob.size > self.attachmentSize:
            raise SetError("tooLarge", f"an attachment is larger than {self.attachmentSize} octets",
                           maxSize=self.attachmentSize)
        content = await readBlob(blob, self.attachmentSize)
        charset = spec.get("charset")
        if type == "message/rfc822" and any(len(line) > compose.MAX_LINE + 1 for line in content.split(b"\n")):
            type = "application/octet-stream"  # RFC 2046 s5.2.1: message/rfc822 cannot be base64
        if type.startswith("text/"):
            charset = charset or "utf-8"
        return compose.Part(type, content=content, charset=charset, **common)


async def readBlob(blob, limit) -> bytes:
    opened = await mailstore.wait(blob.open())
    try:
        return opened.read(limit + 1)
    finally:
        opened.close()
