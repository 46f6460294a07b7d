"""
RFC 8621 s4.7-4.9: Email/copy, Email/import, Email/parse.  Pure: blobs
through the call's ``services["blobs"]`` lookup, the store through
:mod:`mailnet.jmap.mailstore`, the message read by the shared MIME code
(:mod:`mailnet.mail.mime`, :mod:`mailnet.jmap.emailbody`).

* Email/import: an uploaded blob (or any blob: a stored message, an
  attached message/rfc822 part) stored as a new Email, like IMAP APPEND.
* Email/parse: a blob read as an Email without storing it.  For a part
  of a stored message (``P<partId>_<emailId>``: an attached message), the
  parts of the attached message get blob ids of their own,
  ``P<partId>-<innerPartId>_<emailId>``, which the store's blob source
  finds (:func:`nestedPart`); parts of an upload have no blob id (null).
* Email/copy: RFC 8620 s5.4 copies between two different accounts; a
  user has one account here, so every Email/copy is refused with the
  RFC's error (``fromAccountNotFound``, or ``invalidArguments`` when both
  ids name the same account).
"""

from __future__ import annotations

import io

from mailnet.jmap import emailbody, mailstore
from mailnet.jmap.emailcreate import parseDate, readBlob
from mailnet.jmap.email import MAIL
from mailnet.jmap.errors import MethodError, SetError
from mailnet.jmap.quota import checkQuota
from mailnet.mail import mime
from mailnet.mail.lines import toCRLF
from mailnet.mail.summary import summarize

# RFC 8621 s4.9: the default properties of Email/parse.
PARSE_DEFAULT = ("messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
                 "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody", "attachments")
PARSE_PROPERTIES = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "headers",
                    "bodyStructure") + PARSE_DEFAULT


def _check(data: bytes):
    """The scanned root of a message, or raise ValueError when it is not one (RFC 8621 invalidEmail)."""
    if not data.strip():
        raise ValueError("empty")
    try:
        root = mime.scan(io.BytesIO(data))
    except (mime.OverBudget, ValueError) as e:
        raise ValueError(str(e)) from None
    if not emailbody.rawFields(root.header):
        raise ValueError("no header fields")
    return root


async def _blobBytes(call, accountId, blobId, limit):
    lookup = call.context.services.get("blobs")
    blob = await mailstore.wait(lookup.find(accountId, blobId)) if lookup is not None and isinstance(blobId, str) else None
    if blob is None:
        return None
    if blob.size > limit:
        raise SetError("tooLarge", f"the blob is larger than {limit} octets", maxSize=limit)
    return await readBlob(blob, limit)


# Email/import (s4.8)


async def emailImport(call):
    account = call.account()
    args = call.arguments
    emails = args.get("emails")
    if not isinstance(emails, dict) or not all(isinstance(v, dict) for v in emails.values()):
        raise MethodError("invalidArguments", "emails must map creation ids to EmailImport objects")
    limit = call.context.limits.maxObjectsInSet
    if len(emails) > limit:
        raise MethodError("requestTooLarge", f"at most {limit} emails per call")
    store = account.backend
    oldState = await mailstore.currentState(store)
    ifInState = args.get("ifInState")
    if ifInState is not None and ifInState != oldState:
        raise MethodError("stateMismatch")
    maxSize = call.context.services.get("messageSize") or 35_000_000
    created, notCreated = {}, {}
    for creationId, spec in emails.items():
        try:
            created[creationId] = await _importOne(call, account, spec, maxSize)
            call.context.createdIds[creationId] = created[creationId]["id"]
        except SetError as e:
            notCreated[creationId] = e.arguments()
    newState = await mailstore.currentState(store)
    return {"accountId": account.id, "oldState": oldState, "newState": newState,
            "created": created or None, "notCreated": notCreated or None}


