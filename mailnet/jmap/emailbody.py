"""
RFC 8621 s4.1.2-4.1.4: the Email properties that need the message itself
(header fields in their parsed forms, bodyStructure, textBody, htmlBody,
attachments, bodyValues).  The message is read once per Email/get, by the
shared MIME scan (:func:`mailnet.mail.mime.scan`: byte offsets, no copy of
the parts); bodyValues decode only the parts asked for, up to
``maxBodyValueBytes``.
"""

from __future__ import annotations

import codecs
import re

from mailnet.jmap import jsonstream, mailstore
from mailnet.jmap.errors import MethodError
from mailnet.mail import mime
from mailnet.mail.headers import decodeWords, paramValue, parseParams
from mailnet.mail.summary import addresses as summaryAddresses
from mailnet.mail.threading import dateSeconds, messageIds

HEADER_FORMS = {"asRaw", "asText", "asAddresses", "asGroupedAddresses", "asMessageIds", "asDate", "asURLs"}
# The part's own properties (RFC 8621 s4.1.4 EmailBodyPart), the default bodyProperties.
BODY_PART_PROPERTIES = ("partId", "blobId", "size", "name", "type", "charset", "disposition", "cid",
                        "language", "location")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
_FIELD_START = re.compile(rb"(?m)^(?![ \t])")


class KnownProperties:
    """The Email properties, and every ``header:Name[:asForm][:all]`` (RFC 8621 s4.1.3)."""

    def __init__(self, names):
        self.names = set(names)

    def __contains__(self, prop):
        return prop in self.names or parseHeaderProperty(prop) is not None

    def __iter__(self):
        return iter(self.names)


def parseHeaderProperty(prop):
    """``header:Name[:asForm][:all]`` -> (name, form, all) or None."""
    if not isinstance(prop, str) or not prop.startswith("header:"):
        return None
    pieces = prop.split(":")[1:]
    if not pieces or not _FIELD_NAME.match(pieces[0]):
        return None
    name, form, every = pieces[0], "asRaw", False
    rest = pieces[1:]
    if rest and rest[-1] == "all":
        every = True
        rest = rest[:-1]
    if len(rest) > 1:
        return None
    if rest:
        form = rest[0]
        if form not in HEADER_FORMS:
            return None
    return name, form, every


def rawFields(header: bytes):
    """The fields of a header block as ``(name, raw value)`` (RFC 8621 s4.1.2.1 Raw: as sent, folds kept)."""
    out = []
    for chunk in _FIELD_START.split(header):
        if not chunk.strip() or b":" not in chunk:
            continue
        name, _, value = chunk.partition(b":")
        value = value[:-2] if value.endswith(b"\r\n") else value.rstrip(b"\n")
        out.append((name.decode("ascii", "replace"), value.decode("utf-8", "replace")))
    return out


def _text(raw: str) -> str:
    # RFC 8621 s4.1.2.2 Text: unfolded, RFC 2047 words decoded, white space trimmed.
    value = re.sub(r"\r?\n(?=[ \t])", "", raw)
    if "=?" in value:
        value = decodeWords(value)
    return value.strip()


def _addresses(raw):
    found = summaryAddresses(raw.encode("utf-8", "replace"))
    return [{"name": n, "email": e} for n, e in found]


def _date(raw):
    seconds = dateSeconds(_text(raw))
    if seconds is None:
        return None
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _urls(raw):
    # RFC 8621 s4.1.2.7: a list of <URL> (RFC 2369).
    found = re.findall(r"<([^>]*)>", _text(raw))
    return [u.strip() for u in found] or None


def headerValue(raw: str, form: str):
    if form == "asRaw":
        return raw
    if form == "asText":
        return _text(raw)
    if form == "asAddresses":
        return _addresses(raw)
    if form == "asGroupedAddresses":
        return [{"name": None, "addresses": _addresses(raw)}]
    if form == "asMessageIds":
        return messageIds(raw) or None
    if form == "asDate":
        return _date(raw)
    return _urls(raw)


def headerProperty(fields, name, form, every):
    values = [headerValue(v, form) for n, v in fields if n.lower() == name.lower()]
    if every:
        return values
    return values[-1] if values else None  # RFC 8621 s4.1.3: the last instance


