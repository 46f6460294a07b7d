"""
The vacation auto-reply without I/O: whether a delivered message gets one
(RFC 3834 s2, RFC 5230 s4-5, RFC 8621 s8) and the reply's bytes.

:func:`refusal` looks only at the envelope sender and the message's header
section (one of the user's addresses must be in To/Cc/Bcc or their Resent-
forms, RFC 5230 s4.5); the caller (mailnet/vacation.py) checks the settings, the dates
and "once per sender per period" around it.
"""

from __future__ import annotations

import email.policy
import email.utils
import html
import re
import secrets
from email.message import EmailMessage

from mailnet.mail.headers import decodeWords, headerFields

HEADER_LIMIT = 64 * 1024  # bytes of a header section looked at
# RFC 2369 / RFC 2919 list fields: mail from a list never gets an auto-reply (RFC 3834 s2).
LIST_FIELDS = (b"list-id", b"list-help", b"list-unsubscribe", b"list-subscribe", b"list-post", b"list-owner",
               b"list-archive")
# RFC 5230 s4.5 / RFC 3834 s2: the fields that must name one of the user's addresses.
RECIPIENT_FIELDS = (b"to", b"cc", b"bcc", b"resent-to", b"resent-cc", b"resent-bcc")
FIELDS = LIST_FIELDS + RECIPIENT_FIELDS + (b"auto-submitted", b"precedence", b"x-auto-response-suppress", b"subject",
                                           b"message-id", b"references")
# RFC 5230 s4.6 / RFC 3834 s2: addresses that are machines, not people.
_MACHINE_LOCALPARTS = ("mailer-daemon", "listserv", "majordomo", "noreply", "no-reply",
                       "do-not-reply", "donotreply")


def fields(header: bytes) -> dict:
    """The fields :func:`refusal` and :func:`buildReply` read, from the start of a message."""
    return headerFields(header, FIELDS, HEADER_LIMIT)


def _str(value) -> str:
    """A raw field value (bytes from :func:`fields`) as text, unfolded."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(value.split())


def recipients(found: dict) -> list[str]:
    """The addresses (lower case) in the recipient fields of ``found`` (:func:`fields`):
    To, Cc, Bcc and their Resent- forms (the first of each field)."""
    out = []
    for name in RECIPIENT_FIELDS:
        value = found.get(name)
        if value is None:
            continue
        # Undecoded: an encoded word (RFC 2047) holds a display name, never an address.
        for _, address in email.utils.getaddresses([_str(value)]):
            address = address.strip().lower()
            if "@" in address and address not in out:
                out.append(address)
    return out


def refusal(sender: str, found: dict, ownAddresses=(), isOwn=None) -> str | None:
    """
    Why no auto-reply may be sent for a message from envelope sender
    ``sender`` with header ``found`` (:func:`fields`), or None when one may.
    ``ownAddresses``: the user's (no reply to oneself, and one of them must
    be a recipient); ``isOwn(address) -> bool``, when given, says instead
    whether an address is the user's (their aliases, ``user+tag``).
    """
    if isOwn is None:
        own = {a.lower() for a in ownAddresses}
        isOwn = lambda address: address.lower() in own  # noqa: E731
    if not sender:
        return "null sender"  # RFC 3834 s2: bounces and other automatic mail
    local = sender.rpartition("@")[0].lower() if "@" in sender else sender.lower()
    if local in _MACHINE_LOCALPARTS or local.startswith("owner-") or local.endswith("-request") \
            or local.endswith("-bounces") or local.startswith("bounce"):
        return "machine sender"  # RFC 5230 s4.6
    if isOwn(sender):
        return "own address"
    auto = found.get(b"auto-submitted")
    if auto is not None and _str(auto).strip().split(";")[0].strip().lower() != "no":
        return "auto-submitted"  # RFC 3834 s2 / s5
    for name in LIST_FIELDS:
        if name in found:
            return "mailing list"  # RFC 3834 s2, RFC 2369, RFC 2919
    precedence = found.get(b"precedence")
    if precedence is not None and _str(precedence).strip().lower() in ("bulk", "list", "junk"):
        return "bulk precedence"
    suppress = found.get(b"x-auto-response-suppress")
    if suppress is not None and any(w in _str(suppress).lower() for w in ("all", "oof", "autoreply")):
        return "auto-response suppressed"  # Microsoft's field, honoured by most responders
    # RFC 5230 s4.5, RFC 3834 s2: only mail that names the user (To, Cc, Bcc or
    # their Resent- forms) is answered; mail that reached them as a Bcc of a
    # list or an alias they are not told of gets no reply.
    if not any(isOwn(address) for address in recipients(found)):
        return "not addressed to the user"
    return None


def _firstId(value) -> str | None:
    if value is None:
        return None
    text = _str(value).strip()
    start, end = text.find("<"), text.find(">")
    if 0 <= start < end:
        return text[start:end + 1]
    return None


def buildReply(fromAddress: str, to: str, found: dict, subject: str | None, textBody: str | None,
               htmlBody: str | None, hostname: str, now: float | None = None) -> bytes:
    """
    The auto-reply (RFC 3834 s3): from the user to the original sender,
    ``Auto-Submitted: auto-replied``, ``In-Reply-To``/``References`` of the
    original, the subject given or ``Auto: `` and the original's (RFC 5230
    s5.2 / RFC 3834 s3.1.5), the text and/or HTML body; CRLF lines.
    """
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = fromAddress
    message["To"] = to
    if not subject:
        raw = found.get(b"subject")
        original = decodeWords(_str(raw)).strip() if raw is not None else ""
        subject = "Auto: " + original if original else "Auto: (no subject)"
    message["Subject"] = subject[:998]
    message["Date"] = email.utils.formatdate(now, usegmt=True)
    message["Message-ID"] = f"<{secrets.token_hex(12)}.vacation@{hostname}>"
    # RFC 3834 s5.1 / s3.1.7: what this is, so that no responder answers it again.
    message["Auto-Submitted"] = "auto-replied"
    messageId = _firstId(found.get(b"message-id"))
    if messageId:
        # RFC 3834 s3.1.5: In-Reply-To the original, References its references and it.
        message["In-Reply-To"] = messageId
        references = _str(found[b"references"]).split() if b"references" in found else []
        message["References"] = " ".join([r for r in references if r.startswith("<")][-20:] + [messageId])
    text = textBody
    if text is None and htmlBody is not None:
        text = plainText(htmlBody)  # RFC 8621 s8: a plain text body made from the HTML one
    message.set_content(text or "", charset="utf-8")
    if htmlBody is not None:
        message.add_alternative(htmlBody, subtype="html", charset="utf-8")
    return message.as_bytes()



def plainText(markup: str) -> str:
    """The text of an HTML body: script and style out, block ends as line breaks, tags out, entities decoded."""
    text = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", "", markup)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr|h[1-6]|blockquote|pre)\s*>", "\n", text)
    text = html.unescape(re.sub(r"<[^>]*>", "", text))
    return "\n".join(" ".join(line.split()) for line in text.splitlines()).strip() + "\n"