async def _importOne(call, account, spec, maxSize):
    from mailnet.jmap.emailcreate import Creator, bad

    unknown = [k for k in spec if k not in ("blobId", "mailboxIds", "keywords", "receivedAt")]
    if unknown:
        raise SetError("invalidProperties", "an EmailImport has blobId, mailboxIds, keywords, receivedAt",
                       properties=unknown[:20])
    creator = Creator(call)
    folderName = await creator._mailbox(account.backend, spec.get("mailboxIds"))
    flags = creator._flags(spec.get("keywords") or {})
    receivedAt = None if spec.get("receivedAt") is None else parseDate("receivedAt", spec["receivedAt"])
    if not isinstance(spec.get("blobId"), str):
        raise bad("blobId", "blobId must be a blob id")
    blobId = call.resolveId(spec["blobId"]) if spec["blobId"].startswith("#") else spec["blobId"]
    data = await _blobBytes(call, account.id, blobId, maxSize)
    if data is None:
        raise SetError("blobNotFound", "no such blob", notFound=[spec["blobId"]])
    data = toCRLF(data)  # the store keeps messages in canonical (CRLF) form
    if len(data) > maxSize:
        raise SetError("tooLarge", f"the message is larger than {maxSize} octets", maxSize=maxSize)
    try:
        _check(data)
    except ValueError as e:
        raise SetError("invalidEmail", f"not an email message ({e})"[:200]) from None
    await checkQuota(account.backend, len(data))  # overQuota (RFC 9425, docs/jmap.md "Quota")
    folder = await mailstore.openFolder(account.backend, folderName)
    try:
        uid = await mailstore.wait(folder.append(data, flags, receivedAt))
        emailId = folder.emailIds([uid]).get(uid)
        if emailId is None:
            raise MethodError("serverFail", "the store gave the new message no id")
        threadId = emailId
        if hasattr(folder, "threadIds"):
            threadId = (await mailstore.wait(folder.threadIds([uid]))).get(uid) or emailId
    finally:
        folder.close()
    return {"id": emailId, "blobId": emailId, "threadId": threadId, "size": len(data)}


# Email/parse (s4.9)


def parseMessage(data: bytes, blobId, wanted, options, partBlobId):
    """The Email properties in ``wanted`` of the message ``data`` (RFC 8621 s4.9)."""
    root = _check(data)
    f = io.BytesIO(data)
    fields = emailbody.rawFields(root.header)
    summary = summarize(data)
    out = {}
    rest = []
    for prop in wanted:
        if prop in ("id", "threadId", "mailboxIds", "keywords", "receivedAt"):
            out[prop] = None  # RFC 8621 s4.9: not stored, so none of these
        elif prop == "blobId":
            out[prop] = blobId
        elif prop == "size":
            out[prop] = len(data)
        elif prop == "messageId":
            out[prop] = emailbody.headerProperty(fields, "Message-ID", "asMessageIds", False)
        elif prop in ("from", "to", "cc"):
            out[prop] = emailbody.headerProperty(fields, prop, "asAddresses", False) or None
        elif prop == "subject":
            out[prop] = emailbody.headerProperty(fields, "Subject", "asText", False)
        elif prop == "sentAt":
            out[prop] = emailbody.headerProperty(fields, "Date", "asDate", False)
        elif prop == "hasAttachment":
            out[prop] = summary.hasAttachment
        elif prop == "preview":
            out[prop] = summary.preview
        else:
            rest.append(prop)
    if rest:
        structure = emailbody.Structure("x", root)
        _reblob(structure.tree, partBlobId)
        out.update(_fromOpen(f, root, structure, rest, options))
    return out


def _reblob(part, partBlobId):
    if part.get("partId") is not None:
        part["blobId"] = partBlobId(part["partId"])
    for child in part.get("subParts") or []:
        _reblob(child, partBlobId)


def _fromOpen(f, root, structure, wanted, options):
    """emailbody.fromMessage's header and body properties, for an open message (no store)."""
    options = options or {}
    fields = emailbody.rawFields(root.header)
    out = {}
    for prop in wanted:
        parsed = emailbody.parseHeaderProperty(prop)
        if parsed is not None:
            out[prop] = emailbody.headerProperty(fields, *parsed)
        elif prop in ("inReplyTo", "references"):
            out[prop] = emailbody.headerProperty(fields, "In-Reply-To" if prop == "inReplyTo" else "References",
                                                 "asMessageIds", False)
        elif prop in ("sender", "bcc", "replyTo"):
            out[prop] = emailbody.headerProperty(fields, "Reply-To" if prop == "replyTo" else prop,
                                                 "asAddresses", False) or None
        elif prop == "headers":
            out[prop] = [{"name": n, "value": v} for n, v in fields]
    if {"bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues"} & set(wanted):
        textBody, htmlBody, attachments = [], [], []
        emailbody.parseStructure([structure.tree], "mixed", False, htmlBody, textBody, attachments)
        bodyProperties = options.get("bodyProperties")
        if "bodyStructure" in wanted:
            props = bodyProperties or emailbody.BODY_PART_PROPERTIES + ("subParts",)
            out["bodyStructure"] = emailbody._strip(structure.tree, list(props) + ["subParts"])
        for key, parts in (("textBody", textBody), ("htmlBody", htmlBody), ("attachments", attachments)):
            if key in wanted:
                out[key] = [emailbody._strip(p, bodyProperties) for p in parts]
        if "bodyValues" in wanted:
            chosen = textBody + htmlBody if options.get("fetchAllBodyValues") else \
                (textBody if options.get("fetchTextBodyValues") else []) + \
                (htmlBody if options.get("fetchHTMLBodyValues") else [])
            values = {}
            for p in chosen:
                if p["type"].startswith("text/") and p["partId"] not in values:
                    values[p["partId"]] = emailbody._bodyValue(f, structure.leaves[p["partId"]],
                                                               options.get("maxBodyValueBytes") or 0)
            out["bodyValues"] = values
    return out