class Structure:
    """The scan of one message, turned into EmailBodyParts (partIds in IMAP numbering)."""

    def __init__(self, emailId, root):
        self.emailId = emailId
        self.root = root
        self.leaves = {}  # partId -> mime.Part
        self.tree = self._part(root, "")

    def _part(self, part, partId):
        fields = rawFields(part.header)
        contentType = f"{part.maintype}/{part.subtype}"
        disposition, name = None, None
        cd = next((v for n, v in fields if n.lower() == "content-disposition"), None)
        if cd is not None:
            head, params = parseParams(_text(cd))
            disposition = head.strip().lower() or None
            name = paramValue(params, "filename")
        if name is None:
            name = paramValue(part.params, "name")
        if name is not None and "=?" in name:
            name = decodeWords(name)
        out = {"partId": None, "blobId": None, "size": 0, "headers": [{"name": n, "value": v} for n, v in fields],
               "name": name, "type": contentType,
               "charset": (paramValue(part.params, "charset") or "us-ascii") if part.maintype == "text" else None,
               "disposition": disposition,
               "cid": (messageIds(next((v for n, v in fields if n.lower() == "content-id"), "")) or [None])[0],
               "language": None, "location": None}
        lang = next((v for n, v in fields if n.lower() == "content-language"), None)
        if lang is not None:
            out["language"] = [t.strip() for t in _text(lang).split(",") if t.strip()] or None
        loc = next((v for n, v in fields if n.lower() == "content-location"), None)
        if loc is not None:
            out["location"] = _text(loc)
        if part.children is not None:
            out["subParts"] = [self._part(c, f"{partId}.{n}" if partId else str(n))
                               for n, c in enumerate(part.children, 1)]
            return out
        partId = partId or "1"
        self.leaves[partId] = part
        out["partId"] = partId
        out["blobId"] = blobIdOf(self.emailId, partId)
        out["size"] = decodedSize(part)
        return out


def blobIdOf(emailId, partId):
    # An Id (RFC 8620 s1.2): P, the partId with - for ., _, the email id.
    return "P" + partId.replace(".", "-") + "_" + emailId


def parsePartBlobId(blobId):
    """(emailId, partId) of a part's blobId, or None."""
    if not blobId.startswith("P") or "_" not in blobId:
        return None
    partId, _, emailId = blobId[1:].partition("_")
    if not partId or not re.fullmatch(r"[0-9]+(-[0-9]+)*", partId) or not emailId:
        return None
    return emailId, partId.replace("-", ".")


def decodedSize(part):
    """RFC 8621 s4.1.4 size: octets after transfer decoding (base64 estimated from the encoded length)."""
    if part.encoding == "base64":
        return max(0, (part.size - 2 * part.lines)) * 3 // 4
    return part.size


def _inlineMedia(t):
    return t.startswith(("image/", "audio/", "video/"))


def parseStructure(parts, multipartType, inAlternative, htmlBody, textBody, attachments):
    """RFC 8621 s4.1.4: the algorithm that picks textBody, htmlBody and attachments."""
    textLength = len(textBody) if textBody is not None else -1
    htmlLength = len(htmlBody) if htmlBody is not None else -1
    for i, part in enumerate(parts):
        t = part["type"]
        isMultipart = t.startswith("multipart/")
        isInline = part["disposition"] != "attachment" and \
            (t in ("text/plain", "text/html") or _inlineMedia(t)) and \
            (i == 0 or (multipartType != "related" and (_inlineMedia(t) or not part["name"])))
        if isMultipart:
            sub = t.split("/", 1)[1]
            parseStructure(part["subParts"], sub, inAlternative or sub == "alternative",
                           htmlBody, textBody, attachments)
        elif isInline:
            if multipartType == "alternative":
                if t == "text/plain":
                    textBody.append(part)
                elif t == "text/html":
                    htmlBody.append(part)
                else:
                    attachments.append(part)
                continue
            elif inAlternative:
                if t == "text/plain":
                    htmlBody = None
                if t == "text/html":
                    textBody = None
            if textBody is not None:
                textBody.append(part)
            if htmlBody is not None:
                htmlBody.append(part)
            if (textBody is None or htmlBody is None) and _inlineMedia(t):
                attachments.append(part)
        else:
            attachments.append(part)
    if multipartType == "alternative" and textBody is not None and htmlBody is not None:
        if textLength == len(textBody) and htmlLength != len(htmlBody):
            textBody.extend(htmlBody[htmlLength:])
        if htmlLength == len(htmlBody) and textLength != len(textBody):
            htmlBody.extend(textBody[textLength:])


def _strip(part, bodyProperties):
    wanted = bodyProperties or BODY_PART_PROPERTIES
    out = {}
    for p in wanted:
        parsed = parseHeaderProperty(p)
        if parsed is not None:
            fields = [(h["name"], h["value"]) for h in part["headers"]]
            out[p] = headerProperty(fields, *parsed)
        elif p in part:
            out[p] = part[p]
    if "subParts" in part and "subParts" in wanted:
        out["subParts"] = [_strip(c, bodyProperties) for c in part["subParts"]]
    return out


def _bodyValue(f, part, maxBytes):
    """RFC 8621 s4.1.4 EmailBodyValue with the value a plain str (for code that reads the text)."""
    out = lazyBodyValue(f, part, maxBytes)
    out["value"] = str(out["value"])
    return out


