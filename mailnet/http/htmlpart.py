"""
One HTML body part of a stored message, for the webmail's cleaned view:
its text (charset decoded) and the image parts of the same message that it
names by ``cid:`` (RFC 2392), read once and handed to the sanitizer as
``data:`` URIs (the sandboxed frame has an opaque origin: it could not
fetch them with the user's cookie).
"""

from __future__ import annotations

import re
import urllib.parse

from mailnet.jmap import emailbody, mailstore
from mailnet.mail import mime

# cid: references in the raw HTML (attribute values end at a quote, space, > or ")").
CID_REF = re.compile(r"cid:([^\"'\s<>)]{1,500})", re.I)
# At most this many images inlined into one part (bounded memory and answer).
MAX_IMAGES = 100


def _walk(node):
    yield node
    for child in node.get("subParts") or ():
        yield from _walk(child)


async def loadHTMLPart(account, emailId, partId, inlineImageMax, htmlMax):
    """
    ``(text, images)`` of the ``text/html`` part ``partId`` of the email
    ``emailId`` in the store account ``account``, or None when there is no
    such part (or it is not HTML).  ``images(cid)`` gives ``(type, bytes)``
    of an image part of at most ``inlineImageMax`` decoded bytes, or None.
    """
    where = await mailstore.wait(account.findEmail(emailId)) if hasattr(account, "findEmail") else None
    if where is None:
        return None
    folderName, uid = where
    f = await emailbody.openMessage(account, folderName, uid)
    if f is None:
        return None
    try:
        try:
            structure = emailbody.Structure(emailId, mime.scan(f))
        except (mime.OverBudget, ValueError):
            return None
        leaf = structure.leaves.get(partId)
        if leaf is None or (leaf.maintype, leaf.subtype) != ("text", "html"):
            return None
        text = emailbody._bodyValue(f, leaf, htmlMax)["value"]
        wanted = {urllib.parse.unquote(m).strip("<>").lower() for m in CID_REF.findall(text)}
        images = {}
        for node in _walk(structure.tree):
            cid = (node.get("cid") or "").lower()
            if not cid or cid not in wanted or cid in images or len(images) >= MAX_IMAGES:
                continue
            part = structure.leaves.get(node.get("partId") or "")
            if part is None or part.maintype != "image" or emailbody.decodedSize(part) > inlineImageMax + 4:
                continue
            try:
                data = b"".join(mime.decodedChunks(f, part.bodyStart, part.end, part.encoding))
            except (mime.UnknownEncoding, ValueError):
                continue
            if len(data) <= inlineImageMax:
                images[cid] = (f"{part.maintype}/{part.subtype}", data)
    finally:
        f.close()
    return text, lambda cid: images.get(cid.lower())