async def emailParse(call):
    from mailnet.jmap.email import bodyOptions

    account = call.account()
    args = call.arguments
    blobIds = args.get("blobIds")
    if not isinstance(blobIds, list) or not all(isinstance(b, str) for b in blobIds):
        raise MethodError("invalidArguments", "blobIds must be an array of ids")
    if len(blobIds) > call.context.limits.maxObjectsInGet:
        raise MethodError("requestTooLarge", f"at most {call.context.limits.maxObjectsInGet} blobIds")
    properties = args.get("properties")
    wanted = list(PARSE_DEFAULT) if properties is None else properties
    if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
        raise MethodError("invalidArguments", "properties must be an array of strings")
    unknown = [p for p in wanted if p not in PARSE_PROPERTIES and emailbody.parseHeaderProperty(p) is None]
    if unknown:
        raise MethodError("invalidArguments", f"unknown properties: {', '.join(p[:50] for p in unknown[:10])}")
    options = bodyOptions(args)
    maxSize = call.context.services.get("messageSize") or 35_000_000
    parsed, notParsable, notFound = {}, [], []
    for blobId in dict.fromkeys(blobIds):
        try:
            data = await _blobBytes(call, account.id, blobId, maxSize)
        except SetError:
            notParsable.append(blobId)
            continue
        if data is None:
            notFound.append(blobId)
            continue
        outer = emailbody.parsePartBlobId(blobId)
        if outer is not None:
            emailId, partId = outer

            def partBlobId(inner, emailId=emailId, partId=partId):
                return emailbody.blobIdOf(emailId, f"{partId}.{inner}")
        elif not blobId.startswith("G"):
            def partBlobId(inner, emailId=blobId):
                return emailbody.blobIdOf(emailId, inner)  # a stored message: its parts' own blob ids
        else:
            def partBlobId(inner):
                return None  # parts of an upload (G...): no blob of their own
        try:
            parsed[blobId] = parseMessage(toCRLF(data), blobId, wanted, options, partBlobId)
        except ValueError:
            notParsable.append(blobId)
    return {"accountId": account.id, "parsed": parsed or None, "notParsable": notParsable or None,
            "notFound": notFound or None}


def nestedPart(data: bytes, partId: str):
    """
    The leaf ``partId`` ("2.1": part 1 of the message attached as part 2)
    of the message ``data``, looking inside attached messages: (Part, the
    bytes it is in) or None.  For the store's blob source.
    """
    structure = emailbody.Structure("x", mime.scan(io.BytesIO(data)))
    if partId in structure.leaves:
        return structure.leaves[partId], data
    pieces = partId.split(".")
    for n in range(len(pieces) - 1, 0, -1):
        head = ".".join(pieces[:n])
        leaf = structure.leaves.get(head)
        if leaf is not None and (leaf.maintype, leaf.subtype) == ("message", "rfc822"):
            inner = b"".join(mime.decodedChunks(io.BytesIO(data), leaf.bodyStart, leaf.end, leaf.encoding))
            return nestedPart(toCRLF(inner), ".".join(pieces[n:]))
    return None


# Email/copy (s4.7, RFC 8620 s5.4)


def emailCopy(call):
    args = call.arguments
    account = call.account()
    fromId = args.get("fromAccountId")
    if not isinstance(fromId, str):
        raise MethodError("invalidArguments", "fromAccountId must be a string")
    if not isinstance(args.get("create"), dict):
        raise MethodError("invalidArguments", "create must map creation ids to objects")
    if fromId not in call.context.accounts:
        raise MethodError("fromAccountNotFound")
    if fromId == account.id:
        # RFC 8620 s5.4: accountId MUST be different to fromAccountId; a user has one account here.
        raise MethodError("invalidArguments", "accountId must differ from fromAccountId (RFC 8620 s5.4); "
                                              "within one account, use Email/set to change mailboxIds")
    raise MethodError("fromAccountNotFound")  # unreachable with one account per user


def register(registry):
    registry.method("Email/import", emailImport, MAIL, mutates=True)
    registry.method("Email/parse", emailParse, MAIL)
    registry.method("Email/copy", emailCopy, MAIL, mutates=True)