def lazyBodyValue(f, part, maxBytes):
    """
    RFC 8621 s4.1.4 EmailBodyValue: decoded text, cut at maxBodyValueBytes (0: whole).

    Decoded a chunk at a time into pieces that are never joined (a long text
    is a :class:`~mailnet.jmap.jsonstream.LazyText`, written to the client a
    slice at a time): the one decoded text is all a large value costs.  The
    result is the text a decode of the whole part would give (tests/jmap/test_jsonstream.py).
    """
    problem = False
    charset = (paramValue(part.params, "charset") or "us-ascii").strip().strip('"') or "us-ascii"
    try:
        if not codecs.lookup(charset)._is_text_encoding:  # base64, rot13...: bytes.decode refuses them too
            raise LookupError(charset)
        dec = codecs.getincrementaldecoder(charset)("replace")
    except LookupError:
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        problem = True
    pieces, carry, kept = [], "", 0

    def add(text):
        nonlocal carry, problem
        text = carry + text
        # CRLF -> LF; a CR at the end waits for the next piece (it may be the half of a CRLF).
        carry = "\r" if text.endswith("\r") else ""
        text = (text[:-1] if carry else text).replace("\r\n", "\n")
        problem = problem or "\ufffd" in text
        if text:
            pieces.append(text)

    try:
        for chunk in mime.decodedChunks(f, part.bodyStart, part.end, part.encoding):
            add(dec.decode(chunk))
            kept += len(chunk)
            if maxBytes and kept > maxBytes + 4:
                break
    except (mime.UnknownEncoding, ValueError):
        problem = True
    add(dec.decode(b"", True))
    if carry:
        pieces.append(carry)
    truncated = False
    if maxBytes:
        size = 0
        for n, piece in enumerate(pieces):
            size += len(piece.encode("utf-8"))
            if size > maxBytes:
                # Cut at a character boundary within maxBodyValueBytes octets of UTF-8.
                over = size - maxBytes
                raw = piece.encode("utf-8")
                pieces[n:] = [raw[:len(raw) - over].decode("utf-8", "ignore")]
                truncated = True
                break
    return {"value": jsonstream.textValue(pieces), "isEncodingProblem": problem, "isTruncated": truncated}


async def openMessage(account, folderName, uid):
    folder = await mailstore.openFolder(account, folderName)
    try:
        return await mailstore.wait(folder.openMessage(uid))
    finally:
        folder.close()


async def fromMessage(account, summary, wanted, options):
    """The non-list properties in ``wanted`` of one Email, from its message file."""
    options = options or {}
    f = await openMessage(account, summary.folder, summary.uid)
    try:
        try:
            root = mime.scan(f)
        except mime.OverBudget:
            raise MethodError("serverFail", "the message is too complex") from None
        fields = rawFields(root.header)
        out = {}
        for prop in wanted:
            parsed = parseHeaderProperty(prop)
            if parsed is not None:
                out[prop] = headerProperty(fields, *parsed)
            elif prop in ("inReplyTo", "references"):
                out[prop] = headerProperty(fields, "In-Reply-To" if prop == "inReplyTo" else "References",
                                           "asMessageIds", False)
            elif prop in ("sender", "bcc", "replyTo"):
                out[prop] = headerProperty(fields, "Reply-To" if prop == "replyTo" else prop,
                                           "asAddresses", False) or None
            elif prop == "headers":
                out[prop] = [{"name": n, "value": v} for n, v in fields]
        bodyWanted = {"bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues"} & set(wanted)
        if bodyWanted:
            structure = Structure(summary.emailId, root)
            textBody, htmlBody, attachments = [], [], []
            parseStructure([structure.tree], "mixed", False, htmlBody, textBody, attachments)
            bodyProperties = options.get("bodyProperties")
            if "bodyStructure" in wanted:
                props = bodyProperties or BODY_PART_PROPERTIES + ("subParts",)
                out["bodyStructure"] = _strip(structure.tree, list(props) + ["subParts"])
            for key, parts in (("textBody", textBody), ("htmlBody", htmlBody), ("attachments", attachments)):
                if key in wanted:
                    out[key] = [_strip(p, bodyProperties) for p in parts]
            if "bodyValues" in wanted:
                chosen = []
                if options.get("fetchAllBodyValues"):
                    chosen = textBody + htmlBody
                else:
                    if options.get("fetchTextBodyValues"):
                        chosen += textBody
                    if options.get("fetchHTMLBodyValues"):
                        chosen += htmlBody
                values = {}
                for p in chosen:
                    if p["type"].startswith("text/") and p["partId"] not in values:
                        values[p["partId"]] = lazyBodyValue(f, structure.leaves[p["partId"]],
                                                         options.get("maxBodyValueBytes") or 0)
                out["bodyValues"] = values
        return out
    finally:
        f.close()
